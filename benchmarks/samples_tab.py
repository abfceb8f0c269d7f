"""Issue 15: the Samples tab, from the click to the rows drawn, in Chromium through a real JupyterLab kernel, on the
synthetic run of samples.py (10k logged steps × 64 samples of ~2 KB, 8 prompts × 8 completions a step): opening the
tab, switching step (the number box, ‹ ›, the slider), sorting by reward, and the first page of a search for a word in
every sample, a rare one and an absent one (the first matches drawn, or "searched N of M steps").

    .venv/bin/python benchmarks/samples_tab.py [--quick]

Times are measured in the page: performance.now() at the click, then each animation frame until the panel's body
says the new rows are in the DOM (`data-state="ready"` for the step), plus one more frame.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "browser"))
import common as c  # noqa: E402
import lab  # noqa: E402
import samples as synthetic  # noqa: E402  (benchmarks/samples.py: the run's writer)

NAME = "samples_tab"
FULL = dict(steps=10_000, per_step=64, group=8, text_bytes=2048, step_reps=20, sort_reps=5, search_reps=3)
QUICK = dict(steps=200, per_step=64, group=8, text_bytes=2048, step_reps=5, sort_reps=2, search_reps=1)
TARGET_OPEN_S = 0.3
TARGET_STEP_S = 0.1
TARGET_SEARCH_S = 1.0

ROOT = lab.NOTEBOOK_ROOT
PANEL = f"{ROOT} .rldk-samples"

CELL = """\
from rldk_widget import RLDKDashboard
dash = RLDKDashboard(output_dir={folder!r}, run_id={run!r}, auto_refresh=False)
dash"""
INDEX_CELL = "n = len(dash.completions(step=1)); n  # builds the whole index on this thread (the worker would too)"

# `action` (JS statements) at t0, then frames until `done` (a JS expression over `body` and `panel`) holds
TIMED = """async ({action, done, panelSel}) => {
  const panel = document.querySelector(panelSel);
  const body = panel.querySelector('.rldk-samples-body');
  const t0 = performance.now();
  (new Function('panel', 'body', action))(panel, body);
  const holds = new Function('panel', 'body', 'return (' + done + ');');
  while (performance.now() - t0 < 60000) {
    await new Promise((resolve) => requestAnimationFrame(resolve));
    if (holds(panel, body)) {
      await new Promise((resolve) => requestAnimationFrame(resolve));
      return performance.now() - t0;
    }
  }
  throw new Error('not drawn: ' + done);
}"""


RENDER_JS = """(sel) => {
  let n = document.querySelector(sel);
  while (n && !n.__rldk) n = n.parentElement;
  const panel = n.__rldk.view.samples;
  const t0 = performance.now();
  panel.renderBody();
  void n.getBoundingClientRect().height;  // the layout too
  return performance.now() - t0;
}"""


def timed(page, action: str, done: str) -> float:
    return page.evaluate(TIMED, {"action": action, "done": done, "panelSel": PANEL}) / 1000


def drawn(step: int | str) -> str:
    return f"body.dataset.state === 'ready' && body.dataset.step === '{step}'"


def set_number(step: int) -> str:
    return ("const i = panel.querySelector('.rldk-step-num'); i.value = '%d';"
            " i.dispatchEvent(new Event('change', {bubbles: true}));" % step)


def main(argv: list[str] | None = None) -> dict:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    from playwright.sync_api import sync_playwright

    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; {cfg['steps']:,} steps × {cfg['per_step']} "
          f"samples of ~{cfg['text_bytes']:,} B; {c.load_note()}", flush=True)
    data: dict = {"config": cfg}
    rng = random.Random(2)
    with c.temp_dir(NAME) as tmp:
        child = multiprocessing.get_context("fork").Process(target=synthetic.write_run, args=(str(tmp), cfg))
        t = c.now()
        child.start()
        child.join()
        assert child.exitcode == 0, "writing the synthetic run failed"
        path = tmp / f"{synthetic.RUN}_samples.json"
        data["file_bytes"] = path.stat().st_size
        print(f"  samples file written: {c.fmt_bytes(data['file_bytes'])} in {c.now() - t:.1f} s", flush=True)
        with open(path, "rb") as f:  # into the page cache, as a file just written by training is
            while f.read(4 << 20):
                pass
        steps = list(range(1, cfg["steps"] + 1))
        with lab.LabServer(tmp / "lab") as server, sync_playwright() as playwright:
            notebook = lab.write_notebook(server.root_dir, "samples_tab",
                                          [CELL.format(folder=str(tmp), run=synthetic.RUN), INDEX_CELL])
            browser = lab.launch_chromium(playwright)
            try:
                context, page, console = lab.new_page(browser)
                lab.open_notebook(page, server, notebook)
                t = c.now()
                lab.run_all_cells(page)
                lab.wait_for_cells_done(page, 600)
                tab = page.locator(f"{ROOT} button.rldk-tab[data-tab='samples']")
                tab.wait_for(state="visible", timeout=60_000)
                data["index_s"] = c.now() - t
                print(f"  indexed by the kernel in {data['index_s']:.1f} s", flush=True)
                page.wait_for_timeout(1500)  # the summary of every step has reached the view

                last = steps[-1]
                data["open_s"] = timed(page, f"document.querySelector(\"{ROOT} button.rldk-tab[data-tab='samples']\").click();",
                                       drawn(last))
                rows = page.locator(f"{PANEL} tr.rldk-sample-row").count()
                assert rows == cfg["per_step"], f"{rows} rows drawn"
                number, arrows, slider = [], [], []
                for _ in range(cfg["step_reps"]):
                    s = rng.choice(steps[1:-1])
                    number.append(timed(page, set_number(s), drawn(s)))
                    arrows.append(timed(page, "panel.querySelectorAll('.rldk-step-picker button')[1].click();", drawn(s + 1)))
                    j = rng.randrange(len(steps))
                    slider.append(timed(page, "const r = panel.querySelector('.rldk-step-slider'); r.value = '%d';"
                                              " r.dispatchEvent(new Event('input'));" % j, drawn(steps[j])))
                data["step_number_s"], data["step_arrow_s"], data["step_slider_s"] = (
                    c.summary(number), c.summary(arrows), c.summary(slider))
                sorts = []
                for k in range(cfg["sort_reps"]):
                    order = "descending" if k % 2 == 0 else "ascending"
                    sorts.append(timed(page, "panel.querySelector(\"th[data-sort='reward']\").click();",
                                       "body.dataset.state === 'ready' && panel.querySelector(\"th[aria-sort='%s']\")" % order))
                data["sort_s"] = c.summary(sorts)
                # what drawing a step's rows costs in the page (a redraw of the page at hand, layout included)
                data["render_s"] = c.summary([page.evaluate(RENDER_JS, ROOT) / 1000 for _ in range(cfg["step_reps"])])

                searches = {}
                for word in ("answer", "zebra", "quokka"):
                    first, whole, progress = [], [], ""
                    for _ in range(cfg["search_reps"]):
                        timed(page, "const i = panel.querySelector('.rldk-samples-search'); i.value = '';"
                                    " i.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}));",
                              "panel.querySelector('.rldk-search-results').hidden")
                        act = ("const i = panel.querySelector('.rldk-samples-search'); i.value = '%s';"
                               " i.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));" % word)
                        # the first page: matches drawn, the end, or (absent word) the first "searched N of M steps"
                        first.append(timed(page, act, "panel.querySelector('.rldk-search-match') ||"
                                           " panel.querySelector('.rldk-search-results').dataset.done === 'true' ||"
                                           " /searched [1-9][0-9,]* of/.test((panel.querySelector('.rldk-search-progress') || {}).textContent || '')"))
                        progress = page.locator(f"{PANEL} .rldk-search-progress").inner_text()
                        whole.append(first[-1] + timed(page, "", "panel.querySelector('.rldk-search-results').dataset.done === 'true'"))
                    searches[word] = {"first_s": c.summary(first), "whole_s": c.summary(whole), "first_progress": progress,
                                      "final": page.locator(f"{PANEL} .rldk-search-progress").inner_text()}
                data["search"] = searches
                # a step asked for while a search of every step goes on (an absent word: ~2 s at 10k steps) is answered
                # between the search's slices (pages.py), not after it
                during = []
                for _ in range(cfg["search_reps"]):
                    timed(page, "const i = panel.querySelector('.rldk-samples-search'); i.value = '';"
                                " i.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}));",
                          "panel.querySelector('.rldk-search-results').hidden")
                    timed(page, "const i = panel.querySelector('.rldk-samples-search'); i.value = 'quokka';"
                                " i.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));",
                          "/searched [1-9][0-9,]* of/.test(panel.querySelector('.rldk-search-progress').textContent)"
                          " || panel.querySelector('.rldk-search-results').dataset.done === 'true'")
                    s = rng.choice(steps[1:-1])
                    during.append(timed(page, set_number(s), drawn(s)))
                    data["step_during_search_done"] = page.locator(f"{PANEL} .rldk-search-results").get_attribute("data-done")
                data["step_during_search_s"] = c.summary(during)
                if console.errors:
                    print("console errors:\n  " + "\n  ".join(console.errors), file=sys.stderr)
                data["console_errors"] = list(console.errors)
                context.close()
            finally:
                browser.close()

    table = c.Table(
        f"The Samples tab in Chromium through a JupyterLab kernel: {cfg['steps']:,} steps × {cfg['per_step']} samples of"
        f" ~{cfg['text_bytes']:,} B ({c.fmt_bytes(data['file_bytes'])} samples file), click → rows drawn",
        ["action", "median", "p90 / max", "note"],
    )
    table.add("open the tab (the newest step)", c.fmt_time(data["open_s"]), "-", f"{cfg['per_step']} rows in 8 prompt groups")
    for key, label in (("step_number_s", "switch step: the number box"), ("step_arrow_s", "switch step: ›"),
                       ("step_slider_s", "switch step: the slider")):
        s = data[key]
        table.add(label, c.fmt_time(s["median"]), f"{c.fmt_time(s['p90'])} / {c.fmt_time(s['max'])}", f"{s['n']} random steps")
    s = data["sort_s"]
    table.add("sort by reward (header click)", c.fmt_time(s["median"]), f"{c.fmt_time(s['p90'])} / {c.fmt_time(s['max'])}", "")
    s = data["render_s"]
    table.add("of which: drawing the rows (DOM + layout)", c.fmt_time(s["median"]), f"{c.fmt_time(s['p90'])} / {c.fmt_time(s['max'])}",
              "the page at hand drawn again, in the page; the rest is the round trip through JupyterLab and the kernel")
    for word, label in (("answer", "in every sample"), ("zebra", f"1 sample per {synthetic.RARE_EVERY} steps"),
                        ("quokka", "absent")):
        s = data["search"][word]
        table.add(f"search {word!r} ({label}): first page", c.fmt_time(s["first_s"]["median"]),
                  f"{c.fmt_time(s['first_s']['p90'])} / {c.fmt_time(s['first_s']['max'])}",
                  f"then: {s['first_progress']!r}; done in {c.fmt_time(s['whole_s']['median'])}: {s['final']!r}")
    s = data["step_during_search_s"]
    table.add("switch step while a search of every step goes on", c.fmt_time(s["median"]),
              f"{c.fmt_time(s['p90'])} / {c.fmt_time(s['max'])}",
              f"answered between the search's slices; the search still running then: {data['step_during_search_done'] != 'true'}")
    checks = c.Checks()
    checks.add("opening the tab", data["open_s"], TARGET_OPEN_S, "s")
    checks.add("switching step (median, number / › / slider)",
               max(data[k]["median"] for k in ("step_number_s", "step_arrow_s", "step_slider_s")), TARGET_STEP_S, "s")
    checks.add("first page of a search (worst median of the three words)",
               max(s["first_s"]["median"] for s in data["search"].values()), TARGET_SEARCH_S, "s")
    c.write_results(NAME, args, [table], checks, data, started)
    return data


if __name__ == "__main__":
    main()
