"""Fuzz (issue 14): damaged run files never make `update_data()` raise or hang, and every complete record before
and after the damage is kept — on a cold read of a damaged folder and on the incremental read of a dashboard that
read the valid files first.

A seeded generator starts from valid metrics, alerts and both CSV files as `RunStore` writes them and applies
thousands of mutations: truncation at every byte position, byte flips, inserted NUL / BOM / invalid UTF-8 / very
long tokens / deep nesting, deleted ranges, duplicated or reordered lines, and the file swapped for a directory, a
FIFO or a symlink loop. The oracle knows each record's byte span in the valid file: a record whose bytes the
mutation did not touch must be shown (its points in `dash.metrics`, or in `dash.alerts`).
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from rldk_widget import RLDKDashboard
from rldk_widget.store import RunStore

pytestmark = pytest.mark.timeout(180)

SEED = 20261201
RUN = "fz"
FILES = {
    "metrics": f"{RUN}_metrics.json",
    "alerts": f"{RUN}_alerts.json",
    "ppo_metrics": f"{RUN}_ppo_metrics.csv",
    "checkpoint_summary": f"{RUN}_checkpoint_summary.csv",
}
PREFIX = {"metrics": "", "ppo_metrics": "ppo:", "checkpoint_summary": "ckpt:"}
INSERTS = [
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xff\xfe\xc3",
    b"x" * 200_000,
    b"9" * 5_000,
    b'"' + b"y" * 150_000 + b'"',
    b"[" * 30_000,
    b'{"a":' * 20_000,
    b"]",
    b"\n",
    b",",
    b"{",
]


def write_valid(folder: Path) -> None:
    store = RunStore(folder, RUN)
    store.append_metrics_many(
        {"step": step, "loss": 1.0 / (step + 1), "kl_mean": step * 0.01, "reward_mean": math.sin(step),
         "note_value": -0.0 if step == 3 else step * 1e-7}
        for step in range(12)
    )
    store.append_metrics({"step": 12, "loss": math.nan, "kl_mean": math.inf})
    for step in range(0, 12, 2):
        store.append_alert({"type": "kl_spike", "message": f"KL {{step}}, a, b ü {step}", "step": step,
                            "severity": "warning", "run_id": RUN})
    for step in range(10):
        store.append_csv("ppo_metrics", {"step": step, "objective/kl": step / 10, "loss/value_avg": 2.0 - step / 8})
    for step in range(0, 10, 3):
        store.append_csv("checkpoint_summary", {"step": step, "size_mb": 1.5 + step, "checkpoint_dir": f"ckpt-{step}"})
    store.close()


@dataclass
class Record:
    start: int
    end: int
    value: dict


def record_spans(kind: str, data: bytes, parsed: list[dict]) -> list[Record]:
    """Byte spans of the valid file's records, in order: a JSON record's line without its separator; a CSV data
    line with the line breaks before and after it (they are what delimits a CSV row)."""
    spans: list[Record] = []
    position = 0
    lines = data.split(b"\n")
    for index, line in enumerate(lines):
        end = position + len(line)
        if kind in ("metrics", "alerts"):
            body = line.rstrip(b",")
            if body.startswith(b"{"):
                spans.append(Record(position, position + len(body), {}))
        elif index > 0 and line:
            spans.append(Record(position - 1, end + 1, {}))
        position = end + 1
    assert len(spans) == len(parsed), (kind, len(spans), len(parsed))
    for span, value in zip(spans, parsed):
        span.value = value
    return spans


# ---- mutations: (new bytes, is the record with span [s, e) damaged?) ------------------------------------------
Mutation = tuple[str, Callable[[bytes], tuple[bytes, Callable[[Record], bool]]]]


def truncate(at: int) -> Mutation:
    return f"truncate@{at}", lambda d: (d[:at], lambda r: r.end > at)


def flip(at: int, byte: int) -> Mutation:
    def apply(d: bytes):
        at_ = min(at, len(d) - 1)
        return d[:at_] + bytes([d[at_] ^ byte]) + d[at_ + 1 :], lambda r: r.start <= at_ < r.end

    return f"flip@{at}^{byte}", apply


def insert(at: int, payload: bytes) -> Mutation:
    return f"insert@{at}:{payload[:6]!r}x{len(payload)}", lambda d: (
        d[:at] + payload + d[at:], lambda r: r.start < at < r.end
    )


def delete(at: int, length: int) -> Mutation:
    return f"delete@{at}+{length}", lambda d: (d[:at] + d[at + length :], lambda r: r.start < at + length and at < r.end)


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """The lines of a file and its final line break (kept at the end, so no complete line loses its own)."""
    body, tail = (data[:-1], b"\n") if data.endswith(b"\n") else (data, b"")
    return body.split(b"\n"), tail


def duplicate_line(index: int) -> Mutation:
    def apply(d: bytes):
        lines, tail = split_lines(d)
        i = index % len(lines)
        return b"\n".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :]) + tail, lambda r: False

    return f"duplicate_line{index}", apply


def swap_lines(first: int, second: int) -> Mutation:
    def apply(d: bytes):
        lines, tail = split_lines(d)
        i, j = first % len(lines), second % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines) + tail, lambda r: False

    return f"swap_lines{first},{second}", apply


def mutations_for(data: bytes, rng: random.Random, count: int) -> list[Mutation]:
    """Truncation at every byte position, then `count` random mutations of the other kinds."""
    out = [truncate(at) for at in range(len(data) + 1)]
    makers = [
        lambda: flip(rng.randrange(len(data)), rng.randrange(1, 256)),
        lambda: insert(rng.randrange(len(data) + 1), rng.choice(INSERTS)),
        lambda: delete(rng.randrange(len(data)), rng.randrange(1, 40)),
        lambda: duplicate_line(rng.randrange(40)),
        lambda: swap_lines(rng.randrange(40), rng.randrange(40)),
    ]
    out += [rng.choice(makers)() for _ in range(count)]
    return out


# ---- what the dashboard shows --------------------------------------------------------------------------------
def shown_points(dash: RLDKDashboard) -> set[tuple[str, float, str]]:
    points = set()
    for run_series in dash.metrics.values():
        for name, series in run_series.items():
            for step, value in zip(series.index.tolist(), series.tolist()):
                points.add((name, float(step), repr(value)))
    return points


def expected_points(kind: str, record: dict) -> list[tuple[str, float, str]]:
    step = float(record["step"])
    return [
        (PREFIX[kind] + key, step, repr(float(value)))
        for key, value in record.items()
        if key not in ("step", "run_id") and isinstance(value, (int, float))
    ]


def alert_key(alert: dict) -> tuple:
    return alert.get("type"), alert.get("message"), alert.get("step")


def check_kept(dash: RLDKDashboard, intact: dict[str, list[Record]], case: str) -> None:
    points = shown_points(dash)
    alerts = {alert_key(alert) for alert in dash.alerts}
    for kind, records in intact.items():
        for record in records:
            if kind == "alerts":
                assert alert_key(record.value) in alerts, f"{case}: lost alert {record.value}"
            else:
                missing = [p for p in expected_points(kind, record.value) if p not in points]
                assert not missing, f"{case}: lost {kind} record {record.value} ({missing[:2]})"


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    write_valid(folder)
    parsed = RunStore(folder, RUN).read_all()
    files = {}
    for kind, name in FILES.items():
        data = (folder / name).read_bytes()
        files[kind] = (data, record_spans(kind, data, getattr(parsed, kind)))
    return files


def run_case(folder: Path, files: dict[str, bytes], incremental_from: dict[str, bytes] | None) -> RLDKDashboard:
    folder.mkdir()
    if incremental_from is not None:
        for kind, data in incremental_from.items():
            (folder / FILES[kind]).write_bytes(data)
        dash = RLDKDashboard(output_dir=folder, run_id=RUN, auto_refresh=False)
        for kind, data in files.items():
            (folder / FILES[kind]).write_bytes(data)  # in place: the same inode, as an editor or a bad disk would
        started = time.monotonic()
        dash.update_data()
    else:
        for kind, data in files.items():
            (folder / FILES[kind]).write_bytes(data)
        started = time.monotonic()
        dash = RLDKDashboard(output_dir=folder, run_id=RUN, auto_refresh=False)
    assert time.monotonic() - started < 30, "reading a damaged folder took far too long"
    return dash


@pytest.mark.parametrize("incremental", [False, True], ids=["cold read", "incremental read"])
def test_damaged_files_keep_every_complete_record(tmp_path, valid, incremental):
    rng = random.Random(SEED + incremental)
    plans = {kind: mutations_for(data, rng, 700) for kind, (data, _) in valid.items()}
    rounds = max(len(plan) for plan in plans.values())
    cases = 0
    for index in range(rounds):
        files: dict[str, bytes] = {}
        intact: dict[str, list[Record]] = {}
        names = []
        for kind, (data, records) in valid.items():
            name, apply = plans[kind][index % len(plans[kind])]
            mutated, damaged = apply(data)
            files[kind] = mutated
            names.append(f"{kind}:{name}")
            header_touched = kind in PREFIX and kind != "metrics" and not mutated.startswith(data.split(b"\n")[0] + b"\n")
            intact[kind] = [] if header_touched else [r for r in records if not damaged(r)]
        case = f"case {index} ({'; '.join(names)})"
        dash = run_case(tmp_path / f"c{index}", files, {k: v[0] for k, v in valid.items()} if incremental else None)
        try:
            dash.update_data()
            if incremental:
                # what was read before the damage stays shown too, unless the file was read again whole
                report = " ".join(sum(dash.load_report.values(), []))
                for kind in FILES:
                    if f"{FILES[kind]} was replaced" not in report:
                        intact[kind] = valid[kind][1]
            check_kept(dash, intact, case)
        finally:
            dash.close()
        cases += 1
    assert cases >= 1000


SWAPS = ["directory", "fifo", "symlink loop", "dangling symlink", "device"]


def swap_file(path: Path, how: str) -> None:
    path.unlink(missing_ok=True)
    if how == "directory":
        path.mkdir()
        (path / "inside.json").write_text("[]")
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "symlink loop":
        loop = path.with_name(path.name + ".loop")
        os.symlink(loop, path)
        os.symlink(path, loop)
    elif how == "dangling symlink":
        os.symlink(path.with_name("nowhere"), path)
    elif how == "device":
        os.symlink("/dev/zero", path)


@pytest.mark.parametrize("how", SWAPS)
@pytest.mark.parametrize("incremental", [False, True], ids=["cold read", "incremental read"])
def test_a_run_file_swapped_for_a_non_file_is_reported_and_never_blocks(tmp_path, valid, how, incremental):
    folder = tmp_path / "run"
    folder.mkdir()
    for kind, (data, _) in valid.items():
        (folder / FILES[kind]).write_bytes(data)
    swapped = {"metrics", "ppo_metrics"}
    if not incremental:
        for kind in swapped:
            swap_file(folder / FILES[kind], how)
    dash = RLDKDashboard(output_dir=folder, run_id=RUN, auto_refresh=False)
    try:
        if incremental:
            for kind in swapped:
                swap_file(folder / FILES[kind], how)
        started = time.monotonic()
        dash.update_data()
        dash.update_data()
        assert time.monotonic() - started < 10
        report = " ".join(dash.load_report.get(RUN, []))
        if how != "dangling symlink":  # a dangling link is a missing file: nothing to read, nothing to report
            for kind in swapped:
                assert f"{FILES[kind]}: cannot read" in report, report
            assert dash.status["level"] == "warning" and "cannot read" in dash.status["message"]
        intact = {kind: records for kind, (_, records) in valid.items() if kind not in swapped}
        if incremental and how != "dangling symlink":
            intact = {kind: records for kind, (_, records) in valid.items()}  # read before: still shown
        check_kept(dash, intact, how)
    finally:
        dash.close()
