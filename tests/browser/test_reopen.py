"""A saved notebook reopened in JupyterLab after its kernel is gone (issue 18): with "Save Widget State
Automatically" on, the dashboard renders again from the saved state (charts, the alert, and in the Samples tab the
saved newest steps' samples, said to be only those); with JupyterLab's default
(off), the widget's line says "model not found" and the picture and summary under it show the last state. The
README says the same."""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest

import lab

if shutil.which("chromium") is None:
    pytest.skip("Debian chromium is not installed (make chromium)", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SETUP = (
    "from rldk_widget import RLDKDashboard\n"
    "dash = RLDKDashboard(output_dir='{folder}', run_id='reopen', auto_refresh=False)\n"
    "dash"
)
FEED = (
    "dash.add_metrics([{'step': s, 'loss': 1 / (s + 1), 'reward_mean': s / 200, 'kl_mean': 0.001 * s}"
    " for s in range(200)])\n"
    "dash.add_alert({'type': 'custom', 'message': '<b>reward</b> collapsed', 'step': 150, 'severity': 'critical'})\n"
    "dash.flush()"
)

# samples of the run's last two steps, appended as the callback appends them (one hostile), then a cell boundary
# after the summary went out: the saved state then holds the samples_recent pages
SAMPLES = (
    "import time\n"
    "from rldk_widget.samples import RawBatch, SampleSettings, batch_records\n"
    "from rldk_widget.store import RunStore\n"
    "for step in (198, 199):\n"
    "    batch = RawBatch(step, ['2+2?', '2+2?'], ['4', '<img src=x onerror=\"window.__pwned=1\">'],"
    " {'exact': [1.0, 0.0]}, [0.7 + step / 1000, -0.7 - step / 1000])  # a new batch each step\n"
    "    RunStore(dash.output_dir, 'reopen').append('samples', batch_records(batch, SampleSettings(), 'reopen', time.time()))\n"
    "dash.update_data()\n"
    "dash.completions()\n"
    "time.sleep(1.5)  # the samples summary goes out at most once a second"
)

OUTPUT_JS = """() => {
  const cell = document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')[0];
  const area = cell && cell.querySelector('.jp-OutputArea');
  if (!area) return null;
  const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const picture = area.querySelector('.rldk-static');
  return {
    text: area.innerText.slice(0, 2000),
    roots: area.querySelectorAll('.rldk-root').length,
    charts: area.querySelectorAll('.rldk-root .rldk-plot .main-svg').length,
    modelNotFound: area.innerText.includes('model not found'),
    pictureVisible: !!picture && visible(picture),
    pictureText: picture ? picture.textContent : null,
    pictureImage: !!picture && [...picture.querySelectorAll('img')].some((i) => visible(i) && i.naturalWidth > 500),
    badge: (area.querySelector('.rldk-root .rldk-badge') || {}).textContent || null,
    alertAsText: area.innerText.includes('<b>reward</b> collapsed'),
    waiting: area.innerText.includes('Loading widget') || area.innerText.includes('model not found'),
  };
}"""


def save_widget_state(server: lab.LabServer, on: bool) -> None:
    setting = server.settings_dir / "@jupyter-widgets" / "jupyterlab-manager" / "plugin.jupyterlab-settings"
    setting.parent.mkdir(parents=True, exist_ok=True)
    setting.write_text(json.dumps({"saveState": on}))


def shutdown_kernels(server: lab.LabServer) -> None:
    for kind in ("sessions", "kernels"):
        for item in server.api(f"/api/{kind}"):
            request = urllib.request.Request(f"{server.url}/api/{kind}/{item['id']}?token={server.token}",
                                             method="DELETE")
            urllib.request.urlopen(request, timeout=10).read()


def run_save_and_reopen(lab_page, name: str, extra: tuple[str, ...] = ()) -> dict:
    notebook = lab_page.write_notebook(name, [SETUP.format(folder=name.replace(".ipynb", "_runs")), FEED, *extra])
    lab_page.open(notebook)
    lab_page.run_all()
    lab_page.wait_until(lambda: lab_page.step(lab.NOTEBOOK_ROOT) == "199", 30, "the live view at step 199")
    live = lab_page.page.evaluate(OUTPUT_JS)
    assert live["roots"] == 1 and not live["pictureVisible"], "the picture must hide under a live view: " + str(live)
    lab.save_notebook(lab_page.page)
    shutdown_kernels(lab_page.server)
    lab_page.page.reload(wait_until="domcontentloaded")
    lab.wait_for_lab(lab_page.page)
    if not lab_page.page.query_selector(".jp-NotebookPanel"):
        lab_page.open(notebook)
    lab_page.page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell .jp-OutputArea-child", timeout=60_000)
    return notebook


def test_with_widget_state_saved_the_reopened_notebook_renders_the_dashboard(lab_page, tmp_path):
    save_widget_state(lab_page.server, True)
    try:
        notebook = run_save_and_reopen(lab_page, "reopen_state.ipynb", (SAMPLES,))
        saved = json.loads((lab_page.server.root_dir / notebook).read_text())
        assert saved["metadata"].get("widgets"), "JupyterLab saved no widget state"
        state = lab_page.wait_until(
            lambda: (s := lab_page.page.evaluate(OUTPUT_JS)) and s["charts"] >= 3 and s, 60,
            "the dashboard rendered from the saved state",
        )
        assert lab_page.step(lab.NOTEBOOK_ROOT) == "199"
        assert state["badge"] == "(1)" and state["alertAsText"] and not state["pictureVisible"], state
        lab_page.page.locator(lab.NOTEBOOK_ROOT).first.screenshot(path=str(tmp_path / "reopened_with_state.png"))
        # no kernel answers: after a moment the Samples tab shows the saved pages, and says so
        lab.show_tab(lab_page.page, lab.NOTEBOOK_ROOT, "samples")
        panel = f"{lab.NOTEBOOK_ROOT} .rldk-samples"
        saved_page = lab_page.wait_until(lambda: lab_page.page.evaluate(
            "(sel) => { const p = document.querySelector(sel); const b = p.querySelector('.rldk-samples-body');"
            " const n = p.querySelector('.rldk-samples-note');"
            " return b.dataset.state === 'ready' && {step: b.dataset.step, note: n.textContent,"
            " rows: [...p.querySelectorAll('tr.rldk-sample-row')].map((r) => r.children[1].textContent),"
            " imgs: p.querySelectorAll('img').length}; }", panel), 20, "the saved samples without a kernel")
        assert saved_page["step"] == "199" and "only the newest 2 steps are saved" in saved_page["note"], saved_page
        assert saved_page["rows"] == ["4", '<img src=x onerror="window.__pwned=1">'] and saved_page["imgs"] == 0
        lab.settle_injected_handlers(lab_page.page, lab.ROOT)
        assert lab_page.page.evaluate("() => window.__pwned") is None
    finally:
        save_widget_state(lab_page.server, False)


def test_without_widget_state_the_reopened_notebook_shows_the_picture(lab_page, tmp_path):
    save_widget_state(lab_page.server, False)
    notebook = run_save_and_reopen(lab_page, "reopen_default.ipynb")
    saved = json.loads((lab_page.server.root_dir / notebook).read_text())
    assert not saved["metadata"].get("widgets"), "JupyterLab's default saves no widget state"
    state = lab_page.wait_until(
        lambda: (s := lab_page.page.evaluate(OUTPUT_JS)) and s["pictureImage"] and s, 60, "the picture to show"
    )
    # the widget's own line says "Loading widget..." (then, in time, "model not found"); the picture is below it
    assert state["waiting"] and state["roots"] == 0, state
    assert "step 199" in state["text"] and state["alertAsText"], state
    lab_page.page.locator(".jp-NotebookPanel .jp-CodeCell .jp-OutputArea").first.screenshot(
        path=str(tmp_path / "reopened_default.png")
    )


def test_replacing_the_picture_leaves_the_live_view_alone(lab_page):
    notebook = lab_page.write_notebook("live_alone.ipynb", [SETUP.format(folder="live_alone_runs"), FEED])
    lab_page.open(notebook)
    lab.run_cell(lab_page.page, 0)
    lab.wait_for_cells_done(lab_page.page, count=1)
    page = lab_page.page
    page.wait_for_selector(f"{lab.NOTEBOOK_ROOT} .rldk-header")
    page.evaluate(f"() => {{ document.querySelector('{lab.NOTEBOOK_ROOT}').__rldkMark = 'first view'; }}")
    lab.run_cell(page, 1)
    lab_page.wait_until(lambda: lab_page.step(lab.NOTEBOOK_ROOT) == "199", 30, "the live view at step 199")
    state = lab_page.wait_until(
        lambda: (s := page.evaluate(OUTPUT_JS)) and "step 199" in (s["pictureText"] or "") and s, 30,
        "the picture under the view to be replaced by the final state",
    )
    assert state["roots"] == 1 and not state["pictureVisible"]
    assert page.evaluate(f"() => document.querySelector('{lab.NOTEBOOK_ROOT}').__rldkMark") == "first view", (
        "the live view was re-created when the picture was replaced"
    )
    lab_page.assert_no_console_errors()
