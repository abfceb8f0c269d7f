"""RLDKDashboard in a real JupyterLab (Debian chromium): live streaming into an inline and a sidebar view, alert
text shown literally (no HTML injection), no console errors, and a page reload re-rendering the full state."""

from __future__ import annotations

import shutil
import time

import pytest

import lab

if shutil.which("chromium") is None:
    pytest.skip("Debian chromium is not installed (make chromium)", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

XSS_PAYLOAD = '<img src=x onerror="window.__xss=1">spike'
INLINE = lab.NOTEBOOK_ROOT
SIDEBAR = lab.SIDEBAR_ROOT


def create_cell(output_dir: str) -> str:
    return (
        "import math, time\n"
        "from rldk_widget import AlertRules, RLDKDashboard\n"
        "from rldk_widget.alerts import RULE_TYPES\n"
        "# the oscillating test reward would raise computed alerts (health.py): these tests count the one they add\n"
        f"dash = RLDKDashboard(output_dir={output_dir!r}, run_id='lab_test', auto_refresh=False,\n"
        "                     alert_rules=AlertRules(disabled=set(RULE_TYPES)))\n"
        "dash"
    )


RECORD = (
    "{'step': step, 'reward_mean': math.sin(step / 9) + step / 80, 'reward_std': 0.2 + 0.1 * math.cos(step / 7), "
    "'kl_mean': 0.002 * step + 0.01 * math.sin(step), 'loss': 1 / (step + 1) + 0.05 * math.sin(step / 3), "
    "'entropy_mean': 2 - step / 400}"
)
STREAM_CELL = (
    "for step in range(200):\n"
    f"    dash.add_metrics({RECORD})\n"
    "    time.sleep(0.005)\n"
    f"dash.add_alert({{'type': 'reward_spike', 'message': {XSS_PAYLOAD!r}, 'step': 150, 'severity': 'critical'}})\n"
    "dash.flush()"
)
BATCH_CELL = (
    f"dash.add_metrics([{RECORD} for step in range(200)])\n"
    f"dash.add_alert({{'type': 'reward_spike', 'message': {XSS_PAYLOAD!r}, 'step': 150, 'severity': 'critical'}})\n"
    "dash.flush()"
)

SAMPLE_JS = """(sel) => {
  const root = document.querySelector(sel);
  if (!root) return null;
  const step = (%s)(root);
  const box = [...root.querySelectorAll('.rldk-chart')].find(
    (b) => b.querySelector('.rldk-chart-title') && b.querySelector('.rldk-chart-title').textContent === 'reward_mean');
  const plot = box && box.querySelector('.rldk-plot');
  const line = plot && plot.data ? plot.data.find((t) => !(t.line && t.line.width === 0) && t.x) : null;
  return {step, points: line ? line.x.length : 0};
}""" % lab.STEP_FN


def chart(state: dict, title: str) -> dict:
    found = [c for c in state["charts"] if c["title"] == title]
    assert found, f"no {title!r} chart in the view; charts: {[c['title'] for c in state['charts']]}"
    return found[0]


def assert_full_view(lp, selector: str, where: str, last_step: int = 199, points: int = 200) -> None:
    """The view shows the whole run: header step, every default chart complete, one alert, shown literally."""
    lp.wait_until(lambda: lp.step(selector) == str(last_step), 20, f"the {where} view to show step {last_step}")

    def charts_complete():
        state = lp.view(selector)
        return state if all(c["points"] == points and c["lastX"] == last_step for c in state["charts"][:3]) else None

    state = lp.wait_until(charts_complete, 20, f"the {where} view's charts to hold {points} points")
    for title in ("reward_mean", "kl_mean", "loss"):
        c = chart(state, title)
        assert c["points"] == points and c["lastX"] == last_step, f"{where} {title}: {c}"
        assert c["width"] > 100 and c["height"] > 80, f"{where} {title} chart is tiny: {c}"
        assert c["vertices"] and max(c["vertices"]) >= 2, f"{where} {title}: no line drawn in the SVG: {c}"
    assert_charts_fit(lp, selector, where)
    # the noisy reward line keeps many vertices after plotly's line simplification
    assert max(chart(state, "reward_mean")["vertices"]) >= 40, f"{where} reward_mean SVG path: {state['charts'][0]}"
    assert state["badge"] == "(1)", f"{where} alert badge: {state['badge']!r}"

    lab.show_tab(lp.page, selector, "alerts")
    msgs = lp.wait_until(lambda: lp.view(selector)["alertMsgs"], 10, f"the {where} alert list")
    assert msgs == [XSS_PAYLOAD], f"{where} alert text: {msgs!r}"
    state = lp.view(selector)
    assert "&lt;img" in state["alertHTML"][0], f"{where} alert HTML: {state['alertHTML']!r}"
    assert state["imgs"] == 0, f"{where}: an <img> element was created from data"
    lab.show_tab(lp.page, selector, "charts")


def assert_charts_fit(lp, selector: str, where: str) -> None:
    """Every chart's SVG fills its box (no overflow into the neighbouring chart, no empty strip)."""

    def charts_fit():
        charts = lp.view(selector)["charts"]
        bad = [c for c in charts if c["svgWidth"] is None or abs(c["svgWidth"] - c["width"]) > 2
               or abs(c["svgHeight"] - c["height"]) > 2]
        return charts if charts and not bad else None

    try:
        lp.wait_until(charts_fit, 5, f"the {where} charts to fit their boxes")
    except TimeoutError:
        sizes = [(c["title"], f"svg {c['svgWidth']}x{c['svgHeight']}", f"box {c['width']}x{c['height']}")
                 for c in lp.view(selector)["charts"]]
        raise AssertionError(f"{where}: the plotly SVG size differs from its .rldk-plot box: {sizes}") from None


def assert_no_xss(lp) -> None:
    lab.settle_injected_handlers(lp.page, lab.ROOT)  # an injected <img src=x> fires onerror once its request fails
    assert lp.page.evaluate("() => typeof window.__xss") == "undefined", "the alert message was rendered as HTML"


def test_streaming_inline_and_sidebar(lab_page):
    lp = lab_page
    out = str(lp.server.base / "runs_stream")
    nb = lp.write_notebook("stream", [create_cell(out), "dash.show(sidebar=True)", STREAM_CELL])
    lp.open(nb)

    # create both views first: the first view of a page loads the ~1 MB bundle, which takes longer than the
    # 200 adds, and this test is about views receiving the points while they stream
    started = time.monotonic()
    lab.run_cell(lp.page, 0)
    lab.run_cell(lp.page, 1)
    for selector, where in ((INLINE, "inline"), (SIDEBAR, "sidebar")):
        lp.page.wait_for_selector(f"{selector} .rldk-header", timeout=30_000)
    first_view_s = time.monotonic() - started
    lab.wait_for_cells_done(lp.page, 30, count=2)
    print(f"cells 1-2 run and both views rendered in {first_view_s:.1f} s")

    lab.run_cell(lp.page, 2)
    samples: list[dict] = []

    def streamed():
        sample = lp.page.evaluate(SAMPLE_JS, INLINE)
        if sample is not None:
            samples.append(sample)
        return sample is not None and sample["step"] == "199" and sample["points"] == 200

    lp.wait_until(streamed, 60, "the inline view to reach step 199", interval=0.02)
    state = lab.wait_for_cells_done(lp.page, 60)
    assert state["counts"] == [1, 2, 3], state

    # it streamed: the view showed intermediate steps and a growing chart before the last point arrived
    print(f"{len(samples)} samples while streaming: {samples[::max(1, len(samples) // 15)]}")
    steps = [s["step"] for s in samples if s["step"] not in (None, "–")]
    points = [s["points"] for s in samples]
    intermediate = {s for s in steps if s != "199"}
    assert len(intermediate) >= 2, f"the view did not update while the cell streamed: {samples[:50]}"
    assert len({p for p in points if 0 < p < 200}) >= 2, f"the chart did not grow while streaming: {points}"
    assert points == sorted(points), f"the chart's point count went down while streaming: {points}"

    assert_full_view(lp, INLINE, "inline")
    assert lp.page.locator("#jp-right-stack .jupyterlab-sidecar").is_visible(), "the sidecar panel is not shown"
    assert_full_view(lp, SIDEBAR, "sidebar")
    assert_no_xss(lp)
    lp.assert_no_console_errors()


def test_a_failing_cell_fails_the_wait_at_once_with_its_error(lab_page):
    """lab.wait_for_cells_done raises the cell's error as an AssertionError as soon as the output shows it, not a
    TimeoutError when the deadline (here 90 s) has passed."""
    lp = lab_page
    nb = lp.write_notebook("failing", ["x = 1", "raise ValueError('the cell failed: 4711')", "y = 2"])
    lp.open(nb)
    lab.run_all_cells(lp.page)
    with pytest.raises(AssertionError, match="ValueError: the cell failed: 4711"):
        lab.wait_for_cells_done(lp.page, 90)


def test_reload_restores_views_from_the_kernel(lab_page):
    lp = lab_page
    out = str(lp.server.base / "runs_reload")
    nb = lp.write_notebook("reload", [create_cell(out), BATCH_CELL, "dash.show(sidebar=True)"])
    lp.open(nb)
    lp.run_all()
    assert_full_view(lp, INLINE, "inline (before reload)")
    lp.save_and_reload(nb)
    lab.wait_for_kernel_idle(lp.page)
    lp.page.wait_for_selector(INLINE, timeout=30_000)
    assert_full_view(lp, INLINE, "inline (after reload)")
    # the Sidecar model is restored from the kernel too, and re-opens its panel with a full view
    lp.page.wait_for_selector(SIDEBAR, timeout=30_000)
    assert_full_view(lp, SIDEBAR, "sidebar (after reload)")

    # the restored views keep following the kernel: new deltas continue after the snapshot's seq
    lab.execute_code(lp.page, f"dash.add_metrics([{RECORD} for step in range(200, 250)])\ndash.flush()")
    for selector, where in ((INLINE, "inline"), (SIDEBAR, "sidebar")):
        lp.wait_until(lambda: lp.step(selector) == "249", 20, f"the restored {where} view to show step 249")
        lp.wait_until(
            lambda: lp.page.evaluate(SAMPLE_JS, selector)["points"] == 250, 20, f"the restored {where} chart to grow"
        )
    assert_no_xss(lp)
    lp.assert_no_console_errors()


COLORS_JS = """(sel) => {
  const root = document.querySelector(sel);
  const lum = (css) => {
    const m = css.match(/[\\d.]+/g).map(Number);
    const [r, g, b] = m.slice(0, 3).map((v) => v / 255);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const bgOf = (node) => {
    for (let n = node; n; n = n.parentElement) {
      const c = getComputedStyle(n).backgroundColor;
      if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c;
    }
    return getComputedStyle(document.body).backgroundColor;
  };
  const tick = root.querySelector('.rldk-plot svg .xtick text');
  const value = root.querySelector('.rldk-tile-val');
  return {
    bg: lum(bgOf(root)),
    tick: tick ? lum(tick.style.fill || getComputedStyle(tick).fill) : null,
    value: value ? lum(getComputedStyle(value).color) : null,
    valueBg: value ? lum(bgOf(value)) : null,
  };
}"""


def test_charts_follow_layout_and_theme_changes(lab_page):
    """Chart SVGs track their boxes when the notebook gets wider or narrower, and text stays readable in the
    dark theme."""
    lp = lab_page
    out = str(lp.server.base / "runs_layout")
    nb = lp.write_notebook("layout", [create_cell(out), BATCH_CELL])
    lp.open(nb)
    lp.run_all()
    lp.wait_until(lambda: lp.step(INLINE) == "199", 20, "the inline view to show step 199")
    assert_charts_fit(lp, INLINE, "inline")

    # wider: close the file browser; narrower: a smaller window (the grid's column count changes in between)
    lp.page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    assert_charts_fit(lp, INLINE, "inline, file browser closed")
    lp.page.set_viewport_size({"width": 1100, "height": 1000})
    assert_charts_fit(lp, INLINE, "inline, 1100 px window")
    lp.page.set_viewport_size(lab.VIEWPORT)
    assert_charts_fit(lp, INLINE, "inline, back to 1600 px")

    light = lp.page.evaluate(COLORS_JS, INLINE)
    lp.set_theme("JupyterLab Dark")
    lp.wait_until(
        lambda: lp.page.evaluate(COLORS_JS, INLINE)["tick"] > 0.4, 5, "the chart tick labels to turn light"
    )
    dark = lp.page.evaluate(COLORS_JS, INLINE)
    assert light["bg"] > 0.6 and light["tick"] < 0.5 and light["value"] < 0.4, f"light theme colours: {light}"
    assert dark["bg"] < 0.3, f"dark theme background: {dark}"
    assert dark["value"] - dark["valueBg"] > 0.4, f"dark theme: header values are hard to read: {dark}"
    assert dark["tick"] - dark["bg"] > 0.3, f"dark theme: chart tick labels are hard to read: {dark}"
    assert_charts_fit(lp, INLINE, "inline, dark theme")
    lp.set_theme("JupyterLab Light")
    lp.assert_no_console_errors()
