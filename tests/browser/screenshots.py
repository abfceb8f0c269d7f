"""Screenshots of RLDKDashboard in JupyterLab (Debian chromium): light and dark theme, inline and in the sidebar.

    python tests/browser/screenshots.py [--out docs/screenshots] [--only all|runs|samples]

Writes {light,dark}_inline.png (the widget in its cell), {light,dark}_sidebar.png (the whole window, the
widget in JupyterLab's right sidebar) and {light,dark}_alerts.png (the inline widget on its Alerts tab), for a
GRPO-like run of 300 steps (of 500) with three alerts; {light,dark}_runs.png, the Runs tab of a sweep of 300
runs (tests/browser/sweeps.py) with eight of them on the charts (sorted first), coloured by learning rate, one row
pointed at; and {light,dark}_samples.png, the Samples tab of a real run trained in the kernel — the tiny offline
Llama of rldk_widget.demo_models under GRPO (run id tiny-llama-grpo-demo), its completions recorded by
`dash.callback(trainer=trainer)` — with one sample opened. `--only runs` / `--only samples` makes those two only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402
import sweeps  # noqa: E402

VIEWPORT = {"width": 1500, "height": 1150}
RUN_ID = "synthetic-grpo"
"""The hero pictures show synthetic GRPO-shaped data (DATA_CELL): named so, and their alerts are the dashboard's own."""

SETUP_CELL = """\
import math, random, time
from rldk_widget import RLDKDashboard

dash = RLDKDashboard(output_dir={output_dir!r}, run_id={run_id!r}, auto_refresh=False)
dash"""

DATA_CELL = """\
# synthetic GRPO-shaped data: 300 of 500 steps, one every ~2.4 s, a KL excursion and a grad-norm spike; the alerts
# are the dashboard's own health checks on it
dash.set_run_info({run_id!r}, max_steps=500, trainer_kind="grpo")  # what RLDKCallback reports on_train_begin
rng = random.Random(7)
t0 = time.time() - 300 * 2.4 - 3
records = []
for step in range(300):
    progress = step / 300
    warmup = min(1.0, (step + 1) / 30)
    reward = 0.15 + 0.55 * (1 - math.exp(-step / 110)) + rng.gauss(0, 0.045)
    records.append({{
        "step": step,
        "timestamp": t0 + step * 2.4 + rng.uniform(-0.3, 0.3),
        "reward_mean": reward,
        "reward_std": max(0.02, 0.32 - 0.18 * progress + rng.gauss(0, 0.02)),
        "kl_mean": max(0.0, 0.11 * (1 - math.exp(-step / 90)) + rng.gauss(0, 0.006) + (0.2 if 175 <= step <= 190 else 0)),
        "loss": 0.02 * math.sin(step / 13) + rng.gauss(0, 0.012) + 0.01 * progress,
        "entropy_mean": 1.9 - 0.9 * progress + rng.gauss(0, 0.03),
        "grad_norm": abs(0.8 + 0.35 * math.sin(step / 21) + rng.gauss(0, 0.15)) + (11.0 if step == 261 else 0),
        "learning_rate": 1e-6 * warmup * (1 - 0.5 * progress),
        "clip_frac": max(0.0, 0.04 + 0.02 * math.sin(step / 30) + rng.gauss(0, 0.005)),
        "completions/mean_length": 180 + 140 * progress + rng.gauss(0, 12),
    }})
dash.add_metrics(records)
dash.flush()"""

SIDEBAR_CELL = "dash.show(sidebar=True)"

THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}


def settle(page, selector: str) -> None:
    """Wait until the view shows step 299 and its charts are drawn, then let plotly finish."""
    lab.wait_until(lambda: lab.current_step(page, selector) == "299", 30, f"{selector} to show step 299")
    lab.wait_until(
        lambda: all(c["points"] == 300 for c in lab.view_state(page, selector)["charts"]),
        30,
        f"{selector} charts to be drawn",
    )
    page.wait_for_timeout(600)


def take(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with lab.LabServer() as server, sync_playwright() as playwright:
        notebook = lab.write_notebook(
            server.root_dir,
            "dashboard",
            [
                SETUP_CELL.format(output_dir=str(server.base / "runs"), run_id=RUN_ID),
                DATA_CELL.format(run_id=RUN_ID),
                SIDEBAR_CELL,
            ],
        )
        browser = lab.launch_chromium(playwright)
        try:
            context, page, console = lab.new_page(browser, VIEWPORT)
            lab.open_notebook(page, server, notebook)
            lab.run_all_cells(page)
            lab.wait_for_cells_done(page, 90)
            # more room for the notebook: close the file browser
            page.evaluate(
                "() => { const s = window.jupyterapp.shell; if (!s.leftCollapsed) s.collapseLeft(); }"
            )
            for name, theme in THEMES.items():
                lab.set_theme(page, theme)
                for selector in (lab.NOTEBOOK_ROOT, lab.SIDEBAR_ROOT):
                    settle(page, selector)
                inline = page.locator(lab.NOTEBOOK_ROOT).first
                inline.scroll_into_view_if_needed()
                page.wait_for_timeout(300)
                path = out / f"{name}_inline.png"
                inline.screenshot(path=str(path))
                written.append(path)

                path = out / f"{name}_sidebar.png"
                page.screenshot(path=str(path))
                written.append(path)

                lab.show_tab(page, lab.NOTEBOOK_ROOT, "alerts")
                page.wait_for_timeout(300)
                path = out / f"{name}_alerts.png"
                inline.screenshot(path=str(path))
                written.append(path)
                lab.show_tab(page, lab.NOTEBOOK_ROOT, "charts")
            if console.errors:
                print("console errors:\n  " + "\n  ".join(console.errors), file=sys.stderr)
            context.close()
        finally:
            browser.close()
    return written


RUNS_CELL = """\
from rldk_widget import RLDKDashboard

dash = RLDKDashboard.from_dir({folder!r}, auto_refresh=False)
dash.select({runs!r})
dash"""
RUNS_SHOWN = [f"ours_{i:03d}" for i in (0, 2, 4, 6, 8, 12, 14, 16)]
"""learning rates 1e-6 … 1e-4, betas 0 … 0.1"""
POINTED_AT = "ours_004"


def take_runs(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    root = lab.NOTEBOOK_ROOT
    with lab.LabServer() as server, sync_playwright() as playwright:
        folder = server.base / "sweep"
        sweeps.write_sweep(folder, 300, hostile=False)
        notebook = lab.write_notebook(server.root_dir, "sweep", [RUNS_CELL.format(folder=str(folder), runs=RUNS_SHOWN)])
        browser = lab.launch_chromium(playwright)
        try:
            # tall enough for the whole widget: a screenshot that scrolls would move another row under the pointer
            context, page, console = lab.new_page(browser, {"width": VIEWPORT["width"], "height": 1750})
            lab.open_notebook(page, server, notebook)
            lab.run_all_cells(page)
            lab.wait_for_cells_done(page, 90)
            page.evaluate("() => { const s = window.jupyterapp.shell; if (!s.leftCollapsed) s.collapseLeft(); }")
            page.locator(f"{root} .rldk-runs-row").first.wait_for()
            page.locator(f"{root} .rldk-runs-hcell[data-key='__selected']").click()  # the runs on the charts first
            page.locator(f"{root} .rldk-runs-tools select").select_option("args.learning_rate")
            for name, theme in THEMES.items():
                page.mouse.move(5, 5)
                lab.set_theme(page, theme)
                lab.wait_until(
                    lambda: all(len(c["vertices"]) >= 2 * len(RUNS_SHOWN) for c in lab.view_state(page, root)["charts"]),
                    30, "the charts of the selected runs",
                )
                page.locator(f"{root} .rldk-runs-row[data-run='{POINTED_AT}'] .rldk-runs-name").hover()
                page.wait_for_timeout(800)
                inline = page.locator(root).first
                path = out / f"{name}_runs.png"
                inline.screenshot(path=str(path))
                written.append(path)
            if console.errors:
                print("console errors:\n  " + "\n  ".join(console.errors), file=sys.stderr)
            context.close()
        finally:
            browser.close()
    return written


SAMPLES_RUN_ID = "tiny-llama-grpo-demo"

SAMPLES_SETUP = """\
import sys, tempfile
from pathlib import Path
sys.path.insert(0, {browser_dir!r})
import samples_run
import trl.trainer.grpo_trainer as grpo
grpo.print_prompt_completions_sample = lambda *args, **kwargs: None  # TRL's rich tables of log_completions
from rldk_widget import RLDKDashboard
work = Path(tempfile.mkdtemp(prefix="samples_demo_"))
dash = RLDKDashboard(output_dir=work / "logs", run_id={run_id!r}, auto_refresh=False)
dash"""

SAMPLES_TRAIN = """\
# a real GRPO run of the tiny offline Llama (2 layers, hidden 32, random weights): its completions are noise
trainer = samples_run.make_trainer(work, work / "logs", {run_id!r}, dash, max_steps=24, hostile_steps=(), prompts=6,
                                   per_device_train_batch_size=12, num_generations=4, max_completion_length=12)
trainer.train()
dash.flush()"""


def take_samples(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    panel = f"{lab.NOTEBOOK_ROOT} .rldk-samples"
    with lab.LabServer() as server, sync_playwright() as playwright:
        notebook = lab.write_notebook(
            server.root_dir,
            "samples",
            [
                SAMPLES_SETUP.format(browser_dir=str(Path(__file__).resolve().parent), run_id=SAMPLES_RUN_ID),
                SAMPLES_TRAIN.format(run_id=SAMPLES_RUN_ID),
            ],
        )
        browser = lab.launch_chromium(playwright)
        try:
            context, page, console = lab.new_page(browser, {"width": 1400, "height": 1300})
            lab.open_notebook(page, server, notebook)
            lab.run_all_cells(page)
            lab.wait_for_cells_done(page, 180)
            page.evaluate("() => { const s = window.jupyterapp.shell; if (!s.leftCollapsed) s.collapseLeft(); }")
            lab.show_tab(page, lab.NOTEBOOK_ROOT, "samples")
            body = f"{panel} .rldk-samples-body"
            page.wait_for_function(
                "(sel) => { const b = document.querySelector(sel); return b && b.dataset.state === 'ready'"
                " && b.dataset.step === '24'; }", arg=body, timeout=60_000)
            page.locator(f"{panel} tr.rldk-sample-row").nth(1).click()
            page.locator(f"{panel} .rldk-detail-facts").wait_for()
            for name, theme in THEMES.items():
                lab.set_theme(page, theme)
                page.wait_for_timeout(500)
                inline = page.locator(lab.NOTEBOOK_ROOT).first
                inline.scroll_into_view_if_needed()
                path = out / f"{name}_samples.png"
                inline.screenshot(path=str(path))
                written.append(path)
            if console.errors:
                print("console errors:\n  " + "\n  ".join(console.errors), file=sys.stderr)
            context.close()
        finally:
            browser.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=lab.REPO / "docs" / "screenshots")
    parser.add_argument("--only", choices=("all", "runs", "samples"), default="all")
    args = parser.parse_args()
    if lab.chromium_path() is None:
        print("Debian chromium is not installed (make chromium)", file=sys.stderr)
        return 2
    if not lab.BUNDLE.exists():
        print(f"the front-end bundle {lab.BUNDLE} is missing: run `npm run build` in js/", file=sys.stderr)
        return 2
    started = time.monotonic()
    takers = {"all": (take, take_runs, take_samples), "runs": (take_runs,), "samples": (take_samples,)}[args.only]
    for path in [path for taker in takers for path in taker(args.out)]:
        print(path)
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
