"""Completions of real TRL 1.16 training (tiny offline model, CPU): the parquet files GRPO writes with
`log_completions=True` (their exact schema), the live capture from `trainer._logs` (GRPO with and without
log_completions, RLOO, conversational data), and every sample shown once when both sources hold it — also for an
output folder trained without our callback."""

from __future__ import annotations

import json

import pytest

from rldk_widget.callback import RLDKCallback
from rldk_widget.demo_models import grpo_prompts, reward_len, synthetic_lines
from rldk_widget.sample_index import SampleIndex
from rldk_widget.store import RunStore
from rldk_widget.trl_samples import LogsDequeAdapter, completions_folder

pytestmark = pytest.mark.training
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def train(make_trainer, tmp_path, kind="grpo", callback=True, max_steps=6, **overrides):
    cb = RLDKCallback(tmp_path / "logs", run_id=f"{kind}-samples") if callback else None
    trainer = make_trainer(kind, tmp_path / "out", max_steps=max_steps, **overrides)
    if cb is not None:
        cb.attach(trainer)
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return cb, trainer


def ids_by_step(index: SampleIndex) -> dict[int, list[str]]:
    return {step: [r["id"] for r in index.page(step, group=False)["rows"]] for step in index.steps()}


def check_logs_structure(trainer) -> None:
    """TRL 1.16's private batch, as the adapter reads it."""
    logs = trainer._logs
    assert set(logs) == {"images", "prompt", "completion", "rewards", "advantages", "extra"}
    size = trainer.args.generation_batch_size
    assert len(logs["prompt"]) == len(logs["completion"]) == len(logs["advantages"]) == size
    assert list(logs["rewards"]) == trainer.reward_func_names
    assert all(isinstance(v, float) for v in logs["advantages"])
    assert LogsDequeAdapter().problem(trainer) is None


def test_grpo_with_log_completions_reads_parquet_and_live_without_duplicates(make_trainer, tmp_path):
    # logging every step, generating every second one: TRL logs (and writes) each batch twice
    cb, trainer = train(make_trainer, tmp_path, log_completions=True, steps_per_generation=2)
    check_logs_structure(trainer)
    folder = completions_folder(trainer.args.output_dir)
    assert cb.run_info["completions_dir"] == str(folder.resolve())
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"completions_{s:05d}.parquet" for s in range(1, 7)]
    schema = pq.read_schema(folder / files[0])
    assert [(f.name, str(f.type)) for f in schema] == [
        ("step", "int64"), ("prompt", "large_string"), ("completion", "large_string"), ("reward_len", "double"),
        ("reward_words", "double"), ("advantage", "double")]

    ours = RunStore(cb.output_dir, cb.run_id).read_all(("samples",)).samples
    assert [r["step"] for r in ours] == [1] * 8 + [3] * 8 + [5] * 8  # generation_batch_size = 4 × 2
    assert all(r["completion_length"] <= 8 and isinstance(r["truncated"], bool) for r in ours)
    logs = {e["step"]: e for e in trainer.state.log_history if "completions/clipped_ratio" in e}
    for step in (1, 3, 5):
        ratio = logs[step]["completions/clipped_ratio"]
        flags = [r["truncated"] for r in ours if r["step"] == step]
        if ratio in (0.0, 1.0):
            assert flags == [bool(ratio)] * 8

    live = SampleIndex.for_store(RunStore(cb.output_dir, cb.run_id))
    parquet = SampleIndex("p", None, [folder])
    both = SampleIndex.for_store(RunStore(cb.output_dir, cb.run_id), [cb.run_info["completions_dir"]])
    for index in (live, parquet, both):
        update = index.update_all()
        assert update.problems == [] and index.steps() == [1, 3, 5] and len(index) == 24
    assert ids_by_step(live) == ids_by_step(parquet) == ids_by_step(both)
    group = both.page(1)["groups"][0]
    assert group["size"] == 2 and len(group["rows"]) == 2  # num_generations
    row = group["rows"][0]
    assert set(row["rewards"]) == {"reward_len", "reward_words"} and row["completion_length"] is not None
    frame = both.dataframe()
    assert len(frame) == 24 and {"reward_len", "reward_words", "advantage", "truncated"} <= set(frame.columns)
    json.dumps(both.page(3), allow_nan=False)


def test_grpo_without_log_completions_live_capture_only(make_trainer, tmp_path):
    cb, trainer = train(make_trainer, tmp_path, max_steps=4)
    assert not completions_folder(trainer.args.output_dir).exists() and cb.run_info["completions_dir"] is None
    index = SampleIndex.for_store(RunStore(cb.output_dir, cb.run_id))
    index.update_all()
    assert index.steps() == [1, 2, 3, 4] and len(index) == 16
    history = trainer.state.log_history
    for step in index.steps():
        rewards = [r["reward"] for r in index.page(step, group=False)["rows"]]
        logged = next(e for e in history if e.get("step") == step and "reward" in e)["reward"]
        assert sum(rewards) / len(rewards) == pytest.approx(logged, abs=1e-6)  # the batch behind the logged mean


def test_rloo_live_capture(make_trainer, tmp_path):
    cb, trainer = train(make_trainer, tmp_path, kind="rloo", max_steps=4, log_completions=True)
    check_logs_structure(trainer)
    assert not completions_folder(trainer.args.output_dir).exists()  # RLOO writes no parquet
    index = SampleIndex.for_store(RunStore(cb.output_dir, cb.run_id), [completions_folder(trainer.args.output_dir)])
    update = index.update_all()
    assert update.problems == [] and index.steps() == [1, 2, 3, 4] and len(index) == 16
    rows = index.page(2, group=False)["rows"]
    assert all(isinstance(r["advantage"], float) for r in rows) and rows[0]["source"] == "live"


def test_output_folder_trained_without_our_callback(make_trainer, tmp_path):
    _, trainer = train(make_trainer, tmp_path, callback=False, max_steps=4, log_completions=True)
    index = SampleIndex("hf_out", None, [completions_folder(tmp_path / "out")])
    update = index.update_all()
    assert update.problems == [] and index.steps() == [1, 2, 3, 4]
    page = index.page(4, sort="reward", descending=True)
    assert page["reward_names"] == ["reward_len", "reward_words"] and page["total_groups"] == 2
    rows = [r for g in page["groups"] for r in g["rows"]]
    best = [g["rows"][0]["reward"] for g in page["groups"]]
    assert best == sorted(best, reverse=True)  # groups by their best row, rows best first
    assert all([r["reward"] for r in g["rows"]] == sorted((r["reward"] for r in g["rows"]), reverse=True)
               for g in page["groups"])
    assert all(r["truncated"] is None and r["source"] == "parquet" for r in rows)  # TRL's parquet has no lengths
    prompt = page["groups"][0]["prompt"]
    assert prompt in grpo_prompts(64, seed=1)["prompt"]
    matches = index.search(rows[0]["completion"][:3] or "a")
    assert matches["matches"] and matches["matches"][0]["step"] == 4


def half_none_reward(completions, **kwargs):
    """None for every second completion (TRL: NaN, the parquet: null)."""
    return [float(len(c[0]["content"])) if i % 2 else None for i, c in enumerate(completions)]


def test_conversational_data_from_both_sources(tiny_assets, tmp_path):
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback

    dataset = Dataset.from_dict({"prompt": [
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": line}]
        for line in synthetic_lines(32, seed=2)]})
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=3, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
        per_device_train_batch_size=4, num_generations=2, max_completion_length=8, log_completions=True,
        save_strategy="no", seed=0, disable_tqdm=True,
    )
    trainer = trl.GRPOTrainer(model=str(tiny_assets["causal_lm"]), reward_funcs=[half_none_reward, reward_len],
                              args=args, train_dataset=dataset,
                              processing_class=AutoTokenizer.from_pretrained(tiny_assets["tokenizer"]))
    trainer.remove_callback(PrinterCallback)
    cb = RLDKCallback(tmp_path / "logs", run_id="chat").attach(trainer)
    trainer.train()
    schema = pq.read_schema(completions_folder(tmp_path / "out") / "completions_00001.parquet")
    assert str(schema.field("prompt").type) == "list<element: struct<role: string, content: string>>"
    live = SampleIndex.for_store(RunStore(cb.output_dir, cb.run_id))
    parquet = SampleIndex("p", None, [completions_folder(tmp_path / "out")])
    for index in (live, parquet):
        assert index.update_all().problems == [] and index.steps() == [1, 2, 3]
    assert ids_by_step(live) == ids_by_step(parquet)
    row = live.page(1, group=False)["rows"][0]
    assert row["prompt"].startswith("system: be brief\n\nuser: ") and row["completion"].startswith("assistant: ")
    assert row["rewards"]["half_none_reward"] is None and parquet.page(1, group=False)["rows"][0]["rewards"][
        "half_none_reward"] is None
