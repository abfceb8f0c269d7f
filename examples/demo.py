"""The original RLDK dashboard's three demo scenarios, on synthetic data, ending in an HTML snapshot.

1. manual updates: `add_metrics` / `add_alert` on a dashboard;
2. callback integration: an `RLDKCallback` driven through the transformers callback API with GRPO-style logs,
   connected to the dashboard;
3. programmatic refresh: another writer appends to run files while the dashboard auto-refreshes.

Run: `python examples/demo.py --output-dir demo_output` (or `make demo`), then open demo_output/dashboard.html.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

from rldk_widget import RLDKDashboard, RLDKMetrics
from rldk_widget.store import RunStore


def manual_updates(output_dir: Path) -> RLDKDashboard:
    dash = RLDKDashboard(output_dir=output_dir, run_id="manual_demo", auto_refresh=False)
    rng = random.Random(0)
    for step in range(1, 151):
        reward = 1 - math.exp(-step / 40) + rng.gauss(0, 0.05)
        dash.add_metrics(
            RLDKMetrics(step=step, loss=1 / math.sqrt(step) + rng.gauss(0, 0.02), reward_mean=reward,
                        reward_std=0.2 * math.exp(-step / 80) + 0.02, kl_mean=0.002 * step ** 0.8,
                        entropy_mean=2.0 - step / 120, grad_norm=abs(rng.gauss(1, 0.3)), learning_rate=1e-5)
        )
    dash.add_alert({"type": "high_kl", "message": "KL above 0.1 — policy drifting from the reference",
                    "step": 120, "severity": "warning"})
    return dash


def callback_integration(output_dir: Path) -> RLDKDashboard:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from rldk_widget import RLDKCallback

    dash = RLDKDashboard(output_dir=output_dir, run_id="callback_demo", auto_refresh=False)
    callback = RLDKCallback(output_dir=output_dir, run_id="callback_demo")
    dash.connect_callback(callback)
    with tempfile.TemporaryDirectory() as trainer_dir:
        args = TrainingArguments(output_dir=trainer_dir, report_to=[])
        state, control = TrainerState(), TrainerControl()
        state.max_steps = 80
        callback.on_train_begin(args, state, control)
        rng = random.Random(1)
        for step in range(1, 81):
            state.global_step = step
            reward = 0.2 + 0.6 * step / 80 + rng.gauss(0, 0.04)
            logs = {"loss": 0.02 * rng.random(), "grad_norm": abs(rng.gauss(0.5, 0.1)), "learning_rate": 1e-6,
                    "reward": reward, "reward_std": 0.3, "kl": 0.0005 * step, "entropy": 1.5 - step / 200,
                    "completions/mean_length": 40 + step / 4, "frac_reward_zero_std": 0.1}
            if step == 60:
                logs["loss"] = float("nan")
            callback.on_log(args, state, control, logs=logs)
        callback.on_train_end(args, state, control)
    return dash


def programmatic_refresh(output_dir: Path) -> RLDKDashboard:
    dash = RLDKDashboard(output_dir=output_dir, run_id="refresh_demo", auto_refresh=False)
    dash.enable_auto_refresh(0.2)
    writer = RunStore(output_dir, "refresh_demo")

    def other_process_like_writer() -> None:
        for step in range(1, 61):
            writer.append_metrics({"step": step, "loss": 2 / (1 + step / 10), "reward_mean": step / 60,
                                   "timestamp": time.time()})
            time.sleep(0.01)

    thread = threading.Thread(target=other_process_like_writer)
    thread.start()
    thread.join()
    deadline = time.time() + 5
    while len(dash.to_dataframe()) < 60 and time.time() < deadline:
        time.sleep(0.05)
    dash.disable_auto_refresh()
    return dash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="demo_output")
    options = parser.parse_args()
    output_dir = Path(options.output_dir)
    shutil.rmtree(output_dir, ignore_errors=True)
    runs_dir = output_dir / "runs"
    for name, scenario in (("manual updates", manual_updates), ("callback integration", callback_integration),
                           ("programmatic refresh", programmatic_refresh)):
        dash = scenario(runs_dir)
        frame = dash.to_dataframe()
        alerts = dash.alerts_dataframe()
        print(f"{name:22s} run {dash.run_ids[0]:14s} {len(frame):4d} steps, {len(alerts)} alert(s)")
        dash.close()
    overview = RLDKDashboard.from_dir(runs_dir, auto_refresh=False)
    snapshot = overview.save_html(output_dir / "dashboard.html")
    print(f"all runs: {', '.join(overview.run_ids)}; snapshot written to {snapshot}")
    overview.close()


if __name__ == "__main__":
    main()
