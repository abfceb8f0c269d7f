"""Drive a real JupyterLab in Debian chromium: start a server, open notebooks, run cells, wait for the DOM.

Used by the pytest fixtures in `conftest.py` and by `screenshots.py` (run as a script), so nothing here
depends on pytest.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from helpers import wait_until as _wait_until  # noqa: E402  (the tests' one polling helper)

VENV_BIN = Path(sys.executable).parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

# selectors of the widget's DOM (js/src/view.ts, header.ts, alerts.ts, charts.ts)
ROOT = ".rldk-root"
NOTEBOOK_ROOT = f".jp-NotebookPanel {ROOT}"
SIDEBAR_ROOT = f"#jp-right-stack .jupyterlab-sidecar {ROOT}"
BUNDLE = REPO / "rldk_widget" / "static" / "widget.js"


def chromium_path() -> str | None:
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call `predicate` until it returns something truthy; raise TimeoutError naming `what` otherwise. While the page
    changes under it (navigation, a view not rendered yet) a predicate may raise: that counts as "not yet" and the
    last error is named on timeout; an AssertionError (a failed cell, a failed check) is raised at once."""
    return _wait_until(predicate, timeout, what, interval, retry_on=(Exception,))


# ---- the server ----------------------------------------------------------------------------------------------
class LabServer:
    """`jupyter lab` (or, with app="notebook", Notebook 7's `jupyter notebook`) on 127.0.0.1 with a random
    token, its own root dir and its own user settings."""

    def __init__(self, base: Path | None = None, app: str = "lab") -> None:
        if app not in ("lab", "notebook"):
            raise ValueError(f"app must be 'lab' or 'notebook', got {app!r}")
        self.app = app
        self._own_base = base is None
        self.base = Path(base) if base is not None else Path(tempfile.mkdtemp(prefix="rldk-lab-"))
        self.root_dir = self.base / "root"
        self.settings_dir = self.base / "lab-settings"
        self.workspaces_dir = self.base / "lab-workspaces"
        self.config_dir = self.base / "jupyter-config"
        self.log_path = self.base / "jupyter-lab.log"
        for path in (self.root_dir, self.settings_dir, self.workspaces_dir, self.config_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_settings(self) -> None:
        # no "Would you like to get notified about official Jupyter news?" toast over the page
        notification = self.settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True, exist_ok=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # the kernel inherits this: rldk_widget imports from the repo whether or not it is pip-installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env["PATH"] = os.pathsep.join((str(VENV_BIN), env.get("PATH", "")))
        env["JUPYTERLAB_SETTINGS_DIR"] = str(self.settings_dir)
        env["JUPYTERLAB_WORKSPACES_DIR"] = str(self.workspaces_dir)
        env["JUPYTER_CONFIG_DIR"] = str(self.config_dir)
        env["IPYTHONDIR"] = str(self.base / "ipython")
        env.pop("JUPYTER_TOKEN", None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, timeout: float = 90) -> "LabServer":
        self._write_settings()
        jupyter = VENV_BIN / "jupyter"
        cmd = [
            str(jupyter) if jupyter.exists() else "jupyter",
            self.app,
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
        ]
        if self.app == "lab":
            cmd += ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url="]
        else:
            cmd += ["--JupyterNotebookApp.expose_app_in_browser=True"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=self.root_dir, env=self._env(), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(self._ready, timeout, f"jupyter {self.app} on port {self.port}", interval=0.25)
        except Exception:
            self.stop()
            raise RuntimeError(f"jupyter {self.app} did not start; log:\n{self.log_tail()}") from None
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"jupyter {self.app} exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def api(self, path: str) -> Any:
        sep = "&" if "?" in path else "?"
        with urllib.request.urlopen(f"{self.url}{path}{sep}token={self.token}", timeout=10) as resp:
            return json.loads(resp.read())

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            # the server's process group: jupyter lab and the kernels it started
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if proc is not None:
            # kernels left in the group after the server exited
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "LabServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()


# ---- the browser ---------------------------------------------------------------------------------------------
def launch_chromium(playwright: Any) -> Any:
    path = chromium_path()
    if path is None:
        raise RuntimeError("Debian chromium is not installed (make chromium)")
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)


class ConsoleLog:
    """Console errors and uncaught page errors of one page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.messages: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", self._on_pageerror)

    def _on_console(self, msg: Any) -> None:
        text = f"{msg.type}: {msg.text}"
        self.messages.append(text)
        if msg.type == "error":
            loc = msg.location or {}
            self.errors.append(f"console.error: {msg.text} ({loc.get('url', '')}:{loc.get('lineNumber', '')})")

    def _on_pageerror(self, err: Any) -> None:
        self.errors.append(f"pageerror: {err}")

    def clear(self) -> None:
        self.errors.clear()
        self.messages.clear()


def new_page(browser: Any, viewport: dict[str, int] | None = None) -> tuple[Any, Any, ConsoleLog]:
    context = browser.new_context(viewport=viewport or VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("dialog", lambda dialog: dialog.accept())
    return context, page, ConsoleLog(page)


# ---- notebooks -----------------------------------------------------------------------------------------------
def write_notebook(root_dir: Path, name: str, cells: Iterable[str]) -> str:
    """Write `name`.ipynb of code cells into the server's root dir; return its path relative to the root."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    filename = name if name.endswith(".ipynb") else f"{name}.ipynb"
    nbformat.write(nb, str(Path(root_dir) / filename))
    return filename


_NOTEBOOK_JS = """() => {
  const app = window.jupyterapp;
  if (!app) return null;
  const isNb = (w) => w && w.content && w.sessionContext && w.content.widgets && w.context;
  if (isNb(app.shell.currentWidget)) return app.shell.currentWidget;
  for (const w of app.shell.widgets('main')) if (isNb(w)) return w;
  return null;
}"""

KERNEL_STATE_JS = """() => {
  const w = (%s)();
  if (!w) return {ready: false, status: 'no notebook'};
  const sc = w.sessionContext;
  const kernel = sc.session && sc.session.kernel;
  return {ready: sc.isReady, status: kernel ? kernel.status : 'no kernel',
          connection: kernel ? kernel.connectionStatus : 'none'};
}""" % _NOTEBOOK_JS

CELLS_STATE_JS = """() => {
  const w = (%s)();
  if (!w) return null;
  const cells = w.content.widgets.filter((c) => c.model.type === 'code');
  const sc = w.sessionContext;
  const kernel = sc.session && sc.session.kernel;
  return {
    status: kernel ? kernel.status : 'no kernel',
    counts: cells.map((c) => c.model.executionCount),
    pending: cells.map((c) => c.node.querySelector('.jp-InputPrompt') ? c.node.querySelector('.jp-InputPrompt').textContent : ''),
    errors: cells.flatMap((c, i) => c.model.outputs.toJSON()
      .filter((o) => o.output_type === 'error')
      .map((o) => `cell ${i}: ${o.ename}: ${o.evalue}\\n${(o.traceback || []).join('\\n')}`)),
  };
}""" % _NOTEBOOK_JS


def workspace_url(server: LabServer, notebook: str, workspace: str | None = None) -> str:
    """JupyterLab: the notebook in a fresh (or the given) workspace. Notebook 7: the notebook's own page."""
    if server.app == "notebook":
        return f"{server.url}/notebooks/{notebook}?token={server.token}"
    workspace = workspace or f"rldk-{uuid.uuid4().hex[:10]}"
    return f"{server.url}/lab/workspaces/{workspace}/tree/{notebook}?token={server.token}"


def wait_for_lab(page: Any, timeout: float = 60) -> None:
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined", timeout=timeout * 1000)
    page.evaluate("() => window.jupyterapp.started")
    page.evaluate("() => window.jupyterapp.restored")


def wait_for_kernel_idle(page: Any, timeout: float = 60) -> None:
    page.wait_for_function(
        """() => { const s = (%s)(); return s.ready && s.status === 'idle' && s.connection === 'connected'; }"""
        % KERNEL_STATE_JS,
        timeout=timeout * 1000,
        polling=100,
    )


def open_notebook(page: Any, server: LabServer, notebook: str, workspace: str | None = None, timeout: float = 90) -> str:
    """Open `notebook` in a fresh (or the given) workspace and wait for an idle kernel; return the URL."""
    url = workspace_url(server, notebook, workspace)
    page.goto(url, wait_until="domcontentloaded")
    wait_for_lab(page, timeout)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout * 1000)
    wait_for_kernel_idle(page, timeout)
    return url


def execute_command(page: Any, command: str, args: dict[str, Any] | None = None) -> Any:
    return page.evaluate(
        "([c, a]) => window.jupyterapp.commands.execute(c, a).then(() => true)", [command, args or {}]
    )


def run_all_cells(page: Any) -> None:
    # select the notebook panel first: run-all acts on the current notebook
    page.evaluate("() => { const w = (%s)(); if (w) window.jupyterapp.shell.activateById(w.id); }" % _NOTEBOOK_JS)
    # fire and forget: the command's promise resolves only when every cell has run, and the tests watch the
    # views while the cells still stream data
    page.evaluate(
        """() => { window.__rldkRunAll = window.jupyterapp.commands.execute('notebook:run-all-cells')
                     .then(() => 'done', (e) => 'failed: ' + e); return true; }"""
    )


def run_cell(page: Any, index: int) -> None:
    """Queue code cell `index` (0-based among all cells) for execution; does not wait for it."""
    page.evaluate(
        """(i) => { const w = (%s)(); window.jupyterapp.shell.activateById(w.id);
                    w.content.activeCellIndex = i; w.content.deselectAll();
                    window.jupyterapp.commands.execute('notebook:run-cell'); return true; }""" % _NOTEBOOK_JS,
        index,
    )


def cells_state(page: Any) -> dict[str, Any] | None:
    return page.evaluate(CELLS_STATE_JS)


def wait_for_cells_done(page: Any, timeout: float = 90, count: int | None = None) -> dict[str, Any]:
    """Wait until every code cell (the first `count` ones) has an execution count and the kernel is idle;
    raise on an error output."""

    def done() -> dict[str, Any] | None:
        state = cells_state(page)
        if state is None:
            return None
        if state["errors"]:
            raise AssertionError("a notebook cell raised:\n" + "\n\n".join(state["errors"]))
        if state["status"] == "idle" and all(c is not None for c in state["counts"][:count]):
            return state
        return None

    try:
        return wait_until(done, timeout, "all notebook cells to finish", interval=0.2)
    except TimeoutError as err:
        raise TimeoutError(f"{err}; cells: {cells_state(page)}") from None


def execute_code(page: Any, code: str, timeout: float = 60) -> dict[str, Any]:
    """Run `code` in the current notebook's kernel (not in a cell); return the execute_reply content."""
    reply = page.evaluate(
        """async (code) => {
          const w = (%s)();
          const future = w.sessionContext.session.kernel.requestExecute({code, store_history: false});
          const errors = [];
          future.onIOPub = (msg) => { if (msg.header.msg_type === 'error') errors.push(msg.content); };
          const reply = await future.done;
          return {status: reply.content.status, ename: reply.content.ename, evalue: reply.content.evalue, errors};
        }""" % _NOTEBOOK_JS,
        code,
    )
    if reply["status"] != "ok":
        raise AssertionError(f"kernel code failed: {reply}")
    return reply


def save_notebook(page: Any) -> None:
    execute_command(page, "docmanager:save")
    page.wait_for_function(
        "() => { const w = (%s)(); return w && !w.context.model.dirty; }" % _NOTEBOOK_JS, timeout=20_000
    )


def set_theme(page: Any, theme: str) -> None:
    """'JupyterLab Light' or 'JupyterLab Dark'; waits until <body> says the theme is applied."""
    execute_command(page, "apputils:change-theme", {"theme": theme})
    page.wait_for_function(
        "(t) => document.body.dataset.jpThemeName === t", arg=theme, timeout=20_000
    )
    next_frames(page)  # the view's MutationObserver redraws the charts on the next frame


def next_frames(page: Any, frames: int = 2) -> None:
    """Return once the page has drawn `frames` more animation frames."""
    page.evaluate(
        """(n) => new Promise((resolve) => { const tick = () => (n-- > 0 ? requestAnimationFrame(tick) : resolve(true));
                                            tick(); })""",
        frames,
    )


_SETTLE_JS = """async (selector) => {
  // Until every <img> and <iframe> under the elements `selector` matches (the page if null) has finished loading
  // or failing: an image's error event is fired in the same task that marks it complete, so an injected
  // `<img src=x onerror=...>` has run its handler by then. Then two frames and one task, for what the view draws
  // or dispatches next.
  const roots = selector ? [...document.querySelectorAll(selector)] : [document];
  const pending = () => roots.some((root) =>
    [...root.querySelectorAll('img')].some((img) => !img.complete) ||
    [...root.querySelectorAll('iframe')].some((frame) => {
      try { return frame.contentDocument !== null && frame.contentDocument.readyState !== 'complete'; }
      catch (err) { return false; }  // cross-origin: it cannot reach this page's window either
    }));
  const deadline = performance.now() + 20000;
  while (pending() && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  await new Promise((resolve) => setTimeout(resolve, 0));
  return !pending();
}"""


_DATA_POINT_JS = """(gd) => {
  // the page position of a finite point of the chart's first line (the middle one), from plotly's own axes
  const trace = gd.data.find((t) => t.x && t.x.length && !(t.line && t.line.width === 0));
  if (!trace) return null;
  const finite = [...trace.y.keys()].filter((i) => Number.isFinite(Number(trace.y[i])));
  if (!finite.length) return null;
  const i = finite[Math.floor(finite.length / 2)];
  const {xaxis, yaxis} = gd._fullLayout;
  const box = gd.getBoundingClientRect();
  return {x: box.left + xaxis._offset + xaxis.l2p(xaxis.d2l(trace.x[i])),
          y: box.top + yaxis._offset + yaxis.l2p(yaxis.d2l(trace.y[i]))};
}"""


def hover_data_point(page: Any, plot: Any, timeout_ms: float = 10_000) -> str:
    """Move the mouse onto a data point of `plot` (a locator of a `.rldk-plot`) and wait until plotly has drawn its
    hover label; return the label's text. (Anywhere else plotly may draw no label at all.)"""
    point = plot.evaluate(_DATA_POINT_JS)
    if point is None:
        raise AssertionError("the chart has no finite point to hover")
    page.mouse.move(point["x"], point["y"])
    label = plot.locator(".hoverlayer .legend, .hoverlayer .hovertext").first
    label.wait_for(state="attached", timeout=timeout_ms)
    return label.text_content() or ""


def settle_injected_handlers(page: Any, selector: str | None = None) -> None:
    """Before checking that no script from data ran: wait until every image and frame under `selector` (the whole
    page if None) has loaded or failed (an injected `<img src=x onerror>` has run its handler by then) and two
    frames were drawn — a condition, not a delay."""
    if not page.evaluate(_SETTLE_JS, selector):
        raise AssertionError(f"images or frames under {selector or 'the page'} still loading after 20 s")


# ---- the widget's DOM ----------------------------------------------------------------------------------------
# The header's current step: the first value of the tile labelled "step" (its own text, without the " / max"
# suffix and the progress bar).
STEP_FN = """(root) => {
  const tile = [...root.querySelectorAll('.rldk-tile')].find((t) => {
    const label = t.querySelector('.rldk-tile-label');
    return label && label.textContent.trim().toLowerCase() === 'step';
  });
  const val = tile && tile.querySelector('.rldk-tile-val');
  if (!val) return null;
  return [...val.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.data).join('').trim();
}"""

VIEW_STATE_JS = """(sel) => {
  const root = document.querySelector(sel);
  if (!root) return null;
  const text = (q) => { const n = root.querySelector(q); return n ? n.textContent : null; };
  const stepOf = %s;
  const charts = [...root.querySelectorAll('.rldk-chart')].map((box) => {
    const plot = box.querySelector('.rldk-plot');
    const data = (plot && plot.data) || [];
    const lines = data.filter((t) => !(t.line && t.line.width === 0) && t.x);
    const paths = plot ? [...plot.querySelectorAll('.scatterlayer .trace path.js-line')] : [];
    const vertices = paths.map((p) => ((p.getAttribute('d') || '').match(/[ML]/g) || []).length);
    const lastX = lines.length && lines[0].x.length ? Number(lines[0].x[lines[0].x.length - 1]) : null;
    return {
      title: box.querySelector('.rldk-chart-title') ? box.querySelector('.rldk-chart-title').textContent : null,
      points: lines.length ? lines[0].x.length : 0,
      lastX,
      vertices,
      width: plot ? plot.clientWidth : 0,
      height: plot ? plot.clientHeight : 0,
      svgWidth: plot && plot.querySelector('svg.main-svg') ? Number(plot.querySelector('svg.main-svg').getAttribute('width')) : null,
      svgHeight: plot && plot.querySelector('svg.main-svg') ? Number(plot.querySelector('svg.main-svg').getAttribute('height')) : null,
    };
  });
  return {
    step: stepOf(root),
    header: text('.rldk-header'),
    badge: text('.rldk-badge'),
    alertMsgs: [...root.querySelectorAll('.rldk-alert-msg')].map((n) => n.textContent),
    alertHTML: [...root.querySelectorAll('.rldk-alert-msg')].map((n) => n.innerHTML),
    imgs: root.querySelectorAll('img').length,
    charts,
    width: root.clientWidth,
    height: root.clientHeight,
    text: root.textContent.slice(0, 400),
  };
}""" % STEP_FN


def view_state(page: Any, selector: str) -> dict[str, Any] | None:
    return page.evaluate(VIEW_STATE_JS, selector)


def current_step(page: Any, selector: str) -> str | None:
    """The number in the header's step tile ('199'; ' / max' suffix stripped)."""
    return page.evaluate(
        "(sel) => { const root = document.querySelector(sel); return root ? (%s)(root) : null; }" % STEP_FN,
        selector,
    )


def show_tab(page: Any, selector: str, tab: str) -> None:
    """Click a tab of the view ('charts', 'alerts', 'ppo', 'ckpt')."""
    page.locator(f"{selector} button.rldk-tab[data-tab='{tab}']").first.click()
    page.wait_for_function(
        "([sel, tab]) => { const b = document.querySelector(sel + ` button.rldk-tab[data-tab='${tab}']`);"
        " return b && b.getAttribute('aria-selected') === 'true'; }",
        arg=[selector, tab],
    )


def bundle_missing_text(page: Any) -> bool:
    return bool(page.evaluate("() => document.body.textContent.includes('the front-end bundle is missing')"))
