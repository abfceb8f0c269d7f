"""Issue 19: what a remote run folder costs. Against a real S3 API on 127.0.0.1 (moto's standalone server, through
s3fs; tests/remote_server.py), counted with botocore's event hooks on the dashboard's own client:

- requests and bytes per refresh pass of a dashboard over 50 runs in one prefix (`from_dir("s3://...")`), with nothing
  new and with one run appending (its object uploaded whole before each pass, as the mirror does). Target: one
  listing per pass, plus one range read for the changed run (the 32-byte window check and the new bytes in one GET).
- how soon a mirrored record shows: a job in another process (tests/remote_writer.py) appends a record every 0.1 s and
  mirrors every `LATENCY_MIRROR_S`; a dashboard over the prefix refreshes every `LATENCY_REFRESH_S`. Per record, the
  time from its append to the first pass that shows it, and the passes whose report was not empty (a torn read).
  Target: every record within the two intervals plus a second (the upload and the pass).
- the extra cost of mirroring on the training step: a tiny GRPO run (TRL, CPU) with `RLDKCallback(mirror_to=...)`, in
  the paired-segment design of overhead.py (its helpers): the callback writes in every step, the mirror uploads only
  in the 'with' segments (a segment that ends waits for an upload in flight, so none of it lands in the next one), and
  an A/A control run whose mirror never uploads prints the noise floor; the 95% interval resamples whole runs. The
  mirror uploads every `MIRROR_INTERVAL_S` (1 s: 30 times as often as the default), so this bounds the default's cost.

Skipped, with a row that says so, when s3fs or moto are not installed (the test-remote extra).

    .venv/bin/python benchmarks/remote.py [--quick]
"""

from __future__ import annotations

import gc
import math
import os
import random
import statistics
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import common as c  # noqa: E402

NAME = "remote"
RUNS = 50
STEPS_PER_RUN = 200
APPENDED_PER_PASS = 5
MIRROR_INTERVAL_S = 1.0
FULL = dict(passes=20, paired_runs=10, pairs=4, segment=40, paired_warmup=20, latency_steps=200)
QUICK = dict(passes=3, paired_runs=1, pairs=1, segment=4, paired_warmup=2, latency_steps=20)
LATENCY_MIRROR_S = 0.5
LATENCY_REFRESH_S = 0.5
LATENCY_STEP_S = 0.1

TARGET_IDLE_REQUESTS = 1  # per pass, nothing new: the listing
TARGET_APPEND_REQUESTS = 2  # per pass, one run appending: the listing and one range read
WINDOW_BYTES = 32  # tailfile.WINDOW_BYTES: read again before the new bytes
TARGET_MIRROR_RATIO = 1.01  # mean step time with mirroring ÷ without (paired segments)


def count_requests(s3fs_instance) -> dict:
    counts = {"requests": 0, "bytes": 0, "operations": []}

    def before(request, **_):
        counts["requests"] += 1

    def after(http_response, model, **_):
        counts["operations"].append(model.name)
        counts["bytes"] += int(http_response.headers.get("content-length") or 0)

    s3fs_instance.s3.meta.events.register("before-send.s3", before)
    s3fs_instance.s3.meta.events.register("after-call.s3", after)
    return counts


def measure_passes(server, tmp: Path, cfg: dict) -> dict:
    import s3fs

    from rldk_widget import RLDKDashboard
    from rldk_widget.store import RunStore

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    server.make_bucket(bucket)
    uploader = s3fs.S3FileSystem(skip_instance_cache=True, **server.storage_options(timeout=10))
    local = tmp / "sweep"
    for index in range(RUNS):
        run_id = f"run{index:02d}"
        with RunStore(local, run_id) as store:
            store.append_metrics_many(c.RecordMaker(run_id, seed=index).many(1, STEPS_PER_RUN))
            store.write_info({"max_steps": 10_000, "trainer": "grpo", "started": time.time()})
        for name in (f"{run_id}_metrics.json", f"{run_id}_run_info.json"):
            uploader.pipe_file(f"{bucket}/sweep/{name}", (local / name).read_bytes())
    started = time.perf_counter()
    dash = RLDKDashboard.from_dir(f"s3://{bucket}/sweep/", storage_options=server.storage_options(timeout=10),
                                  auto_refresh=False)
    load_s = time.perf_counter() - started
    load_requests = dict(dash._fs.requests)
    counts = count_requests(dash._fs.fs)
    out = {"load_s": load_s, "load_requests": load_requests, "runs": len(dash.run_ids), "idle": [], "append": []}
    step = STEPS_PER_RUN
    make = c.RecordMaker("run07", seed=1000)
    try:
        for phase in ("idle", "append"):
            for _ in range(cfg["passes"]):
                appended = 0
                if phase == "append":
                    path = local / "run07_metrics.json"
                    before = path.stat().st_size
                    with RunStore(local, "run07") as store:
                        store.append_metrics_many(make.many(step + 1, APPENDED_PER_PASS))
                    step += APPENDED_PER_PASS
                    appended = path.stat().st_size - before
                    uploader.pipe_file(f"{bucket}/sweep/run07_metrics.json", path.read_bytes())
                counts.update(requests=0, bytes=0, operations=[])
                t = time.perf_counter()
                dash.update_data()
                dash._samples.drain()  # the samples worker's reads of the pass (the listing answers them too)
                seconds = time.perf_counter() - t
                out[phase].append({"requests": counts["requests"], "operations": list(counts["operations"]),
                                   "bytes": counts["bytes"], "seconds": seconds, "appended": appended})
        shown = len(dash.to_dataframe("run07"))
        assert shown == step, f"the dashboard shows {shown} of run07's {step} steps"
    finally:
        dash.close()
    return out


# ---- mirroring overhead ------------------------------------------------------------------------------------------
def train_mirrored(server, assets: dict, tmp: Path, index: int, forward: bool, cfg: dict) -> dict:
    """One run of paired segments: the mirror uploads in 'with' segments only (`forward=False`: never, A/A)."""
    from transformers import TrainerCallback

    from overhead import grpo_trainer, make_step_timer
    from rldk_widget.callback import RLDKCallback

    rng = random.Random(index)
    arms = ["warmup"] * cfg["paired_warmup"]
    for _ in range(cfg["pairs"]):
        for arm in rng.sample(("with", "without"), 2):
            arms += [arm] * cfg["segment"]
    bucket = f"mirror-{uuid.uuid4().hex[:8]}"
    server.make_bucket(bucket)
    callback = RLDKCallback(tmp / f"logs_{index}", run_id="mirrored", mirror_to=f"s3://{bucket}/sweep/",
                            storage_options=server.storage_options(timeout=10), mirror_interval=MIRROR_INTERVAL_S)
    mirror = callback.mirror
    state = {"on": False}
    busy = threading.Lock()
    original = mirror._pass

    def gated_pass() -> bool:
        if not state["on"]:
            return True
        with busy:
            return original()

    mirror._pass = gated_pass

    class MirrorGate(TrainerCallback):
        """At each step: uploads allowed in 'with' (and warm-up) steps of a forward run; leaving a 'with' stretch waits
        for an upload in flight, so its cost stays in the stretch."""

        def on_step_begin(self, args, state_, control, **kwargs) -> None:
            k = state_.global_step
            arm = arms[k] if k < len(arms) else "warmup"
            on = forward and arm in ("with", "warmup")
            if state["on"] and not on:
                with busy:
                    pass
            state["on"] = on

    timer = make_step_timer()
    trainer = grpo_trainer(assets, tmp / f"out_{index}", len(arms) + 1, [MirrorGate(), timer, callback])
    gc.collect()
    trainer.train()
    status = mirror.status()
    step_wall: dict[str, list[float]] = {"with": [], "without": []}
    for arm, seconds in zip(arms, [b - a for a, b in zip(timer.wall, timer.wall[1:])]):
        if arm != "warmup":
            step_wall[arm].append(seconds)
    return {"step_wall": step_wall, "uploads": status["uploads"], "bytes_uploaded": status["bytes_uploaded"],
            "failures": status["failures"]}


def main(argv: list[str] | None = None) -> dict:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    from remote_server import MotoServer, moto_available

    tables: list[c.Table] = []
    checks = c.Checks()
    if not moto_available():
        table = c.Table("Remote folders (S3 API)", ["what", "result"])
        table.add("requests per pass, mirroring overhead", "skipped: s3fs / moto not installed (pip install -e '.[test-remote]')")
        tables.append(table)
        c.write_results(NAME, args, tables, checks, {"skipped": True}, started)
        return {"skipped": True}
    import s3fs

    s3fs.S3FileSystem.retries = 2
    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; {RUNS} runs, {cfg['passes']} passes per phase, "
          f"{cfg['paired_runs']} mirrored paired-segment runs and as many A/A controls; {c.load_note()}", flush=True)
    server = MotoServer()
    server.start()
    try:
        with c.temp_dir(NAME) as tmp:
            passes = measure_passes(server, tmp, cfg)
            latency = mirror_latency(server, tmp, cfg)
            mirrored = mirror_overhead(server, tmp, cfg)
    finally:
        server.stop()
    data = {"passes": passes, "latency": latency, "mirror": mirrored}
    tables += pass_tables(passes, checks)
    tables += latency_tables(latency, checks)
    tables += mirror_tables(mirrored, cfg, checks)
    c.write_results(NAME, args, tables, checks, data, started)
    return data


def mirror_latency(server, tmp: Path, cfg: dict) -> dict:
    """A mirrored job in another process and a dashboard following its prefix: per record, append → shown."""
    import json
    import subprocess

    from rldk_widget import RLDKDashboard

    bucket = f"latency-{uuid.uuid4().hex[:8]}"
    server.make_bucket(bucket)
    url = f"s3://{bucket}/sweep"
    env = {**os.environ, "RLDK_TEST_STORAGE_OPTIONS": json.dumps(server.storage_options()), "RLDK_TEST_S3_RETRIES": "2",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])}
    writer = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "tests" / "remote_writer.py"), "--out",
         str(tmp / "latency-job"), "--run-id", "job", "--mirror", url, "--steps", str(cfg["latency_steps"]),
         "--step-s", str(LATENCY_STEP_S), "--mirror-interval", str(LATENCY_MIRROR_S)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    dash = RLDKDashboard.from_dir(url, storage_options=server.storage_options(), auto_refresh=False)
    shown_after: dict[int, float] = {}
    passes = reported = 0
    try:
        deadline = time.monotonic() + 60 + cfg["latency_steps"] * LATENCY_STEP_S * 3
        while len(shown_after) < cfg["latency_steps"] and time.monotonic() < deadline:
            time.sleep(LATENCY_REFRESH_S)
            dash.update_data()
            passes += 1
            reported += bool(dash.load_report)
            if "job" not in dash.run_ids:
                continue
            frame = dash.to_dataframe("job")
            now = time.time()
            for step, stamp in zip(frame["step"], frame["timestamp"]):
                shown_after.setdefault(int(step), now - float(stamp))
        errors = writer.communicate(timeout=60)[1]
    finally:
        if writer.poll() is None:
            writer.kill()
        dash.close()
    if writer.returncode != 0:
        raise RuntimeError(f"the mirrored job failed: {errors[-2000:]}")
    return {"steps": cfg["latency_steps"], "shown": len(shown_after), "latency_s": [shown_after[s] for s in
            sorted(shown_after)], "passes": passes, "passes_with_problems": reported}


def latency_tables(latency: dict, checks: c.Checks) -> list[c.Table]:
    table = c.Table(
        f"How soon a mirrored record shows: a job appending every {LATENCY_STEP_S:g} s and mirroring every "
        f"{LATENCY_MIRROR_S:g} s, a dashboard over its prefix refreshing every {LATENCY_REFRESH_S:g} s",
        ["records", "shown", "append → shown (median)", "p90", "max", "passes", "passes with a problem reported"],
    )
    s = c.summary(latency["latency_s"] or [math.inf])
    table.add(latency["steps"], latency["shown"], c.fmt_time(s["median"]), c.fmt_time(s["p90"]), c.fmt_time(s["max"]),
              latency["passes"], latency["passes_with_problems"])
    checks.add("mirrored records shown", latency["shown"], latency["steps"], "count", higher_is_better=True)
    checks.add("append → shown, slowest record", s["max"], LATENCY_MIRROR_S + LATENCY_REFRESH_S + 1.0, "s")
    checks.add("passes reporting a problem (a torn read)", latency["passes_with_problems"], 0, "count")
    return [table]


def mirror_overhead(server, tmp: Path, cfg: dict) -> dict:
    import torch
    import transformers

    from overhead import TORCH_THREADS
    from rldk_widget.demo_models import build_tiny_assets

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(TORCH_THREADS)
    assets = build_tiny_assets(tmp / "assets")
    pinned = _pin_apart(server)
    try:
        train_mirrored(server, assets, tmp, -1, True, {**cfg, "pairs": 1, "segment": 2})  # untimed first run
        runs = []
        for pair in range(cfg["paired_runs"]):
            for variant in (("mirror", "control") if pair % 2 == 0 else ("control", "mirror")):
                run = train_mirrored(server, assets, tmp, len(runs), variant == "mirror", cfg)
                run["variant"] = variant
                runs.append(run)
                print(f"  mirrored run {len(runs)}/{2 * cfg['paired_runs']} {variant:7s}: mean step with ÷ without "
                      f"{_ratio([run]):.3f}, {run['uploads']} uploads", flush=True)
    finally:
        if pinned is not None:
            os.sched_setaffinity(0, pinned)
    return {"runs": runs, "torch_threads": torch.get_num_threads(), "pinned_apart": pinned is not None,
            "versions": c.package_versions(["torch", "transformers", "trl", "s3fs", "moto", "botocore"])}


def _pin_apart(server) -> set[int] | None:
    """The training process on one core, the S3 server on another: the server's work on an upload is the remote
    machine's, not the training job's (on one shared pair of cores it lands in the 'with' segments). Returns the
    cores this process had (to restore), or None where that cannot be done (fewer than two cores, no affinity)."""
    if not hasattr(os, "sched_setaffinity") or server.process is None:
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    os.sched_setaffinity(server.process.pid, {cores[-1]})
    os.sched_setaffinity(0, {cores[0]})
    return set(cores)


def _ratio(runs: list[dict]) -> float:
    from overhead import paired_ratio

    return paired_ratio(runs)


def pass_tables(passes: dict, checks: c.Checks) -> list[c.Table]:
    table = c.Table(
        f"Refresh passes of a dashboard over {passes['runs']} runs in one S3 prefix (moto on 127.0.0.1; HTTP requests "
        "and response bytes counted by botocore's event hooks)",
        ["pass", "passes", "requests / pass (max)", "operations", "bytes / pass (median)", "time / pass (median)"],
    )
    for phase, label in (("idle", "nothing new"), ("append", f"one run appending {APPENDED_PER_PASS} records")):
        rows = passes[phase]
        operations = sorted({" + ".join(sorted(r["operations"])) for r in rows})
        table.add(label, len(rows), max(r["requests"] for r in rows), "; ".join(operations),
                  c.fmt_bytes(statistics.median(r["bytes"] for r in rows)),
                  c.fmt_time(statistics.median(r["seconds"] for r in rows)))
    table.note(f"from_dir (the first read of all {passes['runs']} runs): {c.fmt_time(passes['load_s'])}, "
               f"{passes['load_requests']}")
    listing = statistics.median(r["bytes"] for r in passes["idle"])
    excess = max(r["bytes"] - listing - r["appended"] for r in passes["append"])
    table.note(f"the range read of an appending pass: the new bytes + {excess:.0f} B (the {WINDOW_BYTES}-byte window and "
               "the closing bracket written again), beyond the listing")
    checks.add("requests per pass, nothing new", max(r["requests"] for r in passes["idle"]), TARGET_IDLE_REQUESTS,
               "count")
    checks.add("requests per pass, one run appending", max(r["requests"] for r in passes["append"]),
               TARGET_APPEND_REQUESTS, "count")
    checks.add("range-read bytes beyond the new ones", excess, WINDOW_BYTES + 2 + 64, "bytes")
    return [table]


def mirror_tables(mirrored: dict, cfg: dict, checks: c.Checks) -> list[c.Table]:
    from overhead import bootstrap_interval

    rng = random.Random(0)
    main_runs = [r for r in mirrored["runs"] if r["variant"] == "mirror"]
    control = [r for r in mirrored["runs"] if r["variant"] == "control"]
    table = c.Table(
        f"Mirroring on the training step: GRPO with RLDKCallback(mirror_to=s3://...) uploading every "
        f"{MIRROR_INTERVAL_S:g} s in 'with' segments ({cfg['pairs']} pairs of {cfg['segment']} steps per run, random "
        f"order, after {cfg['paired_warmup']} untimed steps; torch threads {mirrored['torch_threads']})",
        ["runs", "arm", "steps timed", "step mean", "step median", "mean ÷ without", "95% interval", "uploads"],
    )
    results = {}
    for label, runs in (("mirror uploads in 'with' segments", main_runs), ("A/A control: never uploads", control)):
        ratio = _ratio(runs)
        low, high = bootstrap_interval(runs, rng) if len(runs) > 1 else (ratio, ratio)
        results[label] = (ratio, low, high)
        for arm in ("without", "with"):
            steps = [x for r in runs for x in r["step_wall"][arm]]
            s = c.summary(steps)
            table.add(f"{label} ({len(runs)})", arm, len(steps), c.fmt_time(statistics.fmean(steps)), c.fmt_time(s["median"]),
                      c.fmt_ratio(ratio) if arm == "with" else "", f"{low:.3f}–{high:.3f}" if arm == "with" else "",
                      sum(r["uploads"] for r in runs) if arm == "with" else "")
    table.note(f"versions {mirrored['versions']}; each upload is the whole metrics and run info objects of the run")
    if mirrored.get("pinned_apart"):
        table.note("the training process on one core, the S3 server on the other (its work is the remote machine's)")
    ratio, low, high = results["mirror uploads in 'with' segments"]
    checks.add("mirroring: mean step with ÷ without", ratio, TARGET_MIRROR_RATIO, "ratio",
               shown=f"{ratio:.3f} (95% {low:.3f}–{high:.3f}; A/A {results['A/A control: never uploads'][0]:.3f})")
    return [table]


if __name__ == "__main__":
    main()
