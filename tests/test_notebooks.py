"""Every notebook in notebooks/ runs headless, top to bottom, and its closing `assert` cells pass.

Each notebook runs in a copy under tmp_path (`notebooks/` and `examples/` side by side, as in the repository),
so nothing lands in the repository. The kernel is ipykernel from this interpreter (a kernelspec written to a
temporary folder, so a `python3` kernelspec installed elsewhere cannot swap the environment); a cell inserted
first in the copy checks that. The notebooks themselves must be stored with outputs cleared.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Notebooks that train a real TRL model (in the kernel or in a subprocess).
TRAINING = {"grpo_live", "colab_grpo", "compare_runs", "monitor_from_disk"}
CELL_TIMEOUT = 300
KERNEL_CHECK = "import sys; print(sys.executable); print(sys.prefix)"


def params():
    for path in NOTEBOOKS:
        marks = [pytest.mark.training] if path.stem in TRAINING else []
        yield pytest.param(path, id=path.stem, marks=marks)


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory) -> KernelSpecManager:
    """A kernelspec directory holding only `python3` = ipykernel of sys.executable."""
    kernels = tmp_path_factory.mktemp("kernels")
    spec_dir = kernels / "python3"
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (rldk_widget tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(kernels)])


def stop_processes_started_in(folder: Path) -> None:
    """Stop what a notebook started and left running after a failure (e.g. its training job)."""
    try:
        import psutil
    except ImportError:
        return
    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if str(folder) in " ".join(proc.info["cmdline"] or ()):
                proc.terminate()
                mine.append(proc)
        except psutil.Error:
            pass
    psutil.wait_procs(mine, timeout=10)


def test_notebooks_exist():
    assert {path.stem for path in NOTEBOOKS} >= TRAINING | {"quickstart"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state; clear it"
    last = nb.cells[-1]
    assert last.cell_type == "code" and "assert " in last.source, f"{path.name} must end with its checks"


@pytest.mark.parametrize("path", list(params()))
def test_notebook_runs(path, tmp_path, kernel_spec_manager):
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(KERNEL_CHECK))
    nbformat.write(nb, workdir / path.name)

    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernel_spec_manager)
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        resources={"metadata": {"path": str(workdir)}},
    )
    started = time.perf_counter()
    try:
        client.execute(cleanup_kc=True)  # a kernel manager passed in is not shut down otherwise
    finally:
        nbformat.write(nb, workdir / f"executed_{path.name}")  # for a look after a failure
        stop_processes_started_in(tmp_path)
    elapsed = time.perf_counter() - started
    print(f"{path.name}: {elapsed:.1f}s")

    printed = "".join(output.get("text", "") for output in nb.cells[0].outputs).splitlines()
    assert printed == [sys.executable, sys.prefix], f"the kernel runs another Python: {printed}"
    errors = [output for cell in nb.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert errors == []


def test_example_script_synthetic(tmp_path):
    """examples/train_tiny_grpo.py --synthetic (the notebook runs the real mode): run files and the KL alert."""
    import subprocess

    from rldk_widget.store import RunStore

    script = ROOT / "examples" / "train_tiny_grpo.py"
    cmd = [sys.executable, str(script), "--output-dir", str(tmp_path), "--run-id", "fake", "--steps", "30",
           "--synthetic", "--step-delay", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("fake: 30 steps")
    data = RunStore(tmp_path, "fake").read_all()
    assert [r["step"] for r in data.metrics] == list(range(1, 31))
    assert "kl_high" in {a["type"] for a in data.alerts}
