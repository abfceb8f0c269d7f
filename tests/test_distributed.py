"""A real two-process run (`torchrun --nproc_per_node=2`, gloo on CPU): every rank adds `dash.callback()` to its
Trainer, and only rank zero writes or tells anyone anything, although the Trainer calls every hook on both ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.training, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[1]
STEPS = 4

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from rldk_widget import RLDKDashboard

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def forward(self, x, y):
            return {"loss": torch.nn.functional.mse_loss(self.lin(x).squeeze(-1), y)}

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            x = torch.randn(4, generator=torch.Generator().manual_seed(i))
            return {"x": x, "y": x.sum()}

    class Hooks(TrainerCallback):
        '''Counts the hooks the Trainer called on this rank, and the state it called them with.'''
        def __init__(self):
            self.calls = {}
            self.zero = set()

        def _seen(self, name, state):
            self.calls[name] = self.calls.get(name, 0) + 1
            self.zero.add(state.is_world_process_zero)

        def on_train_begin(self, args, state, control, **kwargs): self._seen("on_train_begin", state)
        def on_log(self, args, state, control, **kwargs): self._seen("on_log", state)
        def on_save(self, args, state, control, **kwargs): self._seen("on_save", state)
        def on_train_end(self, args, state, control, **kwargs): self._seen("on_train_end", state)

    out, steps = sys.argv[1], int(sys.argv[2])
    rank = int(os.environ["RANK"])
    dash = RLDKDashboard(output_dir=os.path.join(out, "logs"), run_id=f"rank{rank}", auto_refresh=False)
    events = []
    callback = dash.callback(write_interval=0)
    callback.add_listener(lambda kind, record: events.append(kind))
    hooks = Hooks()
    args = TrainingArguments(
        output_dir=os.path.join(out, "trainer"), max_steps=steps, logging_steps=1, per_device_train_batch_size=4,
        report_to=[], use_cpu=True, ddp_backend="gloo", save_strategy="steps", save_steps=2, save_only_model=True,
        disable_tqdm=True, dataloader_num_workers=0, seed=0,
    )
    trainer = Trainer(model=Tiny(), args=args, train_dataset=Data(), callbacks=[callback, hooks])
    trainer.train()
    frame = dash.to_dataframe()
    result = {
        "world_size": args.world_size, "zero": sorted(hooks.zero), "hooks": hooks.calls, "events": events,
        "dashboard_steps": [] if frame.empty else frame["step"].tolist(), "alerts": len(dash.alerts_dataframe()),
        "info": dash.info, "logged": [entry["step"] for entry in trainer.state.log_history if "loss" in entry],
    }
    dash.close()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_ranks_only_rank_zero_writes_and_tells(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", str(script), str(tmp_path), str(STEPS)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=150, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    zero, other = (json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1))

    # the Trainer called every hook on both ranks, with the right rank flag: the callback had to decide
    assert zero["world_size"] == other["world_size"] == 2
    assert zero["zero"] == [True] and other["zero"] == [False]
    for hooks in (zero["hooks"], other["hooks"]):
        assert hooks == {"on_train_begin": 1, "on_log": STEPS + 1, "on_save": STEPS // 2, "on_train_end": 1}, hooks
    assert zero["logged"] == other["logged"] == list(range(1, STEPS + 1))

    # rank one: nothing on disk, nothing told, nothing in its dashboard
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir() if p.name.startswith("rank1")) == []
    assert other["events"] == [] and other["dashboard_steps"] == [] and other["alerts"] == 0 and other["info"] == {}

    # rank zero: every step once, the checkpoint rows, the run info, and its dashboard shows the steps
    from rldk_widget.store import RunStore

    data = RunStore(logs, "rank0").read_all()
    assert [r["step"] for r in data.metrics] == list(range(1, STEPS + 1))
    assert [r["step"] for r in data.checkpoint_summary] == [2, 4]
    info = RunStore(logs, "rank0").read_info()
    assert info["max_steps"] == STEPS and info["train_runtime"] > 0
    assert zero["dashboard_steps"] == list(range(1, STEPS + 1)) and zero["info"]["rank0"]["max_steps"] == STEPS
    assert zero["events"].count("metrics") == STEPS and zero["events"].count("checkpoint_summary") == 2
    assert zero["events"].count("run_info") == 2
