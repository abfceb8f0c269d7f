"""A run's configuration (rldk_widget.run_config): the non-default training arguments and the rest RLDKCallback
records (secrets never written), the plain JSON of Hugging Face folders (a pickle is never loaded), and parameters
in folder names."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from rldk_widget.run_config import (
    capture_run_config,
    flatten_config,
    is_secret_key,
    json_value,
    parse_name_params,
    parse_path_params,
    read_folder_config,
    trainer_state_config,
    training_args_diff,
)
from rldk_widget.fs import LOCAL

SECRET = "hf_" + "Q" * 34


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_WIDGET_CACHE_DIR", str(tmp_path / "user-cache"))


# ---- folder names ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("lr_1e-5_s0", {"lr": 1e-5, "s": 0}),
        ("beta=0.04", {"beta": 0.04}),
        ("seed-3", {"seed": 3}),
        ("beta0.04_seed-3", {"beta": 0.04, "seed": 3}),
        ("grpo_lr1e-5_bs32_s1", {"lr": 1e-5, "bs": 32, "s": 1}),
        ("lr=1e-5,seed=0", {"lr": 1e-5, "seed": 0}),
        ("lr=1e-5_num_generations=8", {"lr": 1e-5, "num_generations": 8}),
        ("optim=adamw_torch_lr=1e-5", {"optim": "adamw_torch", "lr": 1e-5}),
        ("beta=0.04_s0", {"beta": 0.04, "s": 0}),
        ("+trainer.beta=0.1", {"trainer.beta": 0.1}),
        ("use_vllm=true", {"use_vllm": True}),
        ("seed_3", {"seed": 3}),
        # not parameters: model names, dates, versions, words
        ("llama3", {}),
        ("gpt2", {}),
        ("v2", {}),
        ("Qwen2.5-0.5B", {}),
        ("2024-01-01", {}),
        ("grpo-output", {}),
        ("checkpoint", {}),
        ("a==b", {}),
        ("x=", {}),
        ("", {}),
        ("s0_s1", {}),  # the same key twice with different values: dropped, not guessed
    ],
)
def test_folder_name_grammar(name, expected):
    assert parse_name_params(name) == expected
    for value in expected.values():
        assert type(value) in (int, float, bool, str)


def test_path_components_merge_and_conflicts_drop():
    assert parse_path_params(["sweep", "lr_1e-5", "seed_2"]) == {"lr": 1e-5, "seed": 2}
    assert parse_path_params(["seed_1", "seed_2", "beta=0.1"]) == {"beta": 0.1}


# ---- training arguments ------------------------------------------------------------------------------------------
@dataclass
class ToyArgs:
    output_dir: str = "out"
    learning_rate: float = 1e-3
    seed: int = 42
    tags: list = field(default_factory=list)
    hub_token: str | None = None
    report_to: str = "none"
    callback: object = None
    _private: int = 0
    eos_token: str | None = None


def test_only_arguments_that_differ_from_the_defaults_and_never_secrets():
    args = ToyArgs(output_dir="o", learning_rate=5e-6, tags=["a", SECRET], hub_token=SECRET, callback=object(),
                   _private=3, eos_token="</s>")
    diff = training_args_diff(args)
    assert diff == {"output_dir": "o", "learning_rate": 5e-6, "tags": ["a", "<redacted>"], "eos_token": "</s>"}
    assert SECRET not in json.dumps(diff)


@pytest.mark.parametrize("key", ["hub_token", "push_to_hub_token", "token", "api_key", "openai_api_key",
                                 "wandb_secret", "db_password", "aws_access_key_id", "credentials"])
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["eos_token", "pad_token", "average_tokens_across_devices", "max_tokens",
                                 "include_num_input_tokens_seen", "keyword", "monkey"])
def test_not_secret_keys(key):
    assert not is_secret_key(key)


def test_json_values():
    import enum

    import numpy as np

    class Kind(enum.Enum):
        A = "a"

    assert json_value(Kind.A) == (True, "a")
    assert json_value(float("inf")) == (True, "inf") and json_value(float("nan")) == (True, "nan")
    assert json_value((1, 2)) == (True, [1, 2])
    assert json_value(np.float32(0.5)) == (True, 0.5)
    assert json_value(object()) == (False, None)
    assert json_value({"a": 1, "token": SECRET, 3: "x"}) == (True, {"a": 1})
    assert json_value("https://user:pw@example.com/x") == (True, "https<redacted>example.com/x")
    ok, text = json_value("x" * 10_000)
    assert ok and len(text) <= 500


def test_real_grpo_config_diff_and_hub_token():
    from trl import GRPOConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = GRPOConfig(output_dir="/tmp/x", learning_rate=2e-5, beta=0.04, num_generations=4, use_cpu=True,
                          bf16=False, report_to=[], hub_token=SECRET)
    diff = training_args_diff(args)
    assert {"learning_rate": 2e-5, "beta": 0.04, "num_generations": 4, "output_dir": "/tmp/x"}.items() <= diff.items()
    assert "hub_token" not in diff and SECRET not in json.dumps(diff)
    assert "per_device_train_batch_size" not in diff and "max_completion_length" not in diff  # defaults


def test_capture_never_raises_and_says_what_is_missing():
    class Broken:
        def to_dict(self):
            raise RuntimeError("boom")

        @property
        def world_size(self):
            raise RuntimeError("no world")

    config = capture_run_config(Broken(), model=object())
    assert config["args_class"] == "Broken" and any("args: RuntimeError" in e for e in config["capture_errors"])
    assert config["versions"]["torch"]


def test_capture_of_a_model_and_a_peft_adapter():
    adapter = SimpleNamespace(peft_type="LORA", r=8, lora_alpha=16, lora_dropout=0.0,
                              target_modules={"v_proj", "q_proj"}, base_model_name_or_path="base/model")
    model = SimpleNamespace(config=SimpleNamespace(_name_or_path="org/model", model_type="llama"),
                            dtype="torch.float32", peft_config={"default": adapter})
    tokenizer = SimpleNamespace(name_or_path="org/tokenizer")
    config = capture_run_config(ToyArgs(), SimpleNamespace(trial_params={"lr": 0.1}), model, tokenizer)
    assert config["model"] == "org/model" and config["model_type"] == "llama" and config["dtype"] == "float32"
    assert config["peft"] == {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                              "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "base/model"}
    assert config["tokenizer"] == "org/tokenizer" and config["trial"] == {"lr": 0.1}
    assert config["output_path"] == os.path.abspath("out")


def test_flatten():
    flat = flatten_config({"args": {"lr": 1, "nested": {"a": 2}, "empty": {}}, "model": "m", "tags": ["b", "a"]})
    assert flat == {"args.lr": 1, "args.nested.a": 2, "model": "m", "tags": '["b","a"]'}


# ---- folders without our files ---------------------------------------------------------------------------------
class Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def hf_folder(path):
    (path / "checkpoint-3").mkdir(parents=True)
    (path / "checkpoint-3" / "trainer_state.json").write_text(json.dumps({
        "max_steps": 6, "train_batch_size": 8, "logging_steps": 1, "trial_params": {"lr": 0.5},
        "log_history": [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)],
    }))
    (path / "checkpoint-3" / "config.json").write_text(json.dumps({
        "_name_or_path": "tiny/llama", "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "dtype": "float32", "vocab_size": 384,
    }))
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "base/x", "peft_type": "LORA",
                                                            "r": 4, "target_modules": ["v", "q"]}))
    (path / "train_results.json").write_text(json.dumps({"train_runtime": 12.5, "epoch": 1.0}))


def test_folder_json_is_read(tmp_path):
    run = tmp_path / "run"
    hf_folder(run)
    config, results, problems = read_folder_config(LOCAL, str(run), LOCAL.listdir(run), "run")
    assert config == {"model": "base/x", "model_type": "llama", "model_class": "LlamaForCausalLM", "dtype": "float32",
                      "peft": {"peft_type": "LORA", "r": 4, "target_modules": ["q", "v"]}}
    assert results == {"train_runtime": 12.5, "epoch": 1.0} and problems == []
    assert trainer_state_config({"max_steps": 6, "train_batch_size": 8, "trial_params": {"lr": 0.5},
                                 "best_metric": None, "log_history": []}) == {
        "state": {"max_steps": 6, "train_batch_size": 8}, "trial": {"lr": 0.5}}


def test_bad_folder_json_is_reported_not_raised(tmp_path):
    (tmp_path / "config.json").write_text("{broken")
    (tmp_path / "train_results.json").mkdir()  # a folder named like a results file
    config, results, problems = read_folder_config(LOCAL, str(tmp_path), LOCAL.listdir(tmp_path), "x")
    assert config == {} and results == {} and any("x/config.json: unreadable" in p for p in problems)


def live_payload(tmp_path):
    """A pickle that writes `tmp_path/pwned` when loaded, and proof that it does (in a subprocess)."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Payload(str(marker)))
    bait = tmp_path / "bait.bin"
    bait.write_bytes(payload)
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())",
                    str(bait)], check=True)
    assert marker.read_text() == "pwned"  # the payload does run code when unpickled
    marker.unlink()
    return marker, payload


def refuse_pickles(monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)


def test_a_malicious_training_args_bin_is_never_loaded(tmp_path, monkeypatch):
    """training_args.bin is a pickle: loading one runs the code it names. The payload is live, yet reading the
    folder's configuration never opens it."""
    marker, payload = live_payload(tmp_path)
    run = tmp_path / "run"
    hf_folder(run)
    for where in (run, run / "checkpoint-3"):
        (where / "training_args.bin").write_bytes(payload)
    refuse_pickles(monkeypatch)
    read: list[str] = []

    class Recording(type(LOCAL)):
        def read(self, path, start, limit=16 << 20):
            read.append(os.fspath(path))
            return super().read(path, start, limit)

    fs = Recording()
    config, results, problems = read_folder_config(fs, str(run), fs.listdir(run), "run")
    assert config["model"] == "base/x" and results["train_runtime"] == 12.5 and problems == []
    assert read and not [path for path in read if path.endswith(".bin")] and not marker.exists()


def test_the_default_instance_leaves_the_running_devices_alone(monkeypatch):
    """Building a TrainingArguments sets up devices and resets accelerate's shared state; during training that
    breaks the trainer (its AcceleratorState loses distributed_type). The default instance reuses the running
    set-up instead — and without that, this test fails."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from trl import GRPOConfig

    import rldk_widget.run_config as run_config

    def check() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            args = GRPOConfig(output_dir="/tmp/x", use_cpu=True, bf16=False, report_to=[], learning_rate=3e-5)
        assert args.device.type == "cpu"
        Accelerator(cpu=True)  # as the trainer sets it up
        assert AcceleratorState._shared_state
        assert training_args_diff(args)["learning_rate"] == 3e-5
        assert AcceleratorState._shared_state, "accelerate's state was reset"
        assert AcceleratorState().distributed_type is not None

    check()
    monkeypatch.setattr(run_config, "_isolated", lambda cls, args: cls)
    with pytest.raises(AssertionError, match="reset"):
        check()
