"""A training job for the remote tests: appends one metrics record per step to a local run (RunStore, as
RLDKCallback's writes do, without importing transformers so that it starts in a fraction of a second) and mirrors the
run to `--mirror` (mirror.Mirror, as RLDKCallback(mirror_to=...) does). Storage options come as JSON in the
RLDK_TEST_STORAGE_OPTIONS environment variable: credentials never go on a command line.

Prints `step N` after each append and `done` at the end: after `finish()` (the final upload), or with `--exit-upload`
without it (the process exit's upload does it)."""

from __future__ import annotations

import argparse
import json
import os
import time

from rldk_widget.mirror import Mirror
from rldk_widget.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--mirror", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--step-s", type=float, default=0.05)
    parser.add_argument("--mirror-interval", type=float, default=0.5)
    parser.add_argument("--exit-upload", action="store_true", help="end without finish(): the exit hook uploads")
    options = parser.parse_args()
    storage_options = json.loads(os.environ.get("RLDK_TEST_STORAGE_OPTIONS", "{}"))
    if "RLDK_TEST_S3_RETRIES" in os.environ:  # s3fs retries 5 times by default: a test's outage should fail fast
        import s3fs

        s3fs.S3FileSystem.retries = int(os.environ["RLDK_TEST_S3_RETRIES"])
    store = RunStore(options.out, options.run_id)
    mirror = Mirror(options.out, options.run_id, options.mirror, storage_options, options.mirror_interval,
                    request_timeout=2.0)  # a test's outage: an upload that hangs is given up after 2 s
    store.write_info({"run_id": options.run_id, "max_steps": options.steps, "trainer": "grpo", "started": time.time()})
    mirror.start()
    for step in range(1, options.steps + 1):
        store.append_metrics({"step": step, "loss": 1.0 / step, "reward_mean": step * 0.01, "timestamp": time.time()})
        print(f"step {step}", flush=True)
        time.sleep(options.step_s)
    store.write_info({"run_id": options.run_id, "max_steps": options.steps, "trainer": "grpo",
                      "train_runtime": 1.0, "finished": time.time()})
    store.close()
    if not options.exit_upload:
        print("finished" if mirror.finish(20) else "not finished", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
