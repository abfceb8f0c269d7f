"""Live capture of completions through RLDKCallback, driven by hand with a stand-in for TRL 1.16's trainer (its
`_logs` structure, see trl_samples.py): what is recorded, repeats skipped, every n-th log, bounds, the listener
event, the run info, and failing soft (a trainer without the structure, or one whose structure changes mid-run,
costs the samples with one warning, never the training or the metrics)."""

from __future__ import annotations

import warnings
from collections import defaultdict, deque
from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainerState

from rldk_widget.callback import RLDKCallback
from rldk_widget.sample_index import SampleIndex
from rldk_widget.samples import SampleSettings
from rldk_widget.store import RunStore
from rldk_widget.trl_samples import LogsDequeAdapter, LiveCapture, adapter_for

LOG = {"loss": 0.1, "reward": 0.5, "completions/clipped_ratio": 0.0, "completions/min_length": 1.0,
       "completions/max_length": 6.0}


class GRPOConfig(SimpleNamespace):
    """Stands in for trl.GRPOConfig (the callback reads the trainer kind from the class name)."""


class FakeGRPOTrainer:
    """The parts of TRL 1.16's GRPOTrainer the adapter reads."""

    def __init__(self, output_dir, batch_size=8, group=4, log_completions=False):
        self.args = GRPOConfig(output_dir=str(output_dir), max_completion_length=6, log_completions=log_completions,
                               generation_batch_size=batch_size)
        self.batch_size, self.group = batch_size, group
        self.reward_func_names = ["r_len", "r_fmt"]
        self.reward_weights = [1.0, 0.5]
        self.processing_class = None
        self.callbacks = []
        self.generations = 0
        size = batch_size
        self._logs = {
            "images": deque(maxlen=size), "prompt": deque(maxlen=size), "completion": deque(maxlen=size),
            "rewards": defaultdict(lambda: deque(maxlen=size)), "advantages": deque(maxlen=size),
            "extra": defaultdict(lambda: deque(maxlen=size)),
        }

    def generate(self):
        """What `_generate_and_score_completions` adds to `_logs`: one generation batch."""
        g = self.generations = self.generations + 1
        n = self.batch_size
        self._logs["prompt"].extend(f"prompt {g}.{i // self.group}" for i in range(n))
        self._logs["completion"].extend(f"answer {g}.{i}" for i in range(n))
        self._logs["rewards"]["r_len"].extend(float(i) for i in range(n))
        self._logs["rewards"]["r_fmt"].extend(1.0 for _ in range(n))
        self._logs["advantages"].extend([float(i % self.group) - 1.5 + g * 1e-3 for i in range(n)])
        self._logs["extra"]["golden"].extend("gold" for _ in range(n))

    def add_callback(self, callback):
        self.callbacks.append(callback)


def drive(cb, trainer, logs_per_generation=1, generations=3, evals=False):
    """A training loop's hooks: train begin, then per step maybe a generation and a log, then the summary."""
    state = TrainerState(max_steps=generations * logs_per_generation, is_world_process_zero=True)
    control = TrainerControl()
    cb.on_train_begin(trainer.args, state, control)
    for step in range(1, generations * logs_per_generation + 1):
        if (step - 1) % logs_per_generation == 0:
            trainer.generate()
        state.global_step = step
        cb.on_log(trainer.args, state, control, logs=dict(LOG))
        if evals:
            cb.on_log(trainer.args, state, control, logs={"eval_loss": 0.2})
    cb.on_log(trainer.args, state, control, logs={"train_runtime": 1.0, "train_loss": 0.1})
    cb.on_train_end(trainer.args, state, control)


def samples_of(cb):
    return RunStore(cb.output_dir, cb.run_id).read_all(("samples",)).samples


def test_live_capture_records_each_generation_once(tmp_path):
    trainer = FakeGRPOTrainer(tmp_path / "out")
    events = []
    cb = RLDKCallback(tmp_path / "logs", run_id="live", trainer=trainer)
    cb.add_listener(lambda kind, record: events.append((kind, record)))
    drive(cb, trainer, logs_per_generation=2, generations=3, evals=True)
    samples = samples_of(cb)
    assert [r["step"] for r in samples] == [1] * 8 + [3] * 8 + [5] * 8  # repeats at 2, 4, 6 and evals skipped
    first = samples[1]
    assert first["prompt"] == "prompt 1.0" and first["completion"] == "answer 1.1"
    assert first["rewards"] == {"r_len": 1.0, "r_fmt": 1.0} and first["reward"] == 1.5  # weights 1 and 0.5
    assert first["truncated"] is False and first["extra"] == {"golden": "gold"} and first["run_id"] == "live"
    assert [r for k, r in events if k == "samples"] == [
        {"run_id": "live", "step": s, "count": 8} for s in (1, 3, 5)]
    info = cb.run_info
    assert info["trainer_output_dir"].endswith("out") and info["completions_dir"] is None
    assert info["sample_source"] == LogsDequeAdapter.name and info["reward_funcs"] == ["r_len", "r_fmt"]
    index = SampleIndex.for_store(RunStore(cb.output_dir, cb.run_id))
    index.update_all()
    assert index.steps() == [1, 3, 5] and len(index) == 24


def test_attach_adds_the_callback_once_and_dashboard_callback_passes_the_trainer(tmp_path, dashboards):
    trainer = FakeGRPOTrainer(tmp_path / "out", log_completions=True)
    trainer.callback_handler = SimpleNamespace(callbacks=trainer.callbacks)
    cb = RLDKCallback(tmp_path / "logs", run_id="a")
    assert cb.attach(trainer) is cb and trainer.callbacks == [cb]
    cb.attach(trainer)
    assert trainer.callbacks == [cb]
    drive(cb, trainer, generations=1)
    assert len(samples_of(cb)) == 8
    assert cb.run_info["completions_dir"].endswith("out/completions")
    dash = dashboards(tmp_path / "dash", run_id="d")
    from_dash = dash.callback(trainer=trainer)
    drive(from_dash, trainer, generations=1)
    assert len(samples_of(from_dash)) == 8


def test_settings_bound_what_is_recorded(tmp_path):
    trainer = FakeGRPOTrainer(tmp_path / "out", batch_size=16, group=4)
    cb = RLDKCallback(tmp_path / "logs", run_id="b", trainer=trainer,
                      samples=SampleSettings(per_step=10, every=2, text_cap_bytes=16))
    drive(cb, trainer, generations=5)
    samples = samples_of(cb)
    assert sorted({r["step"] for r in samples}) == [1, 3, 5]  # every 2nd logged step
    assert [r["index"] for r in samples if r["step"] == 1] == list(range(8))  # two whole groups of four
    assert RLDKCallback(tmp_path / "logs", run_id="c", trainer=trainer, samples=False)._capture is None
    with pytest.raises(TypeError):
        RLDKCallback(tmp_path / "logs", samples="all")


def test_no_trainer_no_samples(tmp_path):
    trainer = FakeGRPOTrainer(tmp_path / "out")
    cb = RLDKCallback(tmp_path / "logs", run_id="n")
    drive(cb, trainer)
    assert samples_of(cb) == [] and not (tmp_path / "logs" / "n_samples.json").exists()
    assert len(RunStore(cb.output_dir, cb.run_id).read_all().metrics) == 3


def test_a_trainer_without_completions_warns_once_and_trains_on(tmp_path):
    class DPOTrainer:
        args = GRPOConfig(output_dir=str(tmp_path / "out"))

    with pytest.warns(RuntimeWarning, match="completions of DPOTrainer are not recorded"):
        cb = RLDKCallback(tmp_path / "logs", run_id="dpo", trainer=DPOTrainer())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drive(cb, FakeGRPOTrainer(tmp_path / "out"))
    assert samples_of(cb) == [] and len(RunStore(cb.output_dir, cb.run_id).read_all().metrics) == 3


def test_a_structure_that_changes_mid_run_stops_capture_with_one_warning(tmp_path):
    trainer = FakeGRPOTrainer(tmp_path / "out")
    cb = RLDKCallback(tmp_path / "logs", run_id="x", trainer=trainer)
    state = TrainerState(max_steps=5, is_world_process_zero=True)
    control = TrainerControl()
    cb.on_train_begin(trainer.args, state, control)
    trainer.generate()
    state.global_step = 1
    cb.on_log(trainer.args, state, control, logs=dict(LOG))
    trainer._logs = {"renamed": True}  # a TRL upgrade renamed the private state
    with pytest.warns(RuntimeWarning, match="not recorded: KeyError"):
        for step in (2, 3, 4):
            trainer.generate = lambda: None
            state.global_step = step
            cb.on_log(trainer.args, state, control, logs=dict(LOG))
    cb.on_train_end(trainer.args, state, control)
    assert {r["step"] for r in samples_of(cb)} == {1}
    assert [r["step"] for r in RunStore(cb.output_dir, cb.run_id).read_all().metrics] == [1, 2, 3, 4]
    assert not cb._capture.active


def test_a_failing_write_pass_costs_the_samples_not_the_metrics(tmp_path, monkeypatch):
    import rldk_widget.callback as callback_module

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(callback_module, "batch_records", broken)
    trainer = FakeGRPOTrainer(tmp_path / "out")
    cb = RLDKCallback(tmp_path / "logs", run_id="w", trainer=trainer)
    with pytest.warns(RuntimeWarning, match="recording samples failed"):
        drive(cb, trainer)
    assert samples_of(cb) == [] and len(RunStore(cb.output_dir, cb.run_id).read_all().metrics) == 3


def test_adapter_choice_and_the_trainer_held_weakly(tmp_path):
    trainer = FakeGRPOTrainer(tmp_path)
    adapter, problem = adapter_for(trainer)
    assert isinstance(adapter, LogsDequeAdapter) and problem is None
    assert adapter_for(object())[1] == "object has no `_logs` dict (it keeps no generated completions)"
    missing = FakeGRPOTrainer(tmp_path)
    del missing._logs["advantages"]
    assert adapter_for(missing)[1] == "FakeGRPOTrainer._logs has no advantages"
    capture = LiveCapture(trainer, SampleSettings())
    assert capture.snapshot(1, LOG) is None  # nothing generated yet
    trainer.generate()
    assert capture.snapshot(1, LOG) is not None and capture.snapshot(2, LOG) is None  # the same batch
    del trainer
    import gc

    gc.collect()
    assert not capture.active and capture.snapshot(3, LOG) is None


def test_token_counter_uses_the_trainers_tokenizer(tmp_path, tiny_assets):
    from transformers import AutoTokenizer

    trainer = FakeGRPOTrainer(tmp_path / "out")
    trainer.processing_class = AutoTokenizer.from_pretrained(tiny_assets["tokenizer"])
    cb = RLDKCallback(tmp_path / "logs", run_id="t", trainer=trainer)
    drive(cb, trainer, generations=1)
    expected = [len(trainer.processing_class(f"answer 1.{i}", add_special_tokens=False)["input_ids"])
                for i in range(8)]
    assert [r["completion_length"] for r in samples_of(cb)] == [min(max(x, 1), 6) for x in expected]


def test_token_counter_works_on_its_own_copy_of_the_tokenizer(tmp_path, tiny_assets):
    """The write pass may run on a worker thread while TRL tokenizes with padding / truncation set (a Rust
    tokenizer used that way from two threads fails with "Already borrowed"): counting uses a clone."""
    import threading

    from transformers import AutoTokenizer

    from rldk_widget.trl_samples import _token_counter

    trainer = FakeGRPOTrainer(tmp_path)
    trainer.processing_class = AutoTokenizer.from_pretrained(tiny_assets["tokenizer"])
    count = _token_counter(trainer)
    text = "the cat sat on the mat " * 20
    full = count([text])[0]
    trainer.processing_class.backend_tokenizer.enable_truncation(3)  # the trainer's settings: not ours
    assert count([text]) == [full] and full > 3
    errors = []

    def trainer_side():
        try:
            for _ in range(200):
                trainer.processing_class([text] * 4, padding=True, truncation=True, max_length=16)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    thread = threading.Thread(target=trainer_side)
    thread.start()
    for _ in range(200):
        assert count([text] * 4) == [full] * 4
    thread.join()
    assert errors == []
