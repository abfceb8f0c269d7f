"""Hostile text and mid-run interruptions in a real JupyterLab (Debian chromium).

1. HTML / JS payloads (`<script>`, `<img onerror>`, `javascript:` links, SVG handlers, CSS injection, plotly
   templates, an RTL override, a 300-char name) as metric names (main and PPO tab), alert types, messages and
   extra keys, the run's trainer kind and the status line: every one is shown literally, no script runs (the
   page-level `window.__pwned` flag stays unset after rendering, opening the picker, hovering a chart and switching
   tabs), no element or handler is created from data, the layout stays intact, no console errors.
2. A page reload while a cell streams, then a kernel restart while another cell streams: the reloaded view and the
   view of the restarted kernel's new dashboard hold the full state (every point the kernel or the file had).
   Run ids cannot carry HTML (`[A-Za-z0-9._-]`), see tests/test_properties.py.
"""

from __future__ import annotations

import json
import shutil

import pytest

import lab
from rldk_widget.store import RunStore

if shutil.which("chromium") is None:
    pytest.skip("Debian chromium is not installed (make chromium)", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
INLINE = lab.NOTEBOOK_ROOT

PAYLOADS = [
    '<script>window.__pwned="script"</script>',
    '<img src=x onerror="window.__pwned=\'img\'">',
    '<svg onload="window.__pwned=\'svg\'"><circle r="9"></circle></svg>',
    '<a href="javascript:window.__pwned=\'link\'">click me</a>',
    '<iframe src="javascript:window.__pwned=\'iframe\'"></iframe>',
    '</style><style>.rldk-root{display:none!important} /*PWN-CSS*/</style>',
    '"><img src=x onerror=window.__pwned="attr"> x="',
    '<b style="position:fixed;inset:0;background:red">overlay</b>',
    "\u202eevil\u202c gpj.exe",
    "%{x}<br>%{y}<extra>hover</extra>",
    "$\\alpha$ <math><mi>x</mi></math>",
    '{{constructor.constructor("window.__pwned=1")()}}',
    "x" * 300,
]
RLO = PAYLOADS[8]
CHARTED = PAYLOADS[:6] + [RLO, "loss"]
PPO_NAME = "ppo:" + PAYLOADS[1]


def create_cell(out: str) -> str:
    return (
        "import json, math\n"
        "from rldk_widget import AlertRules, RLDKDashboard\n"
        "from rldk_widget.alerts import RULE_TYPES\n"
        f"PAYLOADS = json.loads({json.dumps(json.dumps(PAYLOADS))})\n"
        "# only the hostile alerts this test adds: the oscillating reward would raise computed ones (health.py)\n"
        f"dash = RLDKDashboard(output_dir={out!r}, run_id='hostile', auto_refresh=False,\n"
        "                     alert_rules=AlertRules(disabled=set(RULE_TYPES)))\n"
        "dash"
    )


FEED_CELL = (
    "for step in range(40):\n"
    "    record = {'step': step, 'reward_mean': math.sin(step / 5), 'loss': 1 / (step + 1),\n"
    f"              {PPO_NAME!r}: 0.5 + step / 100}}\n"
    "    for i, name in enumerate(PAYLOADS):\n"
    "        record[name] = i + math.cos(step / 7) / 3\n"
    "    dash.add_metrics(record)\n"
    "for i, text in enumerate(PAYLOADS):\n"
    "    dash.add_alert({'type': text, 'message': text, 'step': i, 'severity': 'critical', text[:40]: text})\n"
    "dash.set_run_info('hostile', max_steps=100, trainer_kind=PAYLOADS[1])\n"
    f"dash.default_charts = {CHARTED!r}\n"
    "dash.status = {'level': 'warning', 'message': PAYLOADS[0]}\n"
    "dash.flush()"
)

# everything in the view that could have been made from data, and what the user sees of it
PROBE_JS = """(sel) => {
  const root = document.querySelector(sel);
  if (!root) return null;
  const texts = (q) => [...root.querySelectorAll(q)].map((n) => n.textContent);
  const shown = (q) => [...root.querySelectorAll(q)].filter((n) => n.offsetParent !== null).map((n) => n.textContent);
  const injected = [...root.querySelectorAll('script, img, iframe, object, embed, math, b, frame, link, meta, base')]
    .map((n) => n.outerHTML.slice(0, 80));
  const handlers = [];
  const attrText = [];
  for (const n of root.querySelectorAll('*')) {
    for (const a of n.attributes) {
      if (a.name.startsWith('on')) handlers.push(`${n.tagName}[${a.name}]`);
      if (/^\\s*javascript:/i.test(a.value)) handlers.push(`${n.tagName}[${a.name}=${a.value.slice(0, 30)}]`);
      const dangerous = /^(href|src|srcdoc|style|action|formaction|xlink:href)$/.test(a.name);
      if (dangerous && /__pwned|PWN-CSS|overlay/.test(a.value)) attrText.push(`${n.tagName}[${a.name}]`);
    }
  }
  const cssInjected = [...document.querySelectorAll('style')].filter((s) => s.textContent.includes('PWN-CSS')).length;
  const ltr = (node) => {  // the first character is drawn left of the last one: no RTL override leaked in
    const t = node && [...node.childNodes].find((c) => c.nodeType === Node.TEXT_NODE && c.data.length > 1);
    if (!t) return null;
    const r = document.createRange();
    r.setStart(t, 0); r.setEnd(t, 1);
    const first = r.getBoundingClientRect().left;
    r.setStart(t, t.data.length - 1); r.setEnd(t, t.data.length);
    return first < r.getBoundingClientRect().left;
  };
  const rloRow = [...root.querySelectorAll('.rldk-alert')].find((row) =>
    row.querySelector('.rldk-alert-type').textContent.includes('\\u202e'));
  const rloChart = [...root.querySelectorAll('.rldk-chart')].find((box) =>
    box.querySelector('.rldk-chart-title').textContent.includes('\\u202e'));
  const box = root.getBoundingClientRect();
  const overflowing = [...root.querySelectorAll('.rldk-alert, .rldk-chart, .rldk-tile, .rldk-status')]
    .filter((n) => n.offsetParent !== null)
    .filter((n) => { const r = n.getBoundingClientRect(); return r.right > box.right + 1 || r.left < box.left - 1; })
    .map((n) => n.className);
  return {
    pwned: typeof window.__pwned === 'undefined' ? null : String(window.__pwned),
    visible: getComputedStyle(root).display !== 'none' && root.clientHeight > 100,
    rootOverflow: root.scrollWidth - root.clientWidth,
    overflowing,
    injected, handlers, attrText, cssInjected,
    chartTitles: shown('.rldk-chart-title'),
    pickerItems: texts('.rldk-picker-item'),
    alertTypes: texts('.rldk-alert-type'),
    alertMsgs: texts('.rldk-alert-msg'),
    alertExtras: texts('.rldk-alert-extra'),
    status: texts('.rldk-status'),
    runTitle: root.querySelector('.rldk-run-id') ? root.querySelector('.rldk-run-id').getAttribute('title') : null,
    rloStepLtr: rloRow ? ltr(rloRow.querySelector('.rldk-alert-step')) : 'no row',
    rloTimeLtr: rloRow ? ltr(rloRow.querySelector('.rldk-alert-time')) : 'no row',
    rloLastValLtr: rloChart ? ltr(rloChart.querySelector('.rldk-chart-lastval')) : 'no chart',
  };
}"""


def probe(lp) -> dict:
    lab.settle_injected_handlers(lp.page, INLINE)  # an injected <img src=x> fires onerror once its request fails
    return lp.page.evaluate(PROBE_JS, INLINE)


def assert_safe(state: dict, where: str) -> None:
    assert state["pwned"] is None, f"{where}: a payload ran (window.__pwned = {state['pwned']!r})"
    assert not state["injected"], f"{where}: elements created from data: {state['injected']}"
    assert not state["handlers"], f"{where}: handlers or javascript: URLs from data: {state['handlers']}"
    assert not state["attrText"], f"{where}: data text in href/src/style attributes: {state['attrText']}"
    assert state["cssInjected"] == 0, f"{where}: a <style> element was made from data"
    assert state["visible"], f"{where}: the view was hidden"
    assert state["rootOverflow"] <= 1, f"{where}: the view overflows horizontally by {state['rootOverflow']} px"
    assert not state["overflowing"], f"{where}: parts stick out of the view: {state['overflowing']}"


def test_hostile_text_is_shown_literally_and_never_runs(lab_page):
    lp = lab_page
    nb = lp.write_notebook("hostile", [create_cell(str(lp.server.base / "runs_hostile")), FEED_CELL])
    lp.open(nb)
    lp.page.evaluate("() => { delete window.__pwned; }")
    lp.run_all()
    lp.wait_until(lambda: lp.step(INLINE) == "39", 30, "the view to show step 39")
    lp.wait_until(lambda: len(probe(lp)["chartTitles"]) >= len(CHARTED), 20, "the hostile charts")

    state = probe(lp)
    assert_safe(state, "charts tab")
    assert state["chartTitles"] == CHARTED, f"chart titles not literal: {state['chartTitles']!r}"
    assert state["status"] == [PAYLOADS[0]], f"status line: {state['status']!r}"
    assert state["runTitle"] == f"hostile ({PAYLOADS[1]})", f"run tile title: {state['runTitle']!r}"
    assert state["rloLastValLtr"] is True, "an RTL override in a chart title reversed the chart's last value"

    # the metric picker lists every name as text
    lp.page.locator(f"{INLINE} .rldk-picker-btn").first.click()
    lp.wait_until(lambda: probe(lp)["pickerItems"], 5, "the metric picker")
    state = probe(lp)
    assert_safe(state, "metric picker")
    assert set(PAYLOADS) <= set(state["pickerItems"]), f"picker items: {state['pickerItems']!r}"
    lp.page.locator(f"{INLINE} .rldk-picker-btn").first.click()

    # hover every hostile chart: plotly draws its hover label (trace names, values) before the next check
    plots = lp.page.locator(f"{INLINE} .rldk-chart .rldk-plot")
    assert plots.count() >= len(CHARTED)
    for i in range(len(CHARTED)):
        assert "hostile" in lab.hover_data_point(lp.page, plots.nth(i)), f"chart {i}: no hover label with the run"
    assert_safe(probe(lp), "after hovering the charts")

    lab.show_tab(lp.page, INLINE, "alerts")
    lp.wait_until(lambda: len(probe(lp)["alertMsgs"]) == len(PAYLOADS), 10, "every alert in the list")
    state = probe(lp)
    assert_safe(state, "alerts tab")
    assert sorted(state["alertMsgs"]) == sorted(PAYLOADS), f"alert messages not literal: {state['alertMsgs']!r}"
    assert sorted(state["alertTypes"]) == sorted(PAYLOADS), f"alert types not literal: {state['alertTypes']!r}"
    for text in PAYLOADS:
        assert any(f"{text[:40]}={text}" in extra for extra in state["alertExtras"]), f"extra key/value {text[:40]!r}"
    assert state["rloStepLtr"] is True and state["rloTimeLtr"] is True, (
        "an RTL override in an alert type reversed the step / time next to it"
    )

    lab.show_tab(lp.page, INLINE, "ppo")
    lp.wait_until(lambda: PAYLOADS[1] in probe(lp)["chartTitles"], 10, "the PPO chart")
    assert_safe(probe(lp), "PPO tab")
    lp.assert_no_console_errors()


# ---- a page reload while a cell streams; a kernel restart while another streams -----------------------------
STORE_JS = """(sel) => {
  let n = document.querySelector(sel);
  while (n && !n.__rldk) n = n.parentElement;
  if (!n) return null;
  const s = n.__rldk.store.series('midrun', 'loss');
  return s ? {points: s.length, lastX: s.lastX} : {points: 0, lastX: null};
}"""


def stream_cell(first: int, last: int) -> str:
    return (
        f"for step in range({first}, {last}):\n"
        "    dash.add_metrics({'step': step, 'loss': 1 / (step + 1), 'reward_mean': math.sin(step / 9),\n"
        "                      'kl_mean': 0.001 * step})\n"
        "    time.sleep(0.02)\n"
        "dash.flush()"
    )


def view_holds(lp, points: int, last_step: int):
    def check():
        got = lp.page.evaluate(STORE_JS, INLINE)
        return got if got and got["points"] == points and got["lastX"] == last_step else None

    return check


def test_reload_and_kernel_restart_mid_run_show_the_full_state(lab_page):
    lp = lab_page
    out = lp.server.base / "runs_midrun"
    resume = (
        "import math, time\n"
        "from rldk_widget import RLDKDashboard\n"
        f"dash = RLDKDashboard(output_dir={str(out)!r}, run_id='midrun', auto_refresh=False)\n"
        "dash"
    )
    continue_cell = (
        "first = int(dash.to_dataframe()['step'].max()) + 1\n"
        "dash.add_metrics([{'step': s, 'loss': 1 / (s + 1), 'reward_mean': 0.0, 'kl_mean': 0.0}\n"
        "                  for s in range(first, first + 50)])\n"
        "dash.flush()"
    )
    nb = lp.write_notebook("midrun", [resume, stream_cell(0, 400), stream_cell(400, 1400), resume, continue_cell])
    lp.open(nb)

    # 1. reload the page while cell 2 streams (the notebook is saved first: JupyterLab re-creates views from
    #    the saved widget-view output)
    lab.run_cell(lp.page, 0)
    lp.page.wait_for_selector(f"{INLINE} .rldk-header", timeout=30_000)
    lab.wait_for_cells_done(lp.page, 30, count=1)
    lab.run_cell(lp.page, 1)
    lp.wait_until(lambda: (lp.page.evaluate(STORE_JS, INLINE) or {}).get("points", 0) >= 60, 30, "streaming")
    lp.save_and_reload(nb)
    lp.page.wait_for_selector(INLINE, timeout=60_000)
    state = lp.wait_until(view_holds(lp, 400, 399), 60, "the reloaded view to hold all 400 points")
    assert lp.step(INLINE) == "399", lp.step(INLINE)
    print(f"after the reload: {state}")

    # 2. restart the kernel while cell 3 streams; the restarted kernel's dashboard shows everything on disk
    lab.wait_for_kernel_idle(lp.page, 60)
    lab.run_cell(lp.page, 2)
    lp.wait_until(lambda: (lp.page.evaluate(STORE_JS, INLINE) or {}).get("points", 0) >= 460, 30, "streaming again")
    lp.page.evaluate("() => (%s)().sessionContext.session.kernel.restart()" % lab._NOTEBOOK_JS)
    lab.wait_for_kernel_idle(lp.page, 60)
    on_disk = [r["step"] for r in RunStore(out, "midrun").read_all().metrics]
    assert on_disk == list(range(len(on_disk))) and 460 <= len(on_disk) < 1400, f"{len(on_disk)} records on disk"
    lab.execute_command(lp.page, "notebook:clear-all-cell-outputs")
    lp.page.wait_for_function("(sel) => !document.querySelector(sel)", arg=INLINE, timeout=10_000)
    lp.console.clear()
    lab.run_cell(lp.page, 3)
    lp.page.wait_for_selector(f"{INLINE} .rldk-header", timeout=30_000)
    lp.wait_until(view_holds(lp, len(on_disk), len(on_disk) - 1), 30, f"the new view to hold all {len(on_disk)} points")
    lp.wait_until(lambda: lp.step(INLINE) == str(len(on_disk) - 1), 10, "the step tile to show the last step")
    lab.run_cell(lp.page, 4)
    lp.wait_until(view_holds(lp, len(on_disk) + 50, len(on_disk) + 49), 30, "the resumed run to keep streaming")
    print(f"kernel restarted with {len(on_disk)} records on disk; the new view holds all of them + 50")
    lp.assert_no_console_errors()
