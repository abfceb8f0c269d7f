"""A saved notebook still shows the run (issue 18): the dashboard's output carries, under the live view, a picture
of its charts and a script-free summary that is replaced after each cell that changed the data — so the notebook
converted with nbconvert (no widget state, as JupyterLab saves by default) shows the final state, hostile text
escaped, within the size budget; `freeze()` replaces the live view by the picture."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

XSS = '<img src=x onerror="window.__pwned=1">reward collapsed'
WIDGET = "application/vnd.jupyter.widget-view+json"


def run_notebook(tmp_path: Path, cells: list[str]) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    path = tmp_path / "saved.ipynb"
    nbformat.write(notebook, path)
    return notebook


SETUP = (
    "import math\n"
    "from rldk_widget import RLDKDashboard\n"
    "dash = RLDKDashboard(output_dir='runs', run_id='saved_run', auto_refresh=False)\n"
    "dash"
)
FEED = (
    "dash.add_metrics([{'step': s, 'loss': 1 / (s + 1), 'reward_mean': s / 200, 'kl_mean': 0.001 * s}"
    " for s in range(200)])\n"
    f"dash.add_alert({{'type': 'custom', 'message': {XSS!r}, 'step': 150, 'severity': 'critical'}})"
)


def handlers_in(page: str) -> list[str]:
    """Event-handler attributes of any element in an HTML page."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(f"{tag} {name}" for name, _ in attrs if name.lower().startswith("on"))

    Parser().feed(page)
    return found


def outputs_of(cell) -> list[dict]:
    return [output for output in cell.outputs if output.get("output_type") in ("display_data", "execute_result")]


@pytest.mark.timeout(300)
def test_nbconvert_of_a_notebook_saved_without_widget_state_shows_the_final_state(tmp_path):
    notebook = run_notebook(tmp_path, [SETUP, FEED])
    widget_output, picture_output = outputs_of(notebook.cells[0])
    assert WIDGET in widget_output["data"]
    data = picture_output["data"]
    assert set(data) == {"image/png", "text/html", "text/plain"}
    # the picture shows the state after the second cell (step 199, the alert), not the empty dashboard
    html = data["text/html"]
    assert "199" in html and "&lt;img src=x onerror" in html and "<img src=x" not in html
    assert "<script" not in html.lower() and not handlers_in(html)
    png = base64.b64decode(data["image/png"])
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    assert image.width >= 600 and image.height >= 150
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) > 5, "a blank picture"
    size = len(json.dumps(picture_output))
    assert size <= 250_000, size

    converted = subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "html", "--stdout", str(tmp_path / "saved.ipynb")],
        capture_output=True, text=True, timeout=180,
    )
    assert converted.returncode == 0, converted.stderr[-2000:]
    page = converted.stdout
    images = re.findall(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert images, "nbconvert's HTML shows no picture of the dashboard"
    assert Image.open(io.BytesIO(base64.b64decode(images[0]))).width == image.width
    assert "&lt;img src=x onerror" in page and "reward collapsed" in page
    assert not handlers_in(page), "the alert text became markup"


@pytest.mark.timeout(300)
def test_freeze_replaces_the_live_view_by_the_picture(tmp_path):
    notebook = run_notebook(tmp_path, [SETUP, FEED, "dash.freeze()"])
    outputs = outputs_of(notebook.cells[0])
    assert all(WIDGET not in output["data"] for output in outputs), "the live view is still there"
    assert any("image/png" in output["data"] for output in outputs)


@pytest.mark.timeout(300)
def test_no_picture_when_turned_off(tmp_path):
    notebook = run_notebook(tmp_path, [SETUP.replace("auto_refresh=False", "auto_refresh=False, static_picture=False")])
    (output,) = outputs_of(notebook.cells[0])
    assert WIDGET in output["data"]
