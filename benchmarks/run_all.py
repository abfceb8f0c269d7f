"""Run every benchmark (full mode unless --quick), each in its own process so one's memory does not weigh on the
next, print every table as it comes and a summary of the targets, and write benchmarks/results/run_all.json.

    .venv/bin/python benchmarks/run_all.py [--quick]        (make bench)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

SCRIPTS = ("store", "single_call", "health", "wire", "peers", "notebook_size", "static_view", "samples", "samples_tab", "sweep",
           "remote", "browser", "overhead", "alert_eval")
BUDGET_S = 600  # issue 7: the whole suite in about 10 minutes on 2 cores


def main(argv: list[str] | None = None) -> int:
    args = c.parse_args(__doc__.splitlines()[0], argv)
    started = time.perf_counter()
    extra = ["--quick"] if args.quick else []
    if args.results_dir is not None:
        extra += ["--results-dir", str(args.results_dir)]
    out_dir = args.results_dir or c.RESULTS_DIR
    print(f"run_all: {'QUICK smoke run' if args.quick else 'full run'} of {', '.join(SCRIPTS)}; {c.load_note()}",
          flush=True)
    runs = []
    for name in SCRIPTS:
        script = c.BENCH_DIR / f"{name}.py"
        print(f"\n{'=' * 100}\n$ {Path(sys.executable).name} benchmarks/{name}.py {' '.join(extra)}\n{'=' * 100}",
              flush=True)
        t = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *extra], cwd=c.REPO)
        elapsed = time.perf_counter() - t
        result_path = out_dir / (f"{name}.quick.json" if args.quick else f"{name}.json")
        checks = []
        if code == 0 and result_path.exists():
            checks = json.loads(result_path.read_text()).get("checks", [])
        runs.append({"script": name, "exit_code": code, "elapsed_s": elapsed, "checks": checks})

    total = time.perf_counter() - started
    summary = c.Table("All targets", ["benchmark", "check", "measured", "target", "verdict"])
    for run in runs:
        if run["exit_code"] != 0:
            summary.add(run["script"], "script failed", f"exit code {run['exit_code']}", "-", "ERROR")
        for item in run["checks"]:
            summary.add(run["script"], item["name"], item["shown"],
                        f"{item['comparison']} {c._fmt_value(item['target'], item['unit'])}", item["verdict"])
    times = c.Table("Run time", ["benchmark", "seconds", "exit code"])
    for run in runs:
        times.add(run["script"], f"{run['elapsed_s']:.1f}", run["exit_code"])
    times.add("total", f"{total:.1f}", "-")
    times.note(f"budget: {BUDGET_S} s on 2 CPU cores (issue 7) — {'within' if total <= BUDGET_S else 'OVER'} budget; "
               f"{c.load_note()}")
    print(f"\n{'=' * 100}")
    for table in (summary, times):
        print()
        print(table.render())
    passed = sum(1 for r in runs for i in r["checks"] if i["verdict"] == "PASS")
    missed = sum(1 for r in runs for i in r["checks"] if i["verdict"] == "MISS")
    failed = [r["script"] for r in runs if r["exit_code"] != 0]
    print(f"\n{passed} PASS, {missed} MISS, {len(failed)} script(s) failed{': ' + ', '.join(failed) if failed else ''}; "
          f"total {total:.1f} s")

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("run_all.quick.json" if args.quick else "run_all.json")
    path.write_text(json.dumps({
        "quick": bool(args.quick),
        "created_unix": time.time(),
        "total_s": total,
        "budget_s": BUDGET_S,
        "machine": c.machine(),
        "load_average_at_start": list(c.LOAD_AT_START),
        "git_head": c.git_revision(),
        "runs": runs,
        "tables": [summary.to_json(), times.to_json()],
    }, indent=2) + "\n")
    print(f"results written to {path}")
    return 1 if failed else 0  # a MISS is a result, not a failure


if __name__ == "__main__":
    sys.exit(main())
