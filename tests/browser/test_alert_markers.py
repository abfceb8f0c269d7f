"""Alerts where users look (issue 16 §4), in a real JupyterLab: a run trained without our callback gets a computed
critical alert; the header banner shows it without a click, a marker sits on its metric's chart at its step,
clicking the marker or the banner moves the charts to that step, dismissing hides the banner, and alert text is
shown literally."""

from __future__ import annotations

import json
import math
import shutil

import pytest

import lab

if shutil.which("chromium") is None:
    pytest.skip("Debian chromium is not installed (make chromium)", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

ROOT = lab.NOTEBOOK_ROOT
XSS = '<img src=x onerror="window.__pwned=1">critical text'


def trainer_state(folder, steps: int = 300) -> None:
    history = []
    for step in range(1, steps + 1):
        history.append({
            "step": step, "loss": 0.05 + 0.01 * math.sin(step / 7), "reward": 0.3 + 0.002 * step,
            "reward_std": 0.2, "kl": 0.02 + 0.0002 * step, "grad_norm": math.nan if step == 150 else 0.5,
            "frac_reward_zero_std": 0.1, "completions/mean_length": 40.0 + step / 10, "learning_rate": 1e-5,
        })
    (folder / "trainer_state.json").write_text(json.dumps({"max_steps": 400, "log_history": history}))


BANNER_JS = """(sel) => {
  const b = document.querySelector(sel + ' .rldk-banner');
  if (!b) return null;
  return {hidden: b.hidden, cls: b.className, sev: b.querySelector('.rldk-sev').textContent,
          msg: b.querySelector('.rldk-banner-msg').textContent, html: b.querySelector('.rldk-banner-msg').innerHTML,
          step: b.querySelector('.rldk-banner-step').textContent, imgs: b.querySelectorAll('img').length};
}"""

MARKERS_JS = """([sel, title]) => {
  const box = [...document.querySelectorAll(sel + ' .rldk-chart')].find(
    (b) => b.querySelector('.rldk-chart-title').textContent === title);
  const plot = box && box.querySelector('.rldk-plot');
  if (!plot || !plot.data) return null;
  const markers = plot.data.filter((t) => t.meta === 'rldk-alert');
  const range = plot.layout && plot.layout.xaxis && plot.layout.xaxis.range;
  return {markers: markers.map((t) => ({x: Array.from(t.x), text: t.text})), range: range ? Array.from(range) : null};
}"""


def markers(lp, title):
    return lp.page.evaluate(MARKERS_JS, [ROOT, title])


def test_banner_markers_and_clicks_move_the_charts(lab_page, tmp_path, request):
    folder = tmp_path / "grpo-output"
    folder.mkdir()
    trainer_state(folder)
    notebook = lab_page.write_notebook(
        "alerts.ipynb",
        [
            "from rldk_widget import RLDKDashboard\n"
            f"dash = RLDKDashboard.from_dir({str(folder)!r}, auto_refresh=False)\n"
            "dash",
        ],
    )
    lab_page.open(notebook)
    lab_page.run_all()
    page = lab_page.page
    banner = lab_page.wait_until(
        lambda: (b := page.evaluate(BANNER_JS, ROOT)) and not b["hidden"] and b, 30, "the banner to show"
    )
    assert banner["sev"] == "critical" and "grad norm is NaN" in banner["msg"] and banner["step"] == "step 150"
    assert "rldk-banner-critical" in banner["cls"]

    state = lab_page.wait_until(lambda: (m := markers(lab_page, "grad_norm")) and m["markers"] and m, 30,
                                "a marker on the grad_norm chart")
    (trace,) = state["markers"]
    assert trace["x"] == [150]
    assert "value NaN" in trace["text"][0] and "computed by the viewer" in trace["text"][0]
    assert state["range"] is None or state["range"][1] - state["range"][0] > 250  # the whole run, not focused
    for theme in ("JupyterLab Dark", "JupyterLab Light"):  # looked at: tmp_path/<theme>_alert_markers.png
        lab_page.set_theme(theme)
        page.wait_for_timeout(800)
        page.locator(ROOT).first.screenshot(path=str(tmp_path / f"{theme.split()[-1].lower()}_alert_markers.png"))

    # a real click on the marker moves the charts to its step
    point = page.locator(
        f"{ROOT} .rldk-chart:has(.rldk-chart-title:text-is('grad_norm')) .scatterlayer .trace:last-child .point"
    ).first
    point.click(force=True)
    focused = lab_page.wait_until(
        lambda: (m := markers(lab_page, "loss")) and m["range"] and m["range"][1] - m["range"][0] < 100 and m, 20,
        "the charts to move to the alert's step",
    )
    low, high = focused["range"]
    assert low < 150 < high
    assert page.locator(f"{ROOT} .rldk-focus").inner_text().startswith("step 150")
    page.locator(f"{ROOT} .rldk-focus").click()
    lab_page.wait_until(lambda: (m := markers(lab_page, "loss")) and (m["range"] is None or m["range"][1] - m["range"][0] > 250),
                        20, "every step shown again")

    # a newer alert replaces the banner's; its text is shown literally; the banner click focuses it too
    lab.execute_code(page, f"dash.add_alert({{'type': 'custom', 'message': {XSS!r}, 'step': 42, 'severity': 'critical'}})")
    newer = lab_page.wait_until(
        lambda: (b := page.evaluate(BANNER_JS, ROOT)) and b["step"] == "step 42" and b, 20, "the newer alert's banner"
    )
    assert newer["msg"] == XSS and newer["imgs"] == 0 and "&lt;img" in newer["html"]
    assert "+1 more" in page.locator(f"{ROOT} .rldk-banner-others").inner_text()
    page.locator(f"{ROOT} .rldk-banner-msg").click()
    lab_page.wait_until(lambda: (m := markers(lab_page, "loss")) and m["range"] and m["range"][0] < 42 < m["range"][1],
                        20, "the charts to move to step 42")
    page.locator(f"{ROOT} .rldk-banner-close").click()
    lab_page.wait_until(lambda: page.evaluate(BANNER_JS, ROOT)["hidden"], 10, "the dismissed banner to hide")
    assert page.evaluate("() => window.__pwned") is None

    lab_page.assert_no_console_errors()
