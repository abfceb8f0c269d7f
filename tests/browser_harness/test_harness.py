"""Browser tests of the built front end (rldk_widget/static/widget.js) in a fake anywidget host.

harness.html + harness.js fake the model (get/set/on/off/send/save_changes, msg:custom, anywidget's
per-call model proxies) and load the bundle with import(). The page is served by a local http.server on
127.0.0.1 and driven by Playwright with Debian's chromium. Skips only when chromium (or playwright) is missing.

Screenshots land in tests/browser_harness/out/ (light, dark, alerts, narrow sidebar, ...). How fast the bundle
renders and applies deltas is measured by benchmarks/browser.py, not asserted here.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUNDLE = ROOT / "rldk_widget" / "static" / "widget.js"
OUT = HERE / "out"

sys.path.insert(0, str(HERE.parent / "browser"))
from lab import hover_data_point, settle_injected_handlers  # noqa: E402  (shared with tests/browser)

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


# --------------------------------------------------------------------------------------------------------
# the Runs tab (js/src/runs.ts): a table of a thousand runs, and one beyond the synced rows (paged)

RUNS_TABLE_JS = """
window.runsTable = (n, total, offset = 0) => {
  const columns = [
    ['run_id', 'run id', 'text', 'identity'], ['name', 'run', 'text', 'identity'], ['source', 'source', 'text', 'identity'],
    ['folder', 'folder', 'text', 'identity'], ['trainer', 'trainer', 'text', 'identity'], ['status', 'status', 'status', 'identity'],
    ['step', 'step', 'number', 'progress'], ['max_steps', 'max steps', 'number', 'progress'],
    ['duration_s', 'duration', 'duration', 'progress'], ['started', 'started', 'time', 'progress'],
    ['last_activity', 'last record', 'time', 'progress'], ['duplicate_of', 'duplicate_of', 'text', 'identity'],
    ['last.reward_mean', 'last.reward_mean', 'number', 'metrics'], ['best.reward_mean', 'best.reward_mean', 'number', 'metrics'],
    ['last.kl_mean', 'last.kl_mean', 'number', 'metrics'], ['alerts.info', 'alerts.info', 'number', 'alerts'],
    ['alerts.warning', 'alerts.warning', 'number', 'alerts'], ['alerts.critical', 'alerts.critical', 'number', 'alerts'],
    ['args.beta', 'args.beta', 'number', 'config'], ['args.learning_rate', 'args.learning_rate', 'number', 'config'],
    ['optim', 'optim', 'text', 'config'], ['seed', 'seed', 'number', 'config'],
  ].map(([key, label, kind, group]) => ({key, label, kind, group}));
  const now = Date.now() / 1000;
  const row = (i) => [`run${String(i).padStart(5, '0')}`, `sweep/lr_${i % 7}/s${i}`, 'rldk', '/sweep', 'grpo',
    ['running', 'finished', 'stopped'][i % 3], 100 + (i * 37) % 900, 1000, 60 * (i % 50), now - 3600, now - (i % 600),
    null, i % 11 === 0 ? null : Math.sin(i) * 0.5 + 0.5, Math.cos(i) * 0.5 + 0.5, 0.01 * (i % 13), i % 5, i % 7 === 0 ? 2 : 0,
    i % 97 === 0 ? 1 : 0, [0, 0.01, 0.04, 0.1][i % 4], [1e-6, 3e-6, 1e-5, 3e-5, 1e-4][i % 5], i % 2 ? 'adamw' : 'sgd', i % 10];
  return {columns, rows: Array.from({length: n}, (_, k) => row(offset + k)), total, offset};
};
"""

SETUP_RUNS = """async ({n, total}) => {
  const {state, lengths} = H.makeState({steps: 2000, runIds: ['run00000', 'run00001']});
  state.runs_table = runsTable(n, total);
  state.selected = ['run00000', 'run00001'];
  window.lengths = lengths;
  window.model = await H.createModel(state);
  window.v1 = await H.renderView(model, document.getElementById('view1'));
  await H.settle([v1]);
  return v1.el.querySelector("button.rldk-tab[aria-selected='true']").dataset.tab;
}"""

RUNS_STATE_JS = """() => {
  const root = v1.el;
  const rows = [...root.querySelectorAll('.rldk-runs-row:not([hidden])')]
    .map((r) => ({y: new DOMMatrix(getComputedStyle(r).transform).m42, run: r.dataset.run,
                  name: r.querySelector('.rldk-runs-name').textContent}))
    .sort((a, b) => a.y - b.y);
  return {rows, count: root.querySelector('.rldk-runs-count').textContent, stats: {...v1.internals.view.runsPanel.stats},
          shown: v1.internals.view.runsPanel.shownRunIds(),
          requests: model.sent.filter((m) => m.type === 'request')};
}"""

SCROLL_FRAMES_JS = """async (frames) => {
  const scroll = v1.el.querySelector('.rldk-runs-scroll');
  const panel = v1.internals.view.runsPanel;
  const render = [];
  const gaps = [];
  let last = performance.now();
  const max = scroll.scrollHeight - scroll.clientHeight;
  for (let i = 1; i <= frames; i++) {
    scroll.scrollTop = (max * i) / frames;
    const t = await new Promise(requestAnimationFrame);
    gaps.push(t - last);
    last = t;
    render.push(panel.stats.lastRenderMs);
  }
  return {render, gaps};
}"""


def test_runs_table_of_a_thousand_runs_sorts_and_scrolls_within_a_frame(page):
    page.evaluate(RUNS_TABLE_JS)
    assert page.evaluate(SETUP_RUNS, {"n": 1000, "total": 1000}) == "runs"  # more than ten runs: the Runs tab first
    state = page.evaluate(RUNS_STATE_JS)
    assert state["count"] == "1,000 runs · 2 on the charts" and len(state["rows"]) <= 31
    for key in ("last.reward_mean", "args.learning_rate", "name", "optim", "status", "last.reward_mean"):
        page.locator(f"#view1 .rldk-runs-hcell[data-key='{key}']").click()
    state = page.evaluate(RUNS_STATE_JS)
    assert state["stats"]["sorts"] == 6
    # the last click sorted ascending by last reward: missing values (every 11th run) last
    assert state["shown"][-91:] == [f"run{i:05d}" for i in range(0, 1000, 11)]
    print(f"sort of 1000 rows: max {state['stats']['maxSortMs']:.2f} ms")
    assert state["stats"]["maxSortMs"] <= 50
    scrolled = page.evaluate(SCROLL_FRAMES_JS, 60)
    render = sorted(scrolled["render"])
    gaps = sorted(scrolled["gaps"])
    print(f"scroll of 1000 rows: render p50 {render[30]:.2f} / p95 {render[57]:.2f} / max {render[-1]:.2f} ms; "
          f"frame gap p50 {gaps[30]:.1f} / p95 {gaps[57]:.1f} ms")
    assert render[57] <= 16, render
    state = page.evaluate(RUNS_STATE_JS)
    assert state["rows"][-1]["y"] == 999 * 24 and state["rows"][-1]["run"] == state["shown"][-1]


def test_a_table_beyond_the_synced_rows_is_paged_through_requests(page):
    page.evaluate(RUNS_TABLE_JS)
    page.evaluate(SETUP_RUNS, {"n": 1000, "total": 5000})
    state = page.evaluate(RUNS_STATE_JS)
    assert state["count"] == "5,000 runs · 2 on the charts" and state["requests"] == []
    # scrolled past the synced rows: placeholders, then the page the kernel sends
    page.evaluate("() => { v1.el.querySelector('.rldk-runs-scroll').scrollTop = 3000 * 24; }")
    request = page.wait_for_function(
        "() => model.sent.filter((m) => m.type === 'request' && m.what === 'runs.page').pop()").json_value()
    assert request["params"]["offset"] <= 3000 < request["params"]["offset"] + request["params"]["limit"]
    assert request["params"]["sort"] is None and request["params"]["filter"] == ""
    reply = """(r) => model.custom({type: 'reply', id: r.id, slot: r.slot,
                                   data: runsTable(r.params.limit, 5000, r.params.offset)})"""
    page.evaluate(reply, request)
    page.wait_for_function("() => v1.el.querySelector(\".rldk-runs-row[data-run='run03000']\")")
    # a filter and a sort are the kernel's: a new first page is asked for
    page.locator("#view1 .rldk-runs-filter").fill("lr_3")
    page.locator("#view1 .rldk-runs-hcell[data-key='seed']").click()
    request = page.wait_for_function(
        """() => { const r = model.sent.filter((m) => m.type === 'request' && m.what === 'runs.page').pop();
                   return r.params.sort && r; }""").json_value()
    assert request["params"] == {"offset": 0, "limit": 300, "sort": {"key": "seed", "desc": True}, "filter": "lr_3"}
    page.evaluate("""(r) => { const t = runsTable(12, 5000, 40); t.total = 12; t.offset = 0;
                             model.custom({type: 'reply', id: r.id, slot: r.slot, data: t}); }""", request)
    page.wait_for_function("() => v1.el.querySelector('.rldk-runs-count').textContent.startsWith('12 of 5,000')")
    state = page.evaluate(RUNS_STATE_JS)
    assert [r["run"] for r in state["rows"]] == [f"run{i:05d}" for i in range(40, 52)]


SETUP_COLOURS = """async () => {
  const {state} = H.makeState({steps: 500, runIds: ['a', 'b', 'c']});
  state.selected = ['a', 'b', 'c'];
  state.run_colors = {a: 0, b: 1, c: 2};
  window.model = await H.createModel(state);
  window.v1 = await H.renderView(model, document.getElementById('view1'));
  await H.settle([v1]);
}"""
TRACE_COLOURS = """async () => {
  await H.settle([v1]);
  const gd = v1.el.querySelector('.rldk-plot');
  const runs = new Set(['a', 'b', 'c']);
  return Object.fromEntries(gd.data.filter((t) => runs.has(t.name)).map((t) => [t.name, t.line.color]));
}"""


def test_a_run_keeps_its_colour_when_another_is_deselected(page):
    from rldk_widget.static_view import PALETTE

    page.evaluate(SETUP_COLOURS)
    before = page.evaluate(TRACE_COLOURS)
    assert before == {"a": PALETTE[0], "b": PALETTE[1], "c": PALETTE[2]}, before
    # the kernel drops b (a delta) and keeps the others' slots (run_colors.py)
    page.evaluate("""() => { model.custom({type: 'delta', seq: model.get('metrics').seq + 1, metrics: {}, alerts: [],
                                           drop_runs: ['b']});
                             model.kernelSet({selected: ['a', 'c'], run_colors: {a: 0, c: 2}}); }""")
    assert page.evaluate(TRACE_COLOURS) == {"a": PALETTE[0], "c": PALETTE[2]}
    # a state without slots (a page saved by an older version): the lowest free slot in selection order
    page.evaluate("() => model.kernelSet({run_colors: {}})")
    assert page.evaluate(TRACE_COLOURS) == {"a": PALETTE[0], "c": PALETTE[1]}
