"""The Samples tab (issue 15) in a real JupyterLab and Chromium, during a live tiny-Llama GRPO run in the kernel
(`dash.callback(trainer=trainer)`, `log_completions=True`, trained in a background thread of the kernel) whose
samples file also gets hostile samples (samples_run.py): the tab opens while the run goes on and follows its newest
step, then a picked step, a slider burst, a sort, a search with progress, an expanded row with its whole 1 MB
completion, one prompt across steps, the links from a reward chart's point and from an alert. Every hostile text is
shown as text (no `<img onerror>` runs, controls visible) and nothing overflows the widget sideways.

The time from a click to the rows drawn is printed (run with -s), not asserted: benchmarks/ measures it."""

from __future__ import annotations

import shutil

import pytest

import lab
from samples_run import IMG

if shutil.which("chromium") is None:
    pytest.skip("Debian chromium is not installed (make chromium)", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.training, pytest.mark.timeout(240)]

ROOT = lab.NOTEBOOK_ROOT
PANEL = f"{ROOT} .rldk-samples"
BODY = f"{PANEL} .rldk-samples-body"
RUN = "tiny-llama-grpo-test"
MAX_STEPS = 40

SETUP = f"""\
import sys, tempfile
from pathlib import Path
sys.path.insert(0, {str(lab.REPO / "tests" / "browser")!r})
import samples_run
import trl.trainer.grpo_trainer as grpo
grpo.print_prompt_completions_sample = lambda *args, **kwargs: None  # TRL's rich tables of log_completions
from rldk_widget import RLDKDashboard
work = Path(tempfile.mkdtemp(prefix="samples_tab_"))
dash = RLDKDashboard(output_dir=work / "logs", run_id={RUN!r}, auto_refresh=False)
dash"""

TRAIN = f"""\
trainer = samples_run.make_trainer(work, work / "logs", {RUN!r}, dash, max_steps={MAX_STEPS}, step_delay=0.4,
                                     hostile_steps=(2, 4, {MAX_STEPS}))
training = samples_run.train_in_background(trainer)"""

# ---- page helpers ----------------------------------------------------------------------------------------------
STATE_JS = """(sel) => {
  const panel = document.querySelector(sel);
  if (!panel) return null;
  const body = panel.querySelector('.rldk-samples-body');
  const root = panel.closest('.rldk-root');
  const rows = [...panel.querySelectorAll('tr.rldk-sample-row')];
  const ths = [...panel.querySelectorAll('.rldk-samples-table th')];
  const head = ths.map((th) => th.querySelector('.rldk-th-label').textContent);
  const col = (name) => head.indexOf(name);
  return {
    hidden: panel.hidden,
    state: body.dataset.state || null,
    step: body.dataset.step === undefined ? null : body.dataset.step,
    follow: panel.querySelector('input[type=checkbox]').checked,
    stepInput: panel.querySelector('.rldk-step-num').value,
    lastStep: (panel.querySelector('.rldk-step-info').textContent.match(/–([\\d,]+)\\)/) || [null, ''])[1].replace(/,/g, ''),
    sliderMax: Number(panel.querySelector('.rldk-step-slider').max),
    head,
    rows: rows.map((tr) => ({id: tr.dataset.row, cells: [...tr.children].map((td) => td.textContent)})),
    rewardCol: col('reward'),
    sorted: ths.filter((th) => th.getAttribute('aria-sort')).map((th) => [th.dataset.sort, th.getAttribute('aria-sort')]),
    groups: [...panel.querySelectorAll('tbody.rldk-group')].length,
    identical: panel.querySelectorAll('.rldk-group-identical').length,
    note: panel.querySelector('.rldk-samples-note').hidden ? '' : panel.querySelector('.rldk-samples-note').textContent,
    error: panel.querySelector('.rldk-samples-error').hidden ? '' : panel.querySelector('.rldk-samples-error').textContent,
    search: panel.querySelector('.rldk-search-results').hidden ? null : {
      progress: panel.querySelector('.rldk-search-progress').textContent,
      done: panel.querySelector('.rldk-search-results').dataset.done,
      steps: [...panel.querySelectorAll('.rldk-search-step')].map((n) => Number(n.textContent.replace(/\\D/g, ''))),
      matches: panel.querySelectorAll('.rldk-search-match').length,
    },
    imgs: root.querySelectorAll('img, script').length,
    overflow: {root: [root.scrollWidth, root.clientWidth],
               output: (() => { const o = root.closest('.jp-OutputArea-output') || root.parentElement;
                                return [o.scrollWidth, o.clientWidth]; })()},
  };
}"""

# Click what `click` selects (or set an input's value and fire its events), then resolve with the ms until the panel's
# body says `state` for `step` (rows in the DOM) and one more frame was drawn.
TIMED_JS = """async ({panel, click, value, state, step}) => {
  const target = document.querySelector(click);
  if (!target) throw new Error('nothing to click at ' + click);
  const body = document.querySelector(panel + ' .rldk-samples-body');
  const t0 = performance.now();
  if (value === null) target.click();
  else {
    target.value = value;
    target.dispatchEvent(new Event('input', {bubbles: true}));
    target.dispatchEvent(new Event('change', {bubbles: true}));
  }
  const deadline = t0 + 30000;
  while (performance.now() < deadline) {
    await new Promise((resolve) => requestAnimationFrame(resolve));
    if (body.dataset.state === state && (step === null || body.dataset.step === String(step))) {
      await new Promise((resolve) => requestAnimationFrame(resolve));
      return performance.now() - t0;
    }
  }
  throw new Error('the samples were not drawn: ' + body.dataset.state + ' ' + body.dataset.step);
}"""


def state(page):
    return page.evaluate(STATE_JS, PANEL)


def timed(page, click: str, *, value: str | None = None, state: str = "ready", step: int | None = None) -> float:
    return page.evaluate(TIMED_JS, {"panel": PANEL, "click": click, "value": value, "state": state, "step": step})


def no_overflow(s) -> bool:
    (root_scroll, root_client), (out_scroll, out_client) = s["overflow"]["root"], s["overflow"]["output"]
    return root_scroll <= root_client + 1 and out_scroll <= out_client + 1


def test_samples_tab_during_a_live_grpo_run(lab_page):
    page = lab_page.page
    times: dict[str, float] = {}
    notebook = lab_page.write_notebook("samples_tab.ipynb", [SETUP, TRAIN])
    lab_page.open(notebook)
    lab_page.run_all(timeout=120)  # the training cell returns at once: the run goes on in the kernel's thread

    # the tab appears once the run has samples; opened during the run it follows the newest step
    tab = page.locator(f"{ROOT} button.rldk-tab[data-tab='samples']")
    tab.wait_for(state="visible", timeout=60_000)
    times["open the tab"] = timed(page, f"{ROOT} button.rldk-tab[data-tab='samples']")
    first = state(page)
    assert first["rows"] and first["follow"] and first["step"] is not None, first
    assert first["head"][:2] == ["#", "completion"] and "reward_len" in first["head"] and "reward_words" in first["head"]
    assert first["head"][-4:] == ["reward", "adv", "len", "flags"], first["head"]
    followed = lab_page.wait_until(lambda: (s := state(page)) and s["state"] == "ready" and int(s["step"]) > int(first["step"]) + 2 and s,
                                   60, "the tab to follow the newest step while training runs")
    assert followed["follow"] and not followed["error"]
    assert no_overflow(followed), followed["overflow"]

    # pick a step: following stops there while the run goes on
    times["pick step 2 (number)"] = timed(page, f"{PANEL} .rldk-step-num", value="2", step=2)
    picked = state(page)
    assert not picked["follow"] and picked["step"] == "2", picked
    texts = [r["cells"][1] for r in picked["rows"]]
    assert any(t.startswith(IMG) for t in texts), texts  # the <img onerror> completion, as text
    assert picked["imgs"] == 0
    assert any("ESC[31mANSI red" in t for t in texts), texts  # the escape shown, not obeyed
    labels = page.evaluate(f"() => [...document.querySelectorAll('{PANEL} .rldk-ctrl')].map((n) => n.textContent)")
    assert {"RLO", "PDF", "ZWSP", "ZWJ", "NUL", "ESC"} <= set(labels), labels  # invisible and control characters, visible
    assert no_overflow(picked), picked["overflow"]  # the 1 MB preview wraps inside its cell
    page.wait_for_timeout(1200)
    assert state(page)["step"] == "2", "the picked step was replaced while training went on"

    # a slider burst: every position is asked for, only the newest is drawn
    started = page.evaluate(
        """(sel) => { const s = document.querySelector(sel + ' .rldk-step-slider'); const t0 = performance.now();
                      for (let i = 0; i <= Number(s.max); i++) { s.value = String(i); s.dispatchEvent(new Event('input')); }
                      return t0; }""",
        PANEL,
    )
    newest = lab_page.wait_until(lambda: (s := state(page)) and s["state"] == "ready" and s["step"] == s["lastStep"]
                                 and s, 30, "the slider's last position drawn")
    times["slider burst → last rows"] = page.evaluate("(t0) => performance.now() - t0", started)
    assert int(newest["step"]) > 4 and newest["stepInput"] == newest["step"] and not newest["follow"], newest

    # back to the hostile step with prev / next, then sort by reward (click its header twice: high first, low first)
    timed(page, f"{PANEL} .rldk-step-num", value="4", step=4)
    times["sort by reward"] = timed(page, f"{PANEL} th[data-sort='reward']", step=4)
    s = state(page)
    rewards = [float(r["cells"][s["rewardCol"]]) for r in s["rows"]]
    assert rewards[0] == max(rewards), rewards  # groups follow their best sample
    assert s["sorted"] == [["reward", "descending"]], s["sorted"]
    timed(page, f"{PANEL} th[data-sort='reward']", step=4)
    s = state(page)
    rewards = [float(r["cells"][s["rewardCol"]]) for r in s["rows"]]
    assert rewards[0] == min(rewards) and rewards[0] < -40, rewards  # the 1 MB completion scored worst
    times["next step"] = timed(page, f"{PANEL} .rldk-step-picker button:nth-of-type(2)", step=5)
    times["previous step"] = timed(page, f"{PANEL} .rldk-step-picker button:nth-of-type(1)", step=4)

    # a text search over every step: progress, then the matches by step, newest first
    search = page.locator(f"{PANEL} .rldk-samples-search")
    search.fill("onerror")
    search.press("Enter")
    found = lab_page.wait_until(lambda: (s := state(page))["search"] and s["search"]["done"] == "true" and s, 30,
                                "the search to finish")
    assert "in" in found["search"]["progress"] and found["search"]["matches"] >= 2, found["search"]
    assert found["search"]["steps"] == sorted(found["search"]["steps"], reverse=True)
    assert {2, 4} <= set(found["search"]["steps"]), found["search"]
    # a match opens its sample at its step
    times["search match → its step"] = timed(page, f"{PANEL} .rldk-search-match:last-child", step=2)
    lab_page.wait_until(lambda: page.locator(f"{PANEL} tr.rldk-sample-detail .rldk-detail-facts").count(), 20,
                        "the match's sample expanded")
    search.fill("")
    search.press("Enter")

    # expand the 1 MB completion: the first 100k characters, then all of it, scrolling inside its box
    big = page.locator(f"{PANEL} tr.rldk-sample-row", has_text="AAAAAAAAAA").first
    big.click()
    full = page.locator(f"{PANEL} .rldk-detail button[data-action='full']")
    full.wait_for(timeout=20_000)
    assert "1,048,576" in full.inner_text()
    full.click()
    sizes = page.evaluate(
        """(sel) => [...document.querySelectorAll(sel + ' .rldk-detail-text')].map((n) => [n.textContent.length, n.scrollWidth, n.clientWidth, n.clientHeight])""",
        PANEL,
    )
    assert any(length >= 1 << 20 for length, *_ in sizes), sizes
    assert all(sw <= cw + 1 and ch < 600 for _, sw, cw, ch in sizes), sizes  # wraps, and scrolls inside its box
    assert no_overflow(state(page)), state(page)["overflow"]

    # the run ends cleanly
    lab.execute_code(page, "training.join(120); assert not training.is_alive() and not training.errors, training.errors")

    # one prompt across steps: the hostile prompt was asked at steps 2, 4 and the last
    hostile_group = page.locator(f"{PANEL} tbody.rldk-group", has_text="onerror").first
    hostile_group.locator("[data-action='prompt']").click()
    history = lab_page.wait_until(
        lambda: page.evaluate(
            "(sel) => { const b = document.querySelector(sel); return b.dataset.state === 'prompt' &&"
            " [...b.querySelectorAll('.rldk-prompt-step')].map((n) => Number(n.dataset.step)); }", BODY),
        20, "the prompt across steps")
    assert history == [2, 4, MAX_STEPS], history
    prompt_text = page.locator(f"{BODY} .rldk-prompt-head .rldk-text").inner_text()
    assert "<script>window.__pwned=2</script>" in prompt_text
    # a real prompt comes back every two steps (four prompts, two per step)
    page.locator(f"{BODY} [data-action='goto'][data-step='4']").click()
    lab_page.wait_until(lambda: state(page)["step"] == "4" and state(page)["state"] == "ready", 20, "back at step 4")
    real_group = page.locator(f"{PANEL} tbody.rldk-group").filter(has_not_text="onerror").first
    real_group.locator("[data-action='prompt']").click()
    real = lab_page.wait_until(
        lambda: page.evaluate(
            "(sel) => { const b = document.querySelector(sel); return b.dataset.state === 'prompt' &&"
            " [...b.querySelectorAll('.rldk-prompt-step')].map((n) => Number(n.dataset.step)); }", BODY),
        20, "a real prompt across steps")
    assert len(real) >= 3 and real == sorted(real), real

    # the links: a point of the reward chart opens the samples of its step
    lab.show_tab(page, ROOT, "charts")
    plot = page.locator(f"{ROOT} .rldk-chart:has(.rldk-chart-title:text-is('reward_mean')) .rldk-plot").first
    point = plot.evaluate(lab._DATA_POINT_JS)
    assert point is not None
    t0 = page.evaluate("() => performance.now()")
    page.mouse.click(point["x"], point["y"])
    opened = lab_page.wait_until(lambda: (s := state(page)) and not s["hidden"] and s["state"] == "ready" and s, 20,
                                 "the Samples tab from a reward chart's point")
    times["chart point → rows"] = page.evaluate("(t0) => performance.now() - t0", t0)
    assert opened["rows"] and not opened["follow"]

    # an alert at step 3 links to the samples of step 3 (and still moves the charts when its row is clicked)
    lab.execute_code(page, "dash.add_alert({'type': 'custom', 'message': 'look at step 3', 'step': 3, 'severity': 'warning'})")
    lab.show_tab(page, ROOT, "alerts")
    link = page.locator(f"{ROOT} .rldk-alert", has_text="look at step 3").locator(".rldk-samples-link")
    link.wait_for(timeout=20_000)
    times["alert link → rows"] = timed(page, f"{ROOT} .rldk-alertpanel .rldk-samples-link", step=3)
    banner_link = page.locator(f"{ROOT} .rldk-banner .rldk-samples-link")
    assert banner_link.is_visible()

    lab.settle_injected_handlers(page, ROOT)
    assert page.evaluate("() => window.__pwned") is None, "a sample's markup ran"
    assert state(page)["imgs"] == 0
    lab_page.assert_no_console_errors()

    # save_html: no kernel behind the page, the saved newest steps only (and said so), still text
    lab.execute_code(page, "dash._refresh_saved_state(); dash.save_html('samples_report.html')")
    report = page.context.new_page()
    report.goto((lab_page.server.root_dir / "samples_report.html").as_uri())
    report.locator(f"{lab.ROOT} button.rldk-tab[data-tab='samples']").click()
    saved = lab_page.wait_until(lambda: (s := report.evaluate(STATE_JS, f"{lab.ROOT} .rldk-samples")) and s["state"] == "ready" and s,
                                20, "the saved samples in save_html's page")
    assert saved["step"] == str(MAX_STEPS) and saved["rows"] and "No kernel" in saved["note"], saved
    assert "only the newest 3 steps are saved" in saved["note"], saved["note"]
    assert any(r["cells"][1].startswith(IMG) for r in saved["rows"]) and saved["imgs"] == 0
    search = report.locator(f"{lab.ROOT} .rldk-samples-search")
    search.fill("onerror")
    search.press("Enter")
    local = lab_page.wait_until(lambda: report.evaluate(STATE_JS, f"{lab.ROOT} .rldk-samples")["search"], 10, "a search of the saved steps")
    assert local["steps"] == [MAX_STEPS] and local["done"] == "true", local
    lab.settle_injected_handlers(report, lab.ROOT)
    assert report.evaluate("() => window.__pwned") is None
    report.close()
    print("\nSamples tab, click → rows drawn (ms, through the real kernel):")
    for what, ms in times.items():
        print(f"  {what:28s} {ms:7.0f}")

