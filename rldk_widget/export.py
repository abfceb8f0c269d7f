"""Static export: one self-contained HTML file that renders the dashboard's view with no kernel and no network.

The page carries the widget's front-end bundle and a snapshot of its traits as JSON, and runs the bundle against
a read-only stand-in for the anywidget model. Every `<` in the embedded JSON is written as `\\u003c`, so no text
from the data (alert messages, metric names) can close the script element or become markup.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Mapping

import orjson

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ margin: 16px; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: #fff; }}
  #rldk-export-note {{ color: #666; font-size: 12px; margin: 0 0 8px; }}
</style>
</head>
<body>
<p id="rldk-export-note">{note}</p>
<div id="rldk-root"></div>
<script type="application/json" id="rldk-state">{state}</script>
<script type="application/json" id="rldk-bundle">{bundle}</script>
<script type="module">
const read = (id) => JSON.parse(document.getElementById(id).textContent);
const state = read("rldk-state");
const source = read("rldk-bundle");
const url = URL.createObjectURL(new Blob([source], {{ type: "text/javascript" }}));
const widget = (await import(url)).default;
URL.revokeObjectURL(url);
// a read-only stand-in for the anywidget model: the traits never change and messages go nowhere
const model = {{
  get: (key) => state[key],
  set() {{}},
  save_changes() {{}},
  send() {{}},
  rldkNoKernel: true,  // the Samples tab shows the saved pages at once instead of waiting for a reply
  on() {{}},
  off() {{}},
  widget_manager: {{}},
}};
if (widget.initialize) await widget.initialize({{ model }});
await widget.render({{ model, el: document.getElementById("rldk-root") }});
</script>
</body>
</html>
"""


def _script_json(value: Any) -> str:
    """JSON safe to place inside a <script> element (no `<`, hence no `</script>` or `<!--`)."""
    return orjson.dumps(value).decode("utf-8").replace("<", "\\u003c")


def write_html(
    path: str | os.PathLike[str], bundle: str, traits: Mapping[str, Any], title: str, note: str
) -> Path:
    """Write the page to `path` (parents created) and return its resolved path."""
    page = _PAGE.format(
        title=html.escape(title),
        note=html.escape(note),
        state=_script_json(dict(traits)),
        bundle=_script_json(bundle),
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target.resolve()
