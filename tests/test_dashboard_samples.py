"""The dashboard's completions (issue 15): a live GRPO run in the same kernel through `dash.callback(trainer=...)`
(with log_completions on: both sources, each sample once), a TRL output folder trained without our callback, the
pages a view asks for over the request channel (a step grouped by prompt, a sample, a search with progress, one
prompt across steps), the small summary trait and the bounded recent pages a saved notebook keeps."""

from __future__ import annotations

import json

import pytest

from rldk_widget import RLDKDashboard

from helpers import CommTap, wait_until

pytestmark = pytest.mark.training


def replies(tap: CommTap, request_id: str) -> list[dict]:
    return [m["content"] for m in tap.messages if m and m.get("method") == "custom"
            and m["content"].get("type") == "reply" and m["content"].get("id") == request_id]


def ask(dash: RLDKDashboard, tap: CommTap, request_id: str, what: str, **params) -> dict:
    dash._on_view_message(dash, {"type": "request", "id": request_id, "slot": request_id, "what": what,
                                 "params": params}, [])
    final = wait_until(lambda: [r for r in replies(tap, request_id) if not r.get("partial")], what=f"the {what} reply")
    assert "error" not in final[-1], final[-1]
    return final[-1]["data"]


def train_live(make_trainer, tmp_path, dash, **overrides):
    from transformers import PrinterCallback

    trainer = make_trainer("grpo", tmp_path / "out", max_steps=6, **overrides)
    trainer.add_callback(dash.callback(trainer=trainer))
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer


def test_a_live_grpo_run_shows_each_sample_once_and_answers_pages(make_trainer, tmp_path, dashboards):
    dash = dashboards(output_dir=tmp_path / "logs", run_id="live")
    tap = CommTap(dash)
    train_live(make_trainer, tmp_path, dash, log_completions=True, steps_per_generation=2)
    frame = dash.completions()
    assert not frame.empty and frame["id"].is_unique, "a sample shown twice (both sources, or a batch logged twice)"
    assert {"step", "prompt", "completion", "reward", "reward_len", "advantage", "truncated"} <= set(frame.columns)
    last_step = int(frame["step"].max())
    summary = wait_until(lambda: (s := dash.samples.get("live")) and s["last_step"] == last_step and s,
                         what="the samples summary trait at the last step")
    assert summary["samples"] == len(frame)

    last = summary["last_step"]
    page = ask(dash, tap, "p1", "samples.step", run_id="live")  # no step: the newest
    assert page["step"] == last and page["groups"]
    group = page["groups"][0]
    assert {"prompt", "reward_mean", "reward_std", "identical_rewards", "rows"} <= set(group)
    row = group["rows"][0]
    sample = ask(dash, tap, "s1", "samples.sample", run_id="live", id=row["id"])
    assert sample["completion"].startswith(row["completion"][:50])
    word = row["completion"].split()[0] if row["completion"].split() else row["prompt"].split()[0]
    found = ask(dash, tap, "q1", "samples.search", run_id="live", query=word)
    assert found["matches"] and found["matches"][0]["step"] == max(m["step"] for m in found["matches"])
    history = ask(dash, tap, "h1", "samples.prompt", run_id="live", prompt_id=group["prompt_id"])
    assert history["steps"] and history["prompt_id"] == group["prompt_id"]
    assert not tap.wire_errors

    dash._refresh_saved_state()
    recent = dash.samples_recent["live"]
    assert str(last) in recent and len(json.dumps(dash.samples_recent)) <= 256 * 1024


def test_live_capture_without_log_completions(make_trainer, tmp_path, dashboards):
    dash = dashboards(output_dir=tmp_path / "logs", run_id="nolog")
    trainer = train_live(make_trainer, tmp_path, dash)
    assert not (tmp_path / "out" / "completions").exists()
    frame = dash.completions(run_id="nolog")
    assert len(frame) and frame["id"].is_unique
    assert sorted(frame["step"].unique().tolist()) == sorted(set(frame["step"].tolist()))
    del trainer


def test_a_trl_output_folder_trained_without_our_callback(make_trainer, tmp_path, dashboards):
    from transformers import PrinterCallback

    trainer = make_trainer("grpo", tmp_path / "out", max_steps=4, log_completions=True)  # saves no checkpoint
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    dash = dashboards.from_dir(tmp_path / "out")
    (run_id,) = dash.run_ids
    frame = dash.completions()
    assert len(frame) and set(frame["run_id"]) == {run_id} and frame["id"].is_unique
    assert wait_until(lambda: dash.samples.get(run_id), what="the summary")["steps"] >= 1
