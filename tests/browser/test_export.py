"""`RLDKDashboard.save_html`: the file renders the charts and alerts in Chromium with every network request
refused (no kernel, no CDN), alert text stays literal, and the page size is bounded for long runs. A sweep's file
has its Runs tab (sorting and filtering in the page, hostile names and values as text); a sweep larger than the
synced table says how many of its runs the file holds."""

from __future__ import annotations

import math

import pytest

import lab
import sweeps
from rldk_widget import AlertRules, RLDKDashboard, dashboard
from rldk_widget.alerts import RULE_TYPES
from test_runs_tab import PANEL_JS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

XSS_MESSAGE = '</script><img src=x onerror="window.__xss=1">spike'


@pytest.fixture()
def offline_page(chromium_browser):
    context, page, console = lab.new_page(chromium_browser)
    requests: list[str] = []

    def refuse_network(route) -> None:
        requests.append(route.request.url)
        route.abort()

    context.route("http://**/*", refuse_network)
    context.route("https://**/*", refuse_network)
    yield page, console, requests
    context.close()


def build_dashboard(dashboards, tmp_path, steps: int) -> RLDKDashboard:
    # the oscillating reward would raise computed alerts (health.py): this file is about the data and one alert
    dash = dashboards(output_dir=tmp_path / "runs", run_id="export_run", alert_rules=AlertRules(disabled=set(RULE_TYPES)))
    dash.add_metrics(
        [
            {
                "step": step,
                "reward_mean": math.sin(step / 10),
                "kl_mean": step / 1000,
                "loss": float("nan") if step == 50 else 1 / (step + 1),
            }
            for step in range(steps)
        ]
    )
    dash.add_alert({"type": "kl_spike", "message": XSS_MESSAGE, "step": 3, "severity": "critical"})
    return dash


def test_saved_html_renders_offline(tmp_path, offline_page, dashboards):
    page, console, requests = offline_page
    dash = build_dashboard(dashboards, tmp_path, 300)
    path = dash.save_html(tmp_path / "report" / "dashboard.html")
    dash.close()

    page.goto(path.as_uri())
    lab.wait_until(lambda: lab.current_step(page, ".rldk-root") == "299", 20, "the exported page to show step 299")
    def drawn():  # charts are drawn over several frames (a frame budget each): wait for them
        charted = {chart["title"]: chart["points"] for chart in lab.view_state(page, ".rldk-root")["charts"]}
        return charted if charted.get("reward_mean") == 300 and charted.get("kl_mean") == 300 else None

    lab.wait_until(drawn, 20, "every chart of the exported page drawn")
    assert page.locator(".rldk-root .js-plotly-plot .scatterlayer path").count() > 0

    lab.show_tab(page, ".rldk-root", "alerts")
    state = lab.view_state(page, ".rldk-root")
    assert state["alertMsgs"] == [XSS_MESSAGE] and state["imgs"] == 0, state
    lab.settle_injected_handlers(page)
    assert page.evaluate("() => window.__xss") is None
    assert requests == [], f"the exported page tried the network: {requests}"
    assert console.errors == [], console.errors


def test_saved_html_is_bounded_for_long_runs(tmp_path, dashboards):
    short = build_dashboard(dashboards, tmp_path / "short", 1_000)
    long = build_dashboard(dashboards, tmp_path / "long", 200_000)
    short_size = short.save_html(tmp_path / "short.html", max_points=20_000).stat().st_size
    long_size = long.save_html(tmp_path / "long.html", max_points=20_000).stat().st_size
    # the data share of the long run is capped at ~20k points (≈ 21 bytes each as base64 float64 x and y)
    assert long_size - short_size < 20_000 * 24, (short_size, long_size)


def test_save_html_rejects_a_bad_budget(tmp_path, dashboards):
    dash = build_dashboard(dashboards, tmp_path, 10)
    with pytest.raises(ValueError, match="max_points"):
        dash.save_html(tmp_path / "x.html", max_points=0)


def test_a_saved_sweep_has_its_runs_tab(tmp_path, offline_page):
    page, console, requests = offline_page
    sweeps.write_sweep(tmp_path / "sweep", 40, hostile=True)
    dash = RLDKDashboard.from_dir(tmp_path / "sweep", auto_refresh=False)
    shown = ["ours_000", "ours_002", "ours_004"]
    dash.select(shown)
    path = dash.save_html(tmp_path / "sweep.html")
    dash.close()

    page.goto(path.as_uri())
    lab.show_tab(page, ".rldk-root", "runs")
    state = lab.wait_until(lambda: (s := page.evaluate(PANEL_JS, ".rldk-root")) and s["rows"] and s, 20,
                           "the saved runs table")
    assert state["count"] == "41 runs · 3 on the charts", state["count"]
    assert state["selected"] == shown, state["selected"]
    page.locator(".rldk-root .rldk-runs-filter").fill("onerror evil")  # the hostile folder's name, as text
    state = lab.wait_until(lambda: (s := page.evaluate(PANEL_JS, ".rldk-root")) and s["count"].startswith("1 of") and s,
                           10, "the filtered saved table")
    assert state["shownNames"] == [sweeps.HOSTILE_NAME] and state["imgs"] == 0, state["shownNames"]
    lab.settle_injected_handlers(page)
    assert page.evaluate("() => window.__pwned") is None
    assert requests == [], f"the exported page tried the network: {requests}"
    assert console.errors == [], console.errors


def test_a_saved_sweep_larger_than_the_synced_table_says_what_it_holds(tmp_path, monkeypatch):
    sweeps.write_sweep(tmp_path / "sweep", 8, hostile=False)
    monkeypatch.setattr(dashboard, "RUNS_TABLE_ROWS", 5)
    dash = RLDKDashboard.from_dir(tmp_path / "sweep", auto_refresh=False)
    text = dash.save_html(tmp_path / "sweep.html").read_text(encoding="utf-8")
    dash.close()
    assert "its runs table holds the first 5 of 8 runs" in text
