"""Fixtures of the JupyterLab browser tests: one `jupyter lab` server and one chromium per session, a fresh page
(with its console errors collected) per test. The driving logic lives in `lab.py` (shared with screenshots.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import lab  # noqa: E402


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """A running `jupyter lab` (free port, random token, isolated user settings and workspaces)."""
    server = lab.LabServer(tmp_path_factory.mktemp("jupyterlab"))
    server.start()
    yield server
    server.stop()


# module scope: Playwright's sync API allows one running instance per thread, and other test folders
# (browser_harness, benchmarks) start their own
@pytest.fixture(scope="module")
def chromium_browser():
    from playwright.sync_api import sync_playwright

    if lab.chromium_path() is None:
        pytest.skip("Debian chromium is not installed")
    with sync_playwright() as playwright:
        browser = lab.launch_chromium(playwright)
        yield browser
        browser.close()


class LabPage:
    """A page in its own browser context, the server it talks to, and the page's console errors."""

    def __init__(self, page, server: lab.LabServer, console: lab.ConsoleLog) -> None:
        self.page = page
        self.server = server
        self.console = console
        self.url: str | None = None

    def write_notebook(self, name: str, cells: list[str]) -> str:
        return lab.write_notebook(self.server.root_dir, name, cells)

    def open(self, notebook: str, workspace: str | None = None) -> str:
        self.url = lab.open_notebook(self.page, self.server, notebook, workspace)
        return self.url

    def run_all(self, wait: bool = True, timeout: float = 90):
        lab.run_all_cells(self.page)
        return lab.wait_for_cells_done(self.page, timeout) if wait else None

    def save_and_reload(self, notebook: str) -> None:
        """Save the notebook (its widget-view outputs are what JupyterLab re-creates the views from), reload the
        tab and re-open the notebook if Lab did not restore it; console errors from before are forgotten."""
        lab.save_notebook(self.page)
        self.console.clear()
        self.page.reload(wait_until="domcontentloaded")
        lab.wait_for_lab(self.page)
        if not self.page.query_selector(".jp-NotebookPanel"):
            self.open(notebook)

    def wait_until(self, predicate, timeout: float, what: str, interval: float = 0.1):
        return lab.wait_until(predicate, timeout, what, interval)

    def view(self, selector: str):
        return lab.view_state(self.page, selector)

    def step(self, selector: str):
        return lab.current_step(self.page, selector)

    def set_theme(self, theme: str) -> None:
        lab.set_theme(self.page, theme)

    def assert_no_console_errors(self) -> None:
        assert not self.console.errors, "console errors:\n" + "\n".join(self.console.errors)


@pytest.fixture
def lab_page(lab_server, chromium_browser, request):
    if not lab.BUNDLE.exists():
        pytest.fail(f"the front-end bundle {lab.BUNDLE} is missing: run `npm run build` in js/ (make js)")
    context, page, console = lab.new_page(chromium_browser)
    helper = LabPage(page, lab_server, console)
    yield helper
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        out = Path(lab_server.base) / f"{request.node.name}.png"
        try:
            page.screenshot(path=str(out))
            print(f"screenshot of the failure: {out}\nserver log tail:\n{lab_server.log_tail(30)}")
            print("browser console (last 40):\n" + "\n".join(console.messages[-40:]))
            print("console errors:\n" + "\n".join(console.errors))
        except Exception:  # noqa: BLE001 - best effort
            pass
    context.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
