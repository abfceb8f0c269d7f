"""Browser tests of the built front end (rldk_widget/static/widget.js) in a fake anywidget host.

harness.html + harness.js fake the model (get/set/on/off/send/save_changes, msg:custom, anywidget's
per-call model proxies) and load the bundle with import(). The page is served by a local http.server on
127.0.0.1 and driven by Playwright with Debian's chromium. Skips only when chromium (or playwright) is missing.

Screenshots land in tests/browser_harness/out/ (light, dark, alerts, narrow sidebar, ...). How fast the bundle
renders and applies deltas is measured by benchmarks/browser.py, not asserted here.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUNDLE = ROOT / "rldk_widget" / "static" / "widget.js"
OUT = HERE / "out"

sys.path.insert(0, str(HERE.parent / "browser"))
from lab import CHROMIUM_ARGS, hover_data_point, settle_injected_handlers  # noqa: E402  (shared with tests/browser)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("chromium not installed", allow_module_level=True)

XSS = '<img src=x onerror="window.__xss=1">'

# JupyterLab 4 theme variables (the subset the widget reads), set on <body> like JupyterLab does
DARK_VARS = {
    "--jp-layout-color0": "#111111",
    "--jp-layout-color1": "#212121",
    "--jp-layout-color2": "#424242",
    "--jp-layout-color3": "#616161",
    "--jp-ui-font-color0": "rgba(255,255,255,1)",
    "--jp-ui-font-color1": "rgba(255,255,255,0.87)",
    "--jp-ui-font-color2": "rgba(255,255,255,0.54)",
    "--jp-ui-font-color3": "rgba(255,255,255,0.38)",
    "--jp-content-font-color1": "rgba(255,255,255,1)",
    "--jp-border-color1": "#616161",
    "--jp-border-color2": "#424242",
    "--jp-brand-color1": "#1976d2",
    "--jp-warn-color1": "#f57c00",
    "--jp-error-color1": "#d32f2f",
    "--jp-info-color1": "#0288d1",
    "--jp-success-color1": "#388e3c",
    "--jp-ui-font-family": "system-ui, -apple-system, 'Segoe UI', sans-serif",
}
LIGHT_VARS = {
    "--jp-layout-color0": "white",
    "--jp-layout-color1": "white",
    "--jp-layout-color2": "#eeeeee",
    "--jp-layout-color3": "#bdbdbd",
    "--jp-ui-font-color0": "rgba(0,0,0,1)",
    "--jp-ui-font-color1": "rgba(0,0,0,0.87)",
    "--jp-ui-font-color2": "rgba(0,0,0,0.54)",
    "--jp-ui-font-color3": "rgba(0,0,0,0.38)",
    "--jp-content-font-color1": "rgba(0,0,0,1)",
    "--jp-border-color1": "#bdbdbd",
    "--jp-border-color2": "#e0e0e0",
    "--jp-brand-color1": "#1976d2",
    "--jp-warn-color1": "#f57c00",
    "--jp-error-color1": "#d32f2f",
    "--jp-info-color1": "#0288d1",
    "--jp-success-color1": "#388e3c",
    "--jp-ui-font-family": "system-ui, -apple-system, 'Segoe UI', sans-serif",
}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401 - keep test output clean
        pass


@pytest.fixture(scope="module")
def server():
    if not BUNDLE.exists():
        pytest.fail(f"{BUNDLE} missing: run `npm run build` in js/")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(ROOT)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "favicon" not in m.text and "404" not in m.text else None)
    pg.goto(f"{server}/tests/browser_harness/harness.html")
    pg.wait_for_function("window.__harnessReady === true")
    pg.evaluate("() => H.loadWidget()")
    pg.errors = errors  # type: ignore[attr-defined]
    yield pg
    ctx.close()
    assert not errors, errors


def set_theme(page, variables: dict[str, str]) -> None:
    page.evaluate(
        """(vars) => { for (const [k, v] of Object.entries(vars)) document.body.style.setProperty(k, v);
                       document.body.dataset.jpThemeLight = String(vars['--jp-layout-color0'] !== '#111111'); }""",
        variables,
    )


def shot(page, name: str, selector: str | None = None) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.png"
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path


# --------------------------------------------------------------------------------------------------------
# setup helpers (run in the page)

SETUP_TWO_VIEWS = """async ({steps, extra}) => {
  const {state, lengths} = H.makeState({steps, extra, nanEvery: 0});
  window.lengths = lengths;
  window.model = await H.createModel(state);
  window.v1 = await H.renderView(model, document.getElementById('view1'));
  window.v2 = await H.renderView(model, document.getElementById('view2'));
  await H.settle([v1, v2]);
  return true;
}"""


def stream(page, count: int, n: int = 100, alerts: list | None = None) -> None:
    page.evaluate(
        """async ({count, n, alerts}) => {
          const store = v1.internals.store;
          for (let i = 0; i < count; i++) {
            const m = H.makeDelta(store.lastSeq + 1, lengths, n, 120000, i === count - 1 ? alerts : []);
            model.custom(m);
            await new Promise(r => setTimeout(r, 5));
          }
          await H.settle([v1, v2]);
          v1.internals.view.flushAll(); v2.internals.view.flushAll();
        }""",
        {"count": count, "n": n, "alerts": alerts or []},
    )


def summaries(page):
    return page.evaluate("() => [H.chartSummary(v1), H.chartSummary(v2)]")


# --------------------------------------------------------------------------------------------------------
# tests


def test_two_views_share_one_store_and_show_the_same_data(page):
    page.evaluate(SETUP_TWO_VIEWS, {"steps": 100_000, "extra": False})
    stream(page, 25)
    s1, s2 = summaries(page)
    assert set(s1) == {"reward_mean", "kl_mean", "loss", "entropy_mean", "grad_norm", "learning_rate"}
    assert s1 == s2 and s1, (s1, s2)
    same = page.evaluate("() => v1.internals.store === v2.internals.store && v1.internals.sync === null")
    assert same, "both views must read the store owned by initialize()"
    # 100k + 25 × 100 steps for run 0: the last point is exact and the trace is downsampled
    last_steps = page.evaluate("() => v1.internals.store.series('grpo-qwen-0.5b', 'loss').lastX")
    assert last_steps == 100_000 + 25 * 100 - 1
    for traces in s1.values():
        for n, _x0, _x1, _y in traces:
            assert 2 <= n <= 2100
    loss_raw_run0 = s1["loss"]
    assert any(x1 == last_steps for _n, _x0, x1, _y in loss_raw_run0)
    # header tiles agree
    h1, h2 = page.evaluate(
        "() => [v1.el.querySelector('.rldk-header').textContent, v2.el.querySelector('.rldk-header').textContent]"
    )
    assert h1 == h2 and "102,499" in h1


def test_alert_text_is_literal_and_never_executes(page):
    page.evaluate(SETUP_TWO_VIEWS, {"steps": 2_000, "extra": False})
    alert = {
        "run_id": "grpo-qwen-0.5b",
        "type": "reward_hacking",
        "message": f"{XSS}spike",
        "step": 2100,
        "severity": "critical",
        "timestamp": 1.7e9,
        "value": "NaN",
        "threshold": 0.5,
    }
    stream(page, 1, alerts=[alert])
    page.click("#view1 .rldk-tab[data-tab=alerts]")
    page.wait_for_selector("#view1 .rldk-alert-critical")
    msg = page.text_content("#view1 .rldk-alert-critical .rldk-alert-msg")
    assert msg == f"{XSS}spike"
    assert page.locator("#view1 .rldk-alertpanel img").count() == 0
    settle_injected_handlers(page)
    assert page.evaluate("() => window.__xss") is None
    badge = page.text_content("#view1 .rldk-tab[data-tab=alerts]")
    assert "(3)" in badge
    extra = page.text_content("#view1 .rldk-alert-critical .rldk-alert-extra")
    assert "value=NaN" in extra and "threshold=0.5" in extra
    # severity filter
    page.click("#view1 .rldk-chip[data-filter=info]")
    assert page.locator("#view1 .rldk-alert").count() == 1
    page.click("#view1 .rldk-chip[data-filter=all]")
    assert page.locator("#view1 .rldk-alert").count() == 3
    shot(page, "alerts", "#view1")


def test_html_in_run_ids_and_metric_names_stays_text(page):
    run = f"run{XSS}"
    metric = f"m{XSS}"
    page.evaluate(
        """async ({run, metric}) => {
          const x = new Float64Array([0, 1, 2, 3]), y = new Float64Array([1, 2, NaN, 4]);
          const state = {metrics: {seq: 0, runs: {[run]: {[metric]: {x: H.b64(x), y: H.b64(y)}, loss: {x: H.b64(x), y: H.b64(y)}}}},
                         alerts: [], run_ids: [run], status: {level: 'warning', message: 'status <b>' + run + '</b>'},
                         info: {}, default_charts: [metric, 'loss']};
          window.model = await H.createModel(state);
          window.v1 = await H.renderView(model, document.getElementById('view1'));
          window.v2 = await H.renderView(model, document.getElementById('view2'));
          await H.settle([v1, v2]);
          v1.internals.view.flushAll();
          // hover a point so plotly renders the trace name
          const gd = v1.el.querySelector('.rldk-plot');
          return true;
        }""",
        {"run": run, "metric": metric},
    )
    titles = page.eval_on_selector_all("#view1 .rldk-chart-title", "els => els.map(e => e.textContent)")
    assert metric in titles
    names = page.evaluate("() => [...v1.el.querySelectorAll('.rldk-plot')].flatMap(gd => gd.data.map(t => t.name))")
    assert names and all("<img" not in n for n in names), names
    assert page.locator("#view1 img, #view2 img").count() == 0
    status = page.text_content("#view1 .rldk-status")
    assert status == f"status <b>{run}</b>"
    # hover: plotly draws the (escaped) trace name as text
    label = hover_data_point(page, page.locator("#view1 .rldk-plot").first)
    assert "run<img src=x onerror=" in label, label  # the markup is text (plotly shows `"` as &quot;: run ids
    # from the kernel cannot hold quotes or markup, [A-Za-z0-9._-] only)
    settle_injected_handlers(page)
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("#view1 img").count() == 0


def test_gap_requests_exactly_one_snapshot(page):
    page.evaluate(SETUP_TWO_VIEWS, {"steps": 1_000, "extra": False})
    res = page.evaluate(
        """async () => {
          const store = v1.internals.store;
          const seq0 = store.lastSeq;
          model.custom(H.makeDelta(seq0 + 1, lengths, 10));          // applied
          model.custom(H.makeDelta(seq0 + 1, lengths, 10));          // duplicate: ignored
          const afterDup = store.lastSeq;
          model.custom(H.makeDelta(seq0 + 3, lengths, 10));          // gap
          model.custom(H.makeDelta(seq0 + 4, lengths, 10));          // still waiting: no 2nd request
          model.custom(H.makeDelta(seq0 + 9, lengths, 10));
          const sentDuringGap = model.sent.slice();
          // the kernel answers with a snapshot (seq 20): store replaced, deltas resume from there
          const {state} = H.makeState({steps: 1200, seq: 20});
          model.kernelSet({metrics: state.metrics, alerts: state.alerts});
          const afterSnap = store.lastSeq;
          model.custom(H.makeDelta(21, {'grpo-qwen-0.5b': 1200, 'grpo-qwen-0.5b-lr2x': 960}, 10));
          const after21 = store.lastSeq;
          model.custom(H.makeDelta(23, {'grpo-qwen-0.5b': 1210, 'grpo-qwen-0.5b-lr2x': 970}, 10)); // new gap
          return {afterDup, seq0, sentDuringGap, afterSnap, after21, sent: model.sent,
                  len: store.series('grpo-qwen-0.5b', 'loss').length};
        }"""
    )
    assert res["afterDup"] == res["seq0"] + 1
    assert res["sentDuringGap"] == [{"type": "request_snapshot"}]
    assert res["afterSnap"] == 20 and res["after21"] == 21
    assert res["len"] == 1210
    assert res["sent"] == [{"type": "request_snapshot"}, {"type": "request_snapshot"}]


def test_cleanup_unsubscribes_and_purges(page):
    page.evaluate(SETUP_TWO_VIEWS, {"steps": 5_000, "extra": True})
    res = page.evaluate(
        """async () => {
          const store = v1.internals.store;
          const before = store.listenerCount;
          const plots = [...v1.el.querySelectorAll('.rldk-plot')];
          await v1.destroy();
          const purged = plots.every(gd => !gd._fullLayout);
          const after = store.listenerCount;
          // the other view keeps working
          model.custom(H.makeDelta(store.lastSeq + 1, lengths, 10));
          await H.settle([v2]);
          return {before, after, purged, rootGone: !document.querySelector('#view1 .rldk-root'),
                  v2Listeners: model.listenerCount(v2.ctx)};
        }"""
    )
    assert res["before"] == 2 and res["after"] == 1
    assert res["purged"] and res["rootGone"]


def test_tabs_ppo_checkpoints_and_controls(page):
    page.evaluate(SETUP_TWO_VIEWS, {"steps": 20_000, "extra": True})
    tabs = page.eval_on_selector_all("#view1 .rldk-tab:not([hidden])", "els => els.map(e => e.dataset.tab)")
    assert tabs == ["charts", "alerts", "ppo", "ckpt"]
    page.click("#view1 .rldk-tab[data-tab=ppo]")
    page.evaluate("() => H.settle([v1, v2])")
    titles = page.eval_on_selector_all("#view1 .rldk-chartpanel:not([hidden]) .rldk-chart-title", "els => els.map(e => e.textContent)")
    assert titles == ["clip_frac", "explained_variance", "value_loss"]
    shot(page, "ppo_tab", "#view1")
    page.click("#view1 .rldk-tab[data-tab=ckpt]")
    page.evaluate("() => H.settle([v1, v2])")
    titles = page.eval_on_selector_all("#view1 .rldk-chartpanel:not([hidden]) .rldk-chart-title", "els => els.map(e => e.textContent)")
    assert titles == ["kl", "reward_mean"]
    page.click("#view1 .rldk-tab[data-tab=charts]")
    # metric picker: add a chart, remove one with ×
    page.click("#view1 .rldk-chartpanel:not([hidden]) .rldk-picker-btn")
    page.check("#view1 .rldk-chartpanel:not([hidden]) input[data-name='rewards/format/mean']")
    page.click("#view1 .rldk-chart:first-child .rldk-chart-close")
    page.evaluate("() => H.settle([v1, v2])")
    titles = page.eval_on_selector_all("#view1 .rldk-chartpanel:not([hidden]) .rldk-chart-title", "els => els.map(e => e.textContent)")
    assert titles[0] == "kl_mean" and titles[-1] == "rewards/format/mean"
    # view 2 keeps its own selection
    titles2 = page.eval_on_selector_all("#view2 .rldk-chartpanel:not([hidden]) .rldk-chart-title", "els => els.map(e => e.textContent)")
    assert titles2[0] == "reward_mean"
    # time axis + log y + no smoothing: axis types follow
    page.click("#view1 .rldk-seg:has-text('time')")
    page.check("#view1 .rldk-toolbar input[type=checkbox]")
    page.evaluate("() => H.settle([v1, v2])")
    axes = page.evaluate("() => { const gd = v1.el.querySelector('.rldk-plot'); return [gd._fullLayout.xaxis.type, gd._fullLayout.yaxis.type]; }")
    assert axes == ["date", "log"]
    shot(page, "time_log", "#view1")


def test_nan_does_not_poison_smoothing(page):
    page.evaluate(
        """async () => {
          const n = 500, x = new Float64Array(n), y = new Float64Array(n);
          for (let i = 0; i < n; i++) { x[i] = i; y[i] = i % 50 === 7 ? NaN : (i === 300 ? Infinity : 1); }
          const state = {metrics: {seq: 0, runs: {r: {loss: {x: H.b64(x), y: H.b64(y)}}}}, alerts: [], run_ids: ['r'],
                         status: {level: 'ok', message: ''}, info: {}, default_charts: []};
          window.model = await H.createModel(state);
          window.v1 = await H.renderView(model, document.getElementById('view1'));
          await H.settle([v1]);
        }"""
    )
    res = page.evaluate(
        "() => { const gd = v1.el.querySelector('.rldk-plot'); return gd.data.map(t => [t.name, Array.from(t.y).filter(v => !Number.isFinite(v)).length, t.y[t.y.length-1]]); }"
    )
    raw, smooth = res
    assert raw[1] > 0  # the raw line shows the gaps
    assert smooth[1] == 0 and abs(smooth[2] - 1) < 1e-9  # the EMA stays finite and correct
    tile = page.text_content("#view1 .rldk-header")
    assert "loss" in tile.lower()


def test_status_line_and_meta_updates(page):
    page.evaluate(SETUP_TWO_VIEWS, {"steps": 1_000, "extra": False})
    assert page.locator("#view1 .rldk-status").is_hidden()
    page.evaluate("() => model.kernelSet({status: {level: 'error', message: 'reader: torn tail in run_metrics.json'}})")
    assert page.text_content("#view1 .rldk-status") == "reader: torn tail in run_metrics.json"
    assert "rldk-status-error" in page.get_attribute("#view1 .rldk-status", "class")
    page.evaluate("() => model.kernelSet({status: {level: 'ok', message: ''}})")
    assert page.locator("#view1 .rldk-status").is_hidden()
    # a new run in run_ids + data: a new colour, both views
    page.evaluate("() => model.kernelSet({run_ids: ['grpo-qwen-0.5b', 'grpo-qwen-0.5b-lr2x', 'third']})")
    page.evaluate("() => H.settle([v1, v2])")
    assert "third" in page.text_content("#view2 .rldk-tile-runs")


def test_screenshots_light_dark_and_narrow(page):
    set_theme(page, LIGHT_VARS)
    page.evaluate(SETUP_TWO_VIEWS, {"steps": 100_000, "extra": True})
    stream(
        page,
        3,
        alerts=[
            {"run_id": "grpo-qwen-0.5b", "type": "kl_spike", "message": "KL 0.12 > 0.1", "step": 100250,
             "severity": "warning", "timestamp": 1.7e9},
        ],
    )
    page.evaluate("() => model.kernelSet({status: {level: 'warning', message: 'auto-refresh: run_metrics.json grew by 300 rows'}})")
    page.evaluate("() => H.settle([v1, v2])")
    shot(page, "light")
    set_theme(page, DARK_VARS)
    page.evaluate("() => H.settle([v1, v2])")
    bg_dark = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert bg_dark == "rgb(17, 17, 17)"
    font = page.evaluate("() => v1.el.querySelector('.rldk-plot')._fullLayout.font.color")
    assert font.startswith("rgba(255, 255, 255") or font.startswith("rgba(255,255,255"), font
    shot(page, "dark")
    # plain page without any JupyterLab variables (Colab / VS Code / HTML export)
    page.evaluate("() => { document.body.removeAttribute('style'); }")
    page.evaluate("() => H.settle([v1, v2])")
    shot(page, "plain")


def test_first_render_of_100k_steps_and_a_stream_into_two_views_draw_every_point(page):
    """The path benchmarks/browser.py times (harness.js's bench helpers), checked for what it shows: the first
    render draws every default chart of 100k steps, deltas are applied in order, and both views end on the last
    step. No time limit here: a slow machine is not a broken widget."""
    res = page.evaluate(
        """async () => {
          const fr = await H.benchFirstRender({steps: 100000});
          const first = {charts: fr.view.el.querySelectorAll('.rldk-chart').length, draws: fr.result.charts,
                         lastX: fr.view.internals.store.series('grpo-qwen-0.5b', 'loss').lastX};
          const seq0 = fr.view.internals.store.lastSeq;
          for (let i = 0; i < 5; i++) await H.benchDeltaSync(fr.model, [fr.view], fr.lengths, 100);
          const v2 = await H.renderView(fr.model, document.getElementById('view2'));
          await H.settle([fr.view, v2]);
          const stream = await H.benchStream(fr.model, [fr.view, v2], fr.lengths,
                                             {count: 40, stepsPerDelta: 100, intervalMs: 20});
          await H.settle([fr.view, v2]);
          fr.view.internals.view.flushAll(); v2.internals.view.flushAll();
          window.v1 = fr.view; window.v2 = v2;
          return {first, seq0, seq: fr.view.internals.store.lastSeq, stream,
                  lastX: fr.view.internals.store.series('grpo-qwen-0.5b', 'loss').lastX, sent: fr.model.sent};
        }"""
    )
    assert res["first"]["charts"] == 6 and res["first"]["draws"] >= 6, res["first"]
    assert res["first"]["lastX"] == 100_000 - 1
    assert res["seq"] == res["seq0"] + 5 + 40 and res["sent"] == [], "a delta was skipped or a snapshot requested"
    assert res["lastX"] == 100_000 + 45 * 100 - 1
    assert res["stream"]["deltas"] == 40 and res["stream"]["chart_draws"] > 0
    s1, s2 = summaries(page)
    assert s1 == s2 and set(s1) == {"reward_mean", "kl_mean", "loss", "entropy_mean", "grad_norm", "learning_rate"}
    assert any(x1 == res["lastX"] for _n, _x0, x1, _y in s1["loss"]), s1["loss"]
