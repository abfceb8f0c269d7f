"""The example notebooks in a real JupyterLab 4 and Notebook 7 (Debian chromium): they run top to bottom in the
page, the charts gain points while the cells still run, a sidebar view equals the inline one, a reloaded tab
re-renders the current state, and closing the dashboard stops its refresh thread."""

from __future__ import annotations

import shutil

import pytest

import lab

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

NOTEBOOKS = lab.REPO / "notebooks"
REFRESH_THREADS = "sum(t.name == 'rldk-auto-refresh' and t.is_alive() for t in threading.enumerate())"


def copy_notebook(server: lab.LabServer, name: str) -> str:
    shutil.copy(NOTEBOOKS / name, server.root_dir / name)
    return name


def steps_while_running(page, selector: str, timeout: float) -> list[str]:
    """Sample the first view's step tile until every cell has run; return the distinct values seen. A cell error
    fails at once with the cell's traceback."""
    seen: list[str] = []

    def finished() -> bool:
        step = lab.current_step(page, selector)
        if step and (not seen or seen[-1] != step):
            seen.append(step)
        state = lab.cells_state(page)
        if state and state["errors"]:
            raise AssertionError("a notebook cell raised:\n" + "\n\n".join(state["errors"]))
        return bool(state) and state["status"] == "idle" and all(c is not None for c in state["counts"])

    lab.wait_until(finished, timeout, "every cell of the notebook to run", interval=0.05)
    return seen


def kernel_value(page, expression: str) -> str:
    """Evaluate `expression` in the notebook's kernel (as a user expression) and return its repr."""
    return page.evaluate(
        """async (expression) => {
          const w = window.jupyterapp.shell.currentWidget;
          const future = w.sessionContext.session.kernel.requestExecute(
            {code: '', user_expressions: {v: expression}, store_history: false});
          const reply = await future.done;
          return reply.content.user_expressions.v.data['text/plain'];
        }""",
        expression,
    )


def test_quickstart_in_jupyterlab(lab_page):
    lp = lab_page
    notebook = copy_notebook(lp.server, "quickstart.ipynb")
    lp.open(notebook)
    lp.run_all(wait=False)
    seen = steps_while_running(lp.page, lab.NOTEBOOK_ROOT, 240)
    # the manual-updates view counted up while its cell ran, not only at the end
    assert any(step not in ("", "—", "201") for step in seen[:-1]) and len(seen) >= 3, seen

    roots = lp.page.locator(lab.NOTEBOOK_ROOT)
    assert roots.count() == 3
    first = lp.view(lab.NOTEBOOK_ROOT)  # the manual-updates dashboard: 201 steps, one alert
    assert first["step"] == "201" and first["badge"] == "(1)", first

    # closing a dashboard stops its auto-refresh thread
    lab.execute_code(lp.page, "import threading; folder_dash.enable_auto_refresh(0.2)")
    assert kernel_value(lp.page, REFRESH_THREADS) == "1"
    lab.execute_code(lp.page, "folder_dash.close()")
    assert kernel_value(lp.page, REFRESH_THREADS) == "0"
    lp.assert_no_console_errors()


def test_grpo_live_in_jupyterlab_with_sidebar_and_reload(lab_page):
    lp = lab_page
    notebook = copy_notebook(lp.server, "grpo_live.ipynb")
    lp.open(notebook)
    lp.run_all(wait=False)
    seen = steps_while_running(lp.page, lab.NOTEBOOK_ROOT, 360)
    numeric = [int(step) for step in seen if step.isdigit()]
    # the chart followed training: several intermediate steps arrived before the last cell finished
    assert len(set(numeric)) >= 3 and numeric == sorted(numeric), seen
    final = numeric[-1]

    lab.execute_code(lp.page, "dash.show(sidebar=True)")
    lp.wait_until(lambda: lab.current_step(lp.page, lab.SIDEBAR_ROOT) == str(final), 30, "the sidebar view")
    inline = lp.view(lab.NOTEBOOK_ROOT)
    expected = {c["title"]: c["points"] for c in inline["charts"]}
    assert expected and all(c["lastX"] == final for c in inline["charts"]), inline["charts"]
    # a new view draws its charts over a few frames
    lp.wait_until(lambda: chart_points(lp, lab.SIDEBAR_ROOT) == expected, 30, "the sidebar charts to equal the inline ones")
    assert lp.view(lab.SIDEBAR_ROOT)["header"] == inline["header"]

    # the Samples tab shows the completions the callback recorded with the trainer (dash.callback(trainer=trainer))
    lab.show_tab(lp.page, lab.NOTEBOOK_ROOT, "samples")
    lp.wait_until(lambda: lp.page.evaluate(
        "(sel) => { const b = document.querySelector(sel + ' .rldk-samples-body'); return b && b.dataset.state === 'ready'"
        " && b.dataset.step === String(%d) && b.querySelectorAll('tr.rldk-sample-row').length === 4; }" % final,
        lab.NOTEBOOK_ROOT), 30, "the last step's samples in the Samples tab")
    lab.show_tab(lp.page, lab.NOTEBOOK_ROOT, "charts")

    lab.save_notebook(lp.page)  # the reloaded page restores the saved outputs, whose views reconnect to the kernel
    lp.page.reload(wait_until="domcontentloaded")
    lab.wait_for_lab(lp.page)
    lp.wait_until(lambda: chart_points(lp, lab.NOTEBOOK_ROOT) == expected, 60, "the reloaded view to show every point")
    lp.assert_no_console_errors()


def chart_points(lp, selector: str) -> dict[str, int] | None:
    state = lp.view(selector)
    return {c["title"]: c["points"] for c in state["charts"]} if state else None


def test_quickstart_in_notebook_7(chromium_browser, tmp_path):
    with lab.LabServer(tmp_path / "nb7", app="notebook") as server:
        context, page, console = lab.new_page(chromium_browser)
        try:
            notebook = copy_notebook(server, "quickstart.ipynb")
            lab.open_notebook(page, server, notebook)
            # Notebook 7.6 itself logs "Cannot read properties of undefined (reading 'schema')" while it starts
            # (also with no widget in the notebook); only errors after this point are ours
            console.errors.clear()
            lab.run_all_cells(page)
            lab.wait_for_cells_done(page, 240)
            lab.wait_until(lambda: lab.current_step(page, lab.NOTEBOOK_ROOT) == "201", 30, "the first view")
            assert page.locator(lab.NOTEBOOK_ROOT).count() == 3
            assert console.errors == [], console.errors
        finally:
            context.close()
