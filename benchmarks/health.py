"""The dashboard's health checks (issue 16's rules) per record: `AlertMonitor.observe` record by record (the way
they ran before issue 14 §5's batches) against `alert_batches.observe_columns` over batches of the size a
dashboard hands its check thread, on a healthy synthetic run of every trainer kind and on the single-call
benchmark's rows. Both monitors must raise the same alerts (checked, not assumed); the table says how many records
the screen sent through the rules one by one.

    .venv/bin/python benchmarks/health.py [--quick]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "health"
FULL = dict(steps=20_000, batch=4096, reps=3)
QUICK = dict(steps=1_500, batch=512, reps=1)
TARGET_SPEEDUP = 3.0  # observe_columns per record, at least this many times cheaper than record by record


def rows_of(kind: str, steps: int) -> list[dict[str, Any]]:
    """Training records of one layout, numbers only, as a dashboard's series hand them to the checks."""
    if kind == "single_call rows":
        return [{k: v for k, v in record.items() if k not in ("run_id", "timestamp")}
                for record in c.RecordMaker("bench_run").many(0, steps)]
    from rldk_widget.synthetic_runs import healthy_run, records

    out = [{key: (math.nan if value is None else float(value)) if key != "step" else value
            for key, value in record.items() if key not in ("run_id", "timestamp")}
           for record in records(healthy_run(kind, steps=steps, seed=3, eval_every=None), kind)]
    return [row for row in out if row.keys() == out[0].keys()]


def measure(kind: str, cfg: dict) -> dict[str, Any]:
    import numpy as np

    from rldk_widget.alert_batches import observe_columns
    from rldk_widget.alerts import AlertMonitor, AlertRules

    rows = rows_of(kind, cfg["steps"])
    rules = AlertRules.for_trainer("grpo" if kind == "single_call rows" else kind)
    names = [key for key in rows[0] if key != "step"]
    steps = np.array([row["step"] for row in rows], dtype="f8")
    columns = {name: np.array([row[name] for row in rows], dtype="f8") for name in names}
    one_by_one, batched, alerts = [], [], {}
    observed = 0
    for _ in range(cfg["reps"]):
        monitor = AlertMonitor(rules)
        t = c.now()
        alerts["one by one"] = [alert for row in rows for alert in monitor.observe(row)]
        one_by_one.append((c.now() - t) / len(rows))
        monitor = AlertMonitor(rules)
        calls = [0]
        observe = monitor.observe

        def counted(record: dict[str, Any]) -> list[dict[str, Any]]:
            calls[0] += 1
            return observe(record)

        monitor.observe = counted  # type: ignore[method-assign]
        raised = []
        t = c.now()
        for start in range(0, len(rows), cfg["batch"]):
            part = slice(start, start + cfg["batch"])
            raised.extend(observe_columns(monitor, steps[part], {name: values[part] for name, values in columns.items()}))
        batched.append((c.now() - t) / len(rows))
        alerts["batched"] = raised
        observed = calls[0]
    assert repr(alerts["batched"]) == repr(alerts["one by one"]), f"{kind}: the batched monitor raised other alerts"
    return {"kind": kind, "records": len(rows), "keys": len(names), "alerts": len(alerts["batched"]),
            "observed_one_by_one": observed, "one_by_one_s": min(one_by_one), "batched_s": min(batched)}


def main(argv: list[str] | None = None) -> int:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    from rldk_widget.synthetic_runs import KINDS

    table = c.Table(
        f"Health checks per record, {cfg['steps']:,}-step healthy runs, batches of {cfg['batch']:,} (best of "
        f"{cfg['reps']})",
        ["run", "records", "keys", "alerts (both)", "through the rules one by one", "record by record", "batched",
         "speed-up"],
    )
    results = []
    for kind in ("single_call rows", *KINDS):
        result = measure(kind, cfg)
        results.append(result)
        table.add(kind, c.fmt_int(result["records"]), result["keys"], result["alerts"],
                  f"{result['observed_one_by_one'] / result['records']:.1%}", c.fmt_time(result["one_by_one_s"]),
                  c.fmt_time(result["batched_s"]), f"{result['one_by_one_s'] / result['batched_s']:.1f}×")
        print(f"  {kind}: {result['one_by_one_s'] * 1e6:.1f} -> {result['batched_s'] * 1e6:.2f} µs per record",
              flush=True)
    table.note("Same process, same rows: AlertMonitor.observe per record, then observe_columns over batches (the "
               "health check thread's batch size). A run's first records (until every window of the rules is full), "
               "records the screen marks and the records after them while a condition lasts go through observe.")
    checks = c.Checks()
    worst = min(r["one_by_one_s"] / r["batched_s"] for r in results)
    checks.add("batched health checks, worst speed-up over the record-by-record rules (every kind)", worst,
               TARGET_SPEEDUP, "ratio", higher_is_better=True, shown=f"{worst:.1f}×")
    c.write_results(NAME, args, [table], checks, {"runs": results, "config": cfg}, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
