"""The Samples tab's request flows in the fake anywidget host (harness.js), against a fake kernel in the page that
answers the page requests (docs/samples.md) after a delay of its choosing: what a real tiny run is too quick to
show — a search's partial pages ("searched N of M steps"), a newer search replacing an older one, a slider burst
drawn for its last position only, the "waiting for the kernel" note, an error reply, and the saved pages shown
when no kernel answers (and replaced once one does). Also: the narrow sidebar view never overflows sideways."""

from __future__ import annotations

import pytest

from test_harness import shot

pytestmark = pytest.mark.browser

# A fake kernel: `window.kernel.delay` ms before each reply, `window.kernel.mode` "answer" | "silent" | "error";
# every request is recorded in `window.kernel.asked`. Steps 1..N (N = 60), two prompt groups of two per step.
SETUP = """async ({mode, delay, recent, sidebar}) => {
  const N = 60;
  const row = (step, i, text) => ({id: `${step}:${i}`, step, index: i, prompt_id: 'p' + (i >> 1), source: 'live',
    completion: text ?? `answer ${i} at step ${step}`, completion_more: false, reward: i - step / 100,
    rewards: {fmt: i % 2, len: -i}, advantage: i % 2 ? 0.7 : -0.7, completion_length: 8, truncated: true,
    empty: false, cut: false, completion_chars: 20, prompt_chars: 9, extra: {}});
  const group = (step, g) => ({prompt_id: 'p' + g, prompt: `prompt ${g}`, prompt_more: false, prompt_chars: 8, size: 2,
    shown: 2, reward_mean: 0.5, reward_std: 0.7, reward_min: 0, reward_max: 1, identical_rewards: g === 1,
    rows: [row(step, 2 * g), row(step, 2 * g + 1)]});
  const stepPage = (step) => ({kind: 'step', run_id: 'run', step, prev_step: step > 1 ? step - 1 : null,
    next_step: step < N ? step + 1 : null, reward_names: ['fmt', 'len'], sort: {column: 'index', descending: false},
    total_rows: 4, matched_rows: 4, total_groups: 2, matched_groups: 2, offset: 0, limit: 64, more: false,
    groups: [group(step, 0), group(step, 1)]});
  const steps = Array.from({length: N}, (_, i) => i + 1);
  const summary = {run: {steps: N, first_step: 1, last_step: N, samples: 4 * N, reward_names: ['fmt', 'len'],
    sort_columns: ['index', 'reward', 'advantage', 'completion_length', 'fmt', 'len'], flags: ['truncated', 'empty', 'cut', 'identical']}};
  const saved = recent ? {run: {[String(N)]: stepPage(N), [String(N - 1)]: stepPage(N - 1)}} : {};
  window.kernel = {mode, delay, asked: [], pages: {stepPage}};
  const {state} = H.makeState({runIds: ['run'], steps: 200, maxSteps: 400});
  state.samples = summary;
  state.samples_recent = saved;
  const model = new H.FakeModel(state);
  const reply = (msg) => model.custom(msg);
  model.send = (content) => {
    if (content.type !== 'request') return;
    kernel.asked.push(content);
    if (kernel.mode === 'silent') return;
    const {id, slot, what, params} = content;
    const later = (ms, msg) => setTimeout(() => reply({type: 'reply', id, slot, ...msg}), ms);
    if (kernel.mode === 'error') return later(kernel.delay, {error: 'KeyError: no samples for run'});
    if (what === 'samples.steps') return later(kernel.delay, {data: {run_id: 'run', steps, summary: summary.run}});
    if (what === 'samples.step') return later(kernel.delay, {data: stepPage(params.step ?? N)});
    if (what === 'samples.search') {
      const m = (step) => ({id: `${step}:0`, step, index: 0, prompt_id: 'p0', in: ['completion'],
        prompt: {text: 'prompt 0', start: 0, match: null}, completion: {text: `${params.query} at ${step}`, start: 0, match: [0, params.query.length]},
        reward: 0, advantage: 0.7, truncated: true, empty: false, cut: false});
      const page = (searched, done) => ({kind: 'search', run_id: 'run', query: params.query,
        matches: steps.slice(N - searched).reverse().filter((s) => s % 10 === 0).map(m), searched_steps: searched, total_steps: N, done, cursor: null});
      if (params.query === 'many') {  // stops at the match limit: steps 60..31 first, then from the cursor on
        const before = params.cursor ? params.cursor.before : N + 1;
        const last = before <= 31;
        return later(kernel.delay, {data: {kind: 'search', run_id: 'run', query: 'many',
          matches: steps.filter((s) => s < before && (last || s > 30)).reverse().filter((s) => s % 10 === 0).map(m),
          searched_steps: last ? N : 30, total_steps: N, done: last, cursor: last ? null : {query: 'many', top: N, before: 31}}});
      }
      later(kernel.delay, {data: page(20, false), partial: true});
      later(kernel.delay + 400, {data: page(40, false), partial: true});
      return later(kernel.delay + 800, {data: page(N, true)});
    }
    if (what === 'samples.sample') return later(kernel.delay, {data: {...stepPage(Number(params.id.split(':')[0])).groups[0].rows[0], prompt: 'prompt 0', cut_fields: []}});
  };
  const widget = await H.loadWidget();
  await widget.initialize({model: model.proxy('initialize')});
  window.model = model;
  window.v1 = await H.renderView(model, document.getElementById(sidebar ? 'view2' : 'view1'));
  await H.settle([v1]);
  v1.el.querySelector("button.rldk-tab[data-tab='samples']").click();
  return true;
}"""

PANEL = ".rldk-samples"
STATE = """() => {
  const p = v1.el.querySelector('.rldk-samples');
  const b = p.querySelector('.rldk-samples-body');
  const note = p.querySelector('.rldk-samples-note');
  const err = p.querySelector('.rldk-samples-error');
  const res = p.querySelector('.rldk-search-results');
  const root = v1.el.querySelector('.rldk-root');
  return {state: b.dataset.state, step: b.dataset.step, note: note.hidden ? '' : note.textContent,
          error: err.hidden ? '' : err.textContent, rows: p.querySelectorAll('tr.rldk-sample-row').length,
          search: res.hidden ? null : res.querySelector('.rldk-search-progress').textContent,
          matches: [...p.querySelectorAll('.rldk-search-match .rldk-snippet-text')].map((n) => n.textContent),
          asked: kernel.asked.map((r) => r.what + ':' + JSON.stringify(r.params.step ?? r.params.query ?? '')),
          overflow: [root.scrollWidth, root.clientWidth]};
}"""


def setup(page, mode="answer", delay=20, recent=False, sidebar=False):
    page.evaluate(SETUP, {"mode": mode, "delay": delay, "recent": recent, "sidebar": sidebar})


def st(page):
    return page.evaluate(STATE)


def until(page, what, predicate, timeout=10_000):
    page.wait_for_function(f"() => ({predicate})(({STATE})())", timeout=timeout)
    return st(page)


def test_follows_the_newest_then_a_slider_burst_draws_its_last_position_only(page):
    setup(page, delay=30)
    s = until(page, "the newest step", "(s) => s.state === 'ready' && s.step === '60'")
    assert s["rows"] == 4
    # record every step the body draws, then drag through 40 positions at once
    page.evaluate("""() => { window.drawn = []; const b = v1.el.querySelector('.rldk-samples-body');
      new MutationObserver(() => { if (b.dataset.state === 'ready') drawn.push(b.dataset.step); })
        .observe(b, {attributes: true, attributeFilter: ['data-state', 'data-step']});
      const s = v1.el.querySelector('.rldk-step-slider');
      for (let i = 0; i < 40; i++) { s.value = String(i); s.dispatchEvent(new Event('input')); } }""")
    until(page, "the burst's last step", "(s) => s.state === 'ready' && s.step === '40'")
    page.wait_for_timeout(200)
    assert page.evaluate("() => [...new Set(drawn)]") == ["40"], "an older position of the burst was drawn"
    assert not page.evaluate("() => v1.el.querySelector('.rldk-samples input[type=checkbox]').checked")


def test_search_progress_then_a_newer_search_replaces_it(page):
    setup(page, delay=30)
    until(page, "the newest step", "(s) => s.state === 'ready'")
    box = page.locator(f"{PANEL} .rldk-samples-search")
    box.fill("first")
    box.press("Enter")
    s = until(page, "a partial page", "(s) => s.search && s.search.includes('searched 20 of 60 steps')")
    assert s["matches"] == ["first at 60", "first at 50"]
    box.fill("second")
    box.press("Enter")
    s = until(page, "the newer search's end", "(s) => s.search && s.search.startsWith('6 matches in 60 steps')")
    assert s["matches"] == [f"second at {n}" for n in (60, 50, 40, 30, 20, 10)]
    page.wait_for_timeout(900)  # the older search's late replies change nothing
    assert st(page)["matches"][0] == "second at 60"


def test_a_search_stopped_at_the_match_limit_goes_on_from_its_cursor(page):
    setup(page, delay=30)
    until(page, "the newest step", "(s) => s.state === 'ready'")
    box = page.locator(f"{PANEL} .rldk-samples-search")
    box.fill("many")
    box.press("Enter")
    s = until(page, "the first page", "(s) => s.search && s.search.startsWith('the first 3 matches')")
    assert s["matches"] == [f"many at {n}" for n in (60, 50, 40)]
    assert "searched 30 of 60 steps" in s["search"]
    page.locator(f"{PANEL} .rldk-search-next").click()
    s = until(page, "the next page", "(s) => s.search && s.search.startsWith('6 matches in 60 steps')")
    assert s["matches"] == [f"many at {n}" for n in (60, 50, 40, 30, 20, 10)]
    searches = page.evaluate("() => kernel.asked.filter((r) => r.what === 'samples.search').map((r) => r.params)")
    assert searches[-1]["cursor"] == {"query": "many", "top": 60, "before": 31}, searches
    assert "cursor" not in searches[0], searches
    assert page.locator(f"{PANEL} .rldk-search-next").count() == 0, "a finished search offers more matches"


def test_waiting_note_then_the_reply_and_an_error_line(page):
    setup(page, delay=1600)
    s = until(page, "the waiting note", "(s) => s.note.includes('Waiting for the kernel')", timeout=5000)
    assert s["state"] != "ready"
    s = until(page, "the reply", "(s) => s.state === 'ready' && !s.note", timeout=5000)
    page.evaluate("() => { kernel.mode = 'error'; kernel.delay = 10; }")
    page.locator(f"{PANEL} .rldk-step-num").fill("7")
    page.locator(f"{PANEL} .rldk-step-num").press("Enter")
    s = until(page, "the error line", "(s) => s.error.includes('KeyError: no samples for run')")
    page.evaluate("() => { kernel.mode = 'answer'; }")
    page.locator(f"{PANEL} .rldk-step-picker button").first.click()
    until(page, "the error cleared by the next reply", "(s) => s.state === 'ready' && !s.error")


def test_no_reply_shows_the_saved_pages_until_a_kernel_answers(page):
    setup(page, mode="silent", recent=True)
    s = until(page, "the saved page", "(s) => s.state === 'ready' && s.note.includes('No reply from the kernel')", timeout=6000)
    assert s["step"] == "60" and s["rows"] == 4 and "only the newest 2 steps are saved (of 60)" in s["note"], s
    # a kernel answers again: the next request's page replaces the saved one
    page.evaluate("() => { kernel.mode = 'answer'; }")
    page.locator(f"{PANEL} .rldk-step-num").fill("12")
    page.locator(f"{PANEL} .rldk-step-num").press("Enter")
    s = until(page, "a live page again", "(s) => s.state === 'ready' && s.step === '12' && !s.note.includes('No reply')", timeout=6000)
    assert s["rows"] == 4 and not s["error"]


def test_narrow_sidebar_view_never_overflows(page):
    setup(page, delay=10, sidebar=True)
    s = until(page, "rows in the sidebar", "(s) => s.state === 'ready' && s.rows === 4")
    assert s["overflow"][0] <= s["overflow"][1] + 1, s["overflow"]
    page.locator("#view2 tr.rldk-sample-row").first.click()
    page.locator("#view2 .rldk-detail-facts").wait_for()
    s = st(page)
    assert s["overflow"][0] <= s["overflow"][1] + 1, s["overflow"]
    shot(page, "samples_sidebar", "#sidebar")
