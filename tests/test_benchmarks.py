"""The benchmark scripts still run: each one's --quick smoke mode (small sizes, few repetitions) exits 0 and
writes its JSON with a verdict for every target. Quick numbers are not measurements, so no target is asserted
here; `make bench` runs the full suite (benchmarks/README.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("name", ["store", "single_call", "wire", "peers", "notebook_size", "static_view", "samples",
                                  "sweep", "remote", "health",
                                  pytest.param("alert_eval", marks=pytest.mark.training)])  # trains tiny TRL runs
def test_benchmark_quick_run_writes_its_results(name, tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / f"{name}.quick.json").read_text())
    assert results["quick"] is True and results["data"]
    assert all(check["verdict"] in ("PASS", "MISS") for check in results["checks"])
    assert "| " in done.stdout  # the table was printed
