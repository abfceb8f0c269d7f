"""The dashboard as a static picture: a PNG of its charts (matplotlib Agg, no browser) and a script-free HTML summary
of its header tiles and newest alerts, for the places a live widget cannot show (GitHub, nbconvert, nbviewer, VS Code
without a kernel, a notebook reopened after its kernel is gone).

What it draws follows the live view (js/src/view.ts, charts.ts, header.ts): the default charts of the trainer kind
(`trl_keys.default_charts`) that were logged, one colour per run from the same palette, EMA smoothing 0.6 (debiased,
over every point, non-finite values skipped) drawn over the faint raw line, a ±std band where `<x>_mean` has an
`<x>_std`, and alert markers at their steps on the chart of their metric. It is bounded whatever the run: at most
`MAX_RUNS` runs and `MAX_CHARTS` charts, each line decimated (`series.decimate`: first, last, minima, maxima and NaN
kept), a fixed figure size and dpi, and a PNG re-encoded with fewer colours until it fits `MAX_PNG_BYTES`.

Two steps: a copy of what is drawn (cheap, safe while the series grow), then the CPU work on the copy, which
touches nothing shared and can run on any thread:

    data = StaticData.collect(runs, run_order, charts, alerts, info, status)   # ~2 ms per million points
    picture = render(data, theme="light")                                      # picture.png, picture.html

`render_static_view(...)` does both. Every text from the data (run ids, metric names, alert texts, trainer kinds) is
capped in length, stripped of control and bidirectional-override characters, and HTML-escaped; in the PNG it is drawn
by Pillow as plain text (no math text, no TeX). Rendering never touches pyplot, the user's figures or rcParams: the
lines are matplotlib artists with every style given, in pixel coordinates, on a Figure of their own (no Axes).
"""

from __future__ import annotations

import base64
import functools
import html
import io
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .run_colors import PALETTE
from .run_colors import colour_slots as run_colour_slots
from .series import RunSeries, decimate

SMOOTHING = 0.6
"""js/src/view.ts DEFAULT_SMOOTHING."""
MAX_RUNS = 10
"""Runs drawn (the first in the run order); the others are named as "+N more"."""
MAX_CHARTS = 12
"""Charts drawn at most (the longest default list, orpo's, has 12)."""
MAX_HEADER_RUNS = 6
"""Runs in the summary's tiles table (js/src/header.ts MAX_RUNS_SHOWN)."""
MAX_ALERTS_LISTED = 10
"""Newest alerts listed in the summary."""
MAX_ALERT_MARKERS = 400
"""Alert markers drawn per chart at most (the newest; at most one per pixel column and severity)."""
MAX_ALERTS_SCANNED = 20_000
"""Alerts looked at for markers and the list (the newest); the counts cover all of them."""
RAW_POINTS = 400
"""Points per raw line (min/max decimation; the live view's ~200 buckets behind a smoothed line)."""
SMOOTH_BUCKETS = 300
"""Bucket means per smoothed line (the live view's buckets for a ~320 px chart)."""
SPARSE_POINTS = 60
"""Series with at most this many points get markers (as in the live view)."""
COLUMNS = 3
DPI = 100
MAX_PNG_BYTES = 200_000
MAX_HTML_BYTES = 20_000
RATE_WINDOW = 20
"""Steps/s over the last this many timestamps (js/src/header.ts)."""
CAP_RUN_ID, CAP_METRIC, CAP_KIND, CAP_TYPE, CAP_MESSAGE, CAP_STATUS, CAP_EXTRA = 80, 80, 40, 60, 300, 400, 120
"""Characters kept of each kind of data text (longer ones end with "…")."""

SEVERITY_COLOURS = {"critical": "#cf222e", "warning": "#bf8700", "info": "#0969da"}
SEVERITIES = ("critical", "warning", "info")
_STANDARD_ALERT_KEYS = frozenset({"run_id", "type", "message", "step", "severity", "timestamp", "metric"})
_BAND_SIBLINGS = ((re.compile(r"_mean$"), "_std"), (re.compile(r"/mean$"), "/std"))
_PREFIXED = ("ppo:", "ckpt:")

THEMES: dict[str, dict[str, str]] = {
    "light": {"bg": "#ffffff", "fg": "#1f2328", "muted": "#59636e", "grid": "#e6e8eb", "spine": "#c8ccd1"},
    "dark": {"bg": "#1e1e1e", "fg": "#d4d4d4", "muted": "#a0a0a0", "grid": "#333538", "spine": "#55585c"},
}

# control characters (newline and tab become spaces), bidirectional overrides / isolates / marks, lone surrogates
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_render_lock = threading.Lock()


# ---- the data, copied ------------------------------------------------------------------------------------------
@dataclass
class RunData:
    run_id: str
    colour: str
    columns: dict[str, tuple[np.ndarray, np.ndarray]]
    """The drawn series and those the tiles read (copies, float64)."""
    last_step: float | None
    max_steps: int | None
    trainer: str | None


@dataclass
class StaticData:
    """What a static picture shows, copied out of the dashboard's live structures (see `collect`)."""

    runs: list[RunData]
    hidden_runs: int
    charts: list[str]
    alerts: list[dict[str, Any]]
    """Newest last; at most what can be listed or drawn (see `collect`)."""
    alert_count: int
    alert_counts: dict[str, int]
    status: dict[str, str]
    step: float | None
    run_count: int

    @classmethod
    def collect(
        cls,
        runs: Mapping[str, RunSeries],
        run_order: Sequence[str] | None = None,
        charts: Sequence[str] | None = None,
        alerts: Sequence[Mapping[str, Any]] = (),
        info: Mapping[str, Mapping[str, Any]] | None = None,
        status: Mapping[str, Any] | None = None,
        colour_slots: Mapping[str, int] | None = None,
    ) -> "StaticData":
        """Copy what is drawn out of `runs` (run id → RunSeries): a memcpy per drawn column (~2 ms per million
        points), safe while another thread appends to the series, no lock needed (array slices are copied in one C
        call under the GIL) — a series being replaced whole (a re-read file) can be seen half old, half new, until
        the next picture.

        `run_order`: the colour order (the `run_ids` trait); runs missing from it follow in mapping order.
        `charts`: the `default_charts` trait; empty or None → `trl_keys.default_charts` of the first run's trainer
        kind in `info`, as the dashboard sets the trait. Only logged names are drawn; if none of them is, the first
        six logged metrics. `alerts`: oldest first (the `alerts` trait). `info`: run id → {max_steps, trainer,
        started} (the `info` trait). `status`: {level, message}. `colour_slots`: run id → palette slot (the
        `run_colors` trait); a run without one gets the lowest slot no other run has, in order."""
        info = info or {}
        runs = dict(runs)
        order = [r for r in (run_order or []) if r in runs]
        order += [r for r in runs if r not in order]
        shown = order[:MAX_RUNS]
        slots = run_colour_slots(colour_slots or {}, shown)
        chosen = _choose_charts(runs, order, charts, info)
        wanted = set(chosen) | {"timestamp", "reward_mean", "kl_mean", "loss"}
        wanted |= {s for s in (_band_sibling(name) for name in chosen) if s}
        run_data = []
        for run_id in shown:
            series = runs[run_id]
            columns = {}
            for name, (xs, ys) in list(series.columns.items()):
                count = min(len(xs), len(ys))
                if name in wanted and count:
                    # array slices are copies made in one C call under the GIL: no buffer is exported, so a thread
                    # appending to the series meanwhile neither fails nor tears what is read
                    columns[name] = (np.frombuffer(xs[:count], dtype="f8"), np.frombuffer(ys[:count], dtype="f8"))
            entry = _info_of(info, run_id)
            max_steps = entry.get("max_steps")
            trainer = entry.get("trainer")
            run_data.append(RunData(
                run_id=str(run_id),
                colour=PALETTE[slots[run_id] % len(PALETTE)],
                columns=columns,
                last_step=_last_step(series),
                max_steps=max_steps if isinstance(max_steps, int) and not isinstance(max_steps, bool) and max_steps > 0
                else None,
                trainer=trainer if isinstance(trainer, str) else None,
            ))
        steps = [s for s in (_last_step(runs[r]) for r in order) if s is not None]
        counts = {severity: 0 for severity in SEVERITIES}
        for alert in alerts:
            severity = alert.get("severity") if isinstance(alert, Mapping) else None
            counts[severity if severity in counts else "warning"] += 1
        return cls(
            runs=run_data,
            hidden_runs=len(order) - len(shown),
            charts=chosen,
            alerts=_kept_alerts(alerts, set(shown), set(chosen)),
            alert_count=len(alerts),
            alert_counts=counts,
            status={"level": str((status or {}).get("level", "ok")), "message": str((status or {}).get("message", ""))},
            step=max(steps) if steps else None,
            run_count=len(order),
        )


def _info_of(info: Mapping[str, Any], run_id: str) -> Mapping[str, Any]:
    entry = info.get(run_id) if isinstance(info, Mapping) else None
    return entry if isinstance(entry, Mapping) else {}


def _last_step(series: RunSeries) -> float | None:
    """The header's step: the largest finite last step over the run's series (js/src/header.ts runStats)."""
    best = None
    for xs, _ys in list(series.columns.values()):
        if len(xs):
            x = xs[-1]
            if math.isfinite(x) and (best is None or x > best):
                best = x
    return best


def _choose_charts(runs: Mapping[str, RunSeries], order: Sequence[str], charts: Sequence[str] | None,
                   info: Mapping[str, Mapping[str, Any]]) -> list[str]:
    logged = {name for run in runs.values() for name, (xs, _) in list(run.columns.items()) if len(xs)}
    if not charts:
        from .trl_keys import default_charts

        kind = next((_info_of(info, r)["trainer"] for r in order if isinstance(_info_of(info, r).get("trainer"), str)),
                    None)
        charts = default_charts(kind)
    chosen = [name for name in dict.fromkeys(charts) if isinstance(name, str) and name in logged]
    if not chosen:
        chosen = sorted(n for n in logged if n != "timestamp" and not n.startswith(_PREFIXED))[:6]
    return chosen[:MAX_CHARTS]


def _kept_alerts(alerts: Sequence[Mapping[str, Any]], runs: set[str], charts: set[str]) -> list[dict[str, Any]]:
    """The newest alerts to list, plus the newest ones with a step to draw (at most MAX_ALERT_MARKERS per chart),
    in their original order; each reduced to the fields shown, texts capped. Only the newest MAX_ALERTS_SCANNED
    are looked at."""
    keep: dict[int, dict[str, Any]] = {}
    per_chart: dict[str, int] = {}
    listed = 0
    for index in range(len(alerts) - 1, max(-1, len(alerts) - 1 - MAX_ALERTS_SCANNED), -1):
        alert = alerts[index]
        if not isinstance(alert, Mapping):
            continue
        list_it = listed < MAX_ALERTS_LISTED
        listed += list_it
        step = alert.get("step")
        metric = alert.get("metric")
        target = metric if isinstance(metric, str) and metric in charts else "*"
        draw_it = (
            isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step)
            and alert.get("run_id") in runs and per_chart.get(target, 0) < MAX_ALERT_MARKERS
        )
        if draw_it:
            per_chart[target] = per_chart.get(target, 0) + 1
        if list_it or draw_it:
            keep[index] = _alert_fields(alert, listed=list_it, drawn_on=target if draw_it else None)
    return [keep[i] for i in sorted(keep)]


def _alert_fields(alert: Mapping[str, Any], listed: bool, drawn_on: str | None) -> dict[str, Any]:
    severity = alert.get("severity")
    step = alert.get("step")
    extras = []
    for key, value in alert.items():
        if key in _STANDARD_ALERT_KEYS or value is None or len(extras) >= 4:
            continue
        extras.append(f"{clean_text(key, 30)}={_extra_text(value)}")
    return {
        "run_id": clean_text(alert.get("run_id", ""), CAP_RUN_ID),
        "type": clean_text(alert.get("type") or "alert", CAP_TYPE),
        "message": clean_text(alert.get("message", ""), CAP_MESSAGE),
        "severity": severity if severity in SEVERITY_COLOURS else "warning",
        "step": float(step) if isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step)
        else None,
        "metric": clean_text(alert.get("metric"), CAP_METRIC) if isinstance(alert.get("metric"), str) else None,
        "extra": clean_text("  ".join(extras), CAP_EXTRA),
        "listed": listed,
        "drawn_on": drawn_on,
    }


def _extra_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return format_value(float(value))
    return clean_text(value, 40)


# ---- text --------------------------------------------------------------------------------------------------------
def clean_text(value: Any, cap: int) -> str:
    """Data text made safe to show (not yet escaped): at most `cap` characters (then "…"), control and bidirectional
    formatting characters and lone surrogates replaced by U+FFFD, newlines and tabs by spaces."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    cut = len(text) > cap
    text = text[:cap]
    text = text.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    text = _UNSAFE_CHARS.sub("\ufffd", text)
    return text + "…" if cut else text


def _h(value: Any, cap: int) -> str:
    """Data text for HTML: cleaned, capped and escaped (quotes too)."""
    return html.escape(clean_text(value, cap), quote=True)


def format_value(v: float | None) -> str:
    """js/src/dom.ts formatValue: 4 significant digits, exponent for very small / large values, NaN / ±Inf as text."""
    if v is None:
        return "–"
    if math.isnan(v):
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        mantissa, exponent = f"{v:.2e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    if v == int(v):
        return f"{int(v):,}"
    return f"{float(f'{v:.4g}'):g}" if a < 1e4 else f"{round(v):,}"


def format_int(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{round(v):,}"


def format_duration(seconds: float) -> str:
    """js/src/dom.ts formatDuration: 75 → "1m 15s", 4000 → "1h 06m"."""
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    m = s // 60
    if m < 60:
        return f"{m}m {s % 60:02d}s"
    h = m // 60
    if h < 48:
        return f"{h}h {m % 60:02d}m"
    return f"{h // 24}d {h % 24}h"


# ---- numbers -----------------------------------------------------------------------------------------------------
def _decayed_cumsum(f: np.ndarray, w: float) -> np.ndarray:
    """s[k] = Σ_{j≤k} w^(k-j) f[j] by a Hillis–Steele scan: after the pass with shift d, every s[k] holds the terms
    of the last 2d points; passes stop once w^d underflows to 0 (11 passes for w = 0.6). Vectorised, one thread,
    O(n log(1 / (1 - w)))."""
    s = np.array(f, dtype="f8")
    shift, factor = 1, w
    while shift < len(s) and factor > 0.0:
        s[shift:] += factor * s[:-shift]  # numpy reads the right side whole before it writes
        shift *= 2
        factor *= factor
    return s


def ema(ys: np.ndarray, weight: float = SMOOTHING) -> np.ndarray:
    """js/src/downsample.ts Ema: debiased exponential moving average over the finite values; a non-finite value
    carries the previous smoothed value (NaN before the first finite one)."""
    finite = np.isfinite(ys)
    every = bool(finite.all())
    values = ys if every else ys[finite]
    if not len(values):
        return np.full(len(ys), np.nan)
    smoothed = (1 - weight) * _decayed_cumsum(values, weight)
    # debias: divide by 1 - w^(k+1), which is 1.0 in float64 once w^(k+1) < 2**-53
    head = len(values) if weight >= 1 else min(len(values), 1 + int(-37 / math.log10(weight)) if weight > 0 else 1)
    smoothed[:head] /= 1 - weight ** np.arange(1, head + 1, dtype="f8")
    if every:
        return smoothed
    seen = np.cumsum(finite) - 1
    out = np.full(len(ys), np.nan)
    out[seen >= 0] = smoothed[seen[seen >= 0]]
    return out


def bucket_means(xs: np.ndarray, ys: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of `ys` over `buckets` equal runs of points, at each run's middle step; the last point kept as is (the
    live view draws bucket means of the smoothed line, js/src/downsample.ts MeanDecimator)."""
    n = len(xs)
    if n <= 2 * buckets:
        return xs, ys
    size = -(-n // buckets)
    count = -(-n // size)
    padded = np.full(count * size, np.nan)
    padded[:n] = ys
    grid = padded.reshape(count, size)
    valid = ~np.isnan(grid)
    sums = np.where(valid, grid, 0.0).sum(axis=1)
    counts = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    middles = np.minimum(np.arange(count) * size + size // 2, n - 1)
    return np.append(xs[middles], xs[-1]), np.append(means, ys[-1])


EXACT_EMA_BUCKET = 256
"""Below this many points per bucket the smoothed line is the bucket means of the exact EMA; from it on, the bucket
means of the finite values themselves: the EMA's memory (1 / (1 - 0.6) = 2.5 points) then shifts at most ~1% of a
bucket's weight, and a million-point series costs one pass instead of an EMA over every point."""


def smoothed_line(xs: np.ndarray, ys: np.ndarray, buckets: int = SMOOTH_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """The smoothed line as drawn: bucket means of the EMA of `ys` (see EXACT_EMA_BUCKET), ending at the EMA's last
    value; a bucket without a finite value repeats the previous one (the EMA carries over non-finite values)."""
    n = len(xs)
    if n <= 2 * buckets or -(-n // buckets) < EXACT_EMA_BUCKET:
        return bucket_means(xs, ema(ys), buckets)
    finite = np.where(np.isfinite(ys), ys, np.nan)
    line_x, line_y = bucket_means(xs, finite, buckets)
    line_y[-1] = ema(ys[-400:])[-1]  # 0.6**400: the tail's EMA is the whole series' EMA
    valid = np.isfinite(line_y)
    if not valid.all():
        index = np.maximum.accumulate(np.where(valid, np.arange(len(line_y)), 0))
        line_y = np.where(valid[index], line_y[index], np.nan)
    return line_x, line_y


def _band_sibling(name: str) -> str | None:
    for pattern, replacement in _BAND_SIBLINGS:
        if pattern.search(name):
            return pattern.sub(replacement, name)
    return None


# ---- the picture ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StaticPicture:
    png: bytes
    html: str
    width: int
    height: int
    step: float | None
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase (draw, png, html) of this render."""

    def png_base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")

    def html_with_image(self) -> str:
        """The summary with the PNG inside (as a data: URL), for places that show text/html rather than image/png."""
        return self.html.replace("<!--rldk-image-->", _img_tag(self.png_base64(), self.width, self.height), 1)

    def mime_bundle(self, image_in_html: bool = False) -> dict[str, str]:
        """{"image/png": base64, "text/html": summary} for a display bundle (beside the widget's own entries)."""
        return {"image/png": self.png_base64(), "text/html": self.html_with_image() if image_in_html else self.html}


def render(data: StaticData, theme: str = "light", made_at: float | None = None,
           max_png_bytes: int = MAX_PNG_BYTES) -> StaticPicture:
    """The PNG and the HTML summary of `data` (see `StaticData.collect`). `theme`: "light" or "dark" (the PNG's
    colours; the HTML takes its colours from the page). `made_at`: unix time written in the summary (default now).
    `max_png_bytes`: the PNG's cap (fewer colours, then a smaller image, until it fits; a bundle that carries the
    image twice, as image/png and inside the HTML, fits 250 KB of notebook with 90_000)."""
    if theme not in THEMES:
        raise ValueError(f"theme must be one of {', '.join(THEMES)}; got {theme!r}")
    if not isinstance(max_png_bytes, int) or max_png_bytes < 10_000:
        raise ValueError(f"max_png_bytes must be an int of at least 10000, got {max_png_bytes!r}")
    timings: dict[str, float] = {}
    png, width, height = _render_png(data, THEMES[theme], timings, max_png_bytes)
    started = time.perf_counter()
    summary = render_html(data, made_at=made_at)
    timings["html"] = time.perf_counter() - started
    return StaticPicture(png=png, html=summary, width=width, height=height, step=data.step, timings=timings)


def render_static_view(
    runs: Mapping[str, RunSeries],
    run_order: Sequence[str] | None = None,
    charts: Sequence[str] | None = None,
    alerts: Sequence[Mapping[str, Any]] = (),
    info: Mapping[str, Mapping[str, Any]] | None = None,
    status: Mapping[str, Any] | None = None,
    theme: str = "light",
    made_at: float | None = None,
    max_png_bytes: int = MAX_PNG_BYTES,
) -> StaticPicture:
    """`render(StaticData.collect(...))` in one call (arguments as there)."""
    started = time.perf_counter()
    data = StaticData.collect(runs, run_order, charts, alerts, info, status)
    collected = time.perf_counter() - started
    picture = render(data, theme=theme, made_at=made_at, max_png_bytes=max_png_bytes)
    picture.timings["collect"] = collected
    return picture


def _render_png(data: StaticData, colours: Mapping[str, str], timings: dict[str, float], max_bytes: int
                ) -> tuple[bytes, int, int]:
    """Lines, bands and markers with matplotlib's Agg renderer (antialiased, in pixel coordinates, no Axes: a
    Figure of a few artists draws in milliseconds), then the texts with Pillow (a tenth of matplotlib's cost per
    text), then an 8-bit PNG."""
    started = time.perf_counter()
    layout = _Layout(data)
    timings["prepare"] = time.perf_counter() - started
    started = time.perf_counter()
    with _render_lock:  # one render at a time: matplotlib's caches are not meant for concurrent use
        image = _draw_geometry(layout, colours)
    timings["draw"] = time.perf_counter() - started
    started = time.perf_counter()
    _draw_texts(image, layout, data, colours)
    timings["text"] = time.perf_counter() - started
    started = time.perf_counter()
    png = _encode_png(image, [colours["bg"], colours["fg"], colours["muted"], colours["grid"],
                              *(run.colour for run in data.runs), *SEVERITY_COLOURS.values()], max_bytes)
    timings["png"] = time.perf_counter() - started
    return png, image.width, image.height


def _encode_png(image: Any, exact: Sequence[str] = (), max_bytes: int = MAX_PNG_BYTES) -> bytes:
    """An 8-bit palette PNG (a chart has few colours; ~3× smaller than RGB), with fewer colours and then a smaller
    image until it fits `max_bytes`. Pillow's fast octree palette holds bucket averages (white becomes 254): the
    entries nearest to the `exact` colours (background, runs, text) are set back to them."""
    from PIL import Image

    targets = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in exact], dtype=int).reshape(-1, 3)
    ladder = [(256, 1.0), (64, 1.0), (16, 1.0), (16, 0.75), (16, 0.5), (8, 0.35)]
    ladder += [(4, 0.35 * 0.7**k) for k in range(1, 12)]  # down to 7 px wide: any image fits 10 KB long before
    for colours, scale in ladder:
        candidate = image if scale == 1.0 else image.resize(
            (max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.Resampling.BILINEAR)
        quantized = candidate.quantize(colors=colours, method=Image.Quantize.FASTOCTREE)
        if len(targets):
            palette = np.array(quantized.getpalette()[: 3 * colours], dtype=int).reshape(-1, 3)
            distance = np.abs(palette[None, :, :] - targets[:, None, :]).sum(axis=-1)
            nearest = distance.argmin(axis=1)
            close = distance[np.arange(len(targets)), nearest] <= 24
            palette[nearest[close]] = targets[close]
            quantized.putpalette(palette.astype(np.uint8).ravel().tolist())
        buffer = io.BytesIO()
        quantized.save(buffer, format="PNG", compress_level=7)
        if buffer.tell() <= max_bytes:
            break
    return buffer.getvalue()


# ---- layout (pixels, origin top left) -----------------------------------------------------------------------
WIDTH_PX = 1000
HEAD_PX = 50
CELL_HEIGHT_PX = 172
TITLE_PX = 20
PLOT_HEIGHT_PX = 126
LEFT_PX = 50
RIGHT_PX = 14
PAD_PX = 6
FONT_PX, SMALL_FONT_PX, HEAD_FONT_PX = 12, 10, 14


class _Frame:
    """One chart's plot rectangle and its data limits."""

    def __init__(self, left: float, top: float, width: float, height: float, x_lim: tuple[float, float],
                 y_lim: tuple[float, float]) -> None:
        self.left, self.top, self.width, self.height = left, top, width, height
        self.x_lo, self.x_hi = x_lim
        self.y_lo, self.y_hi = y_lim

    def px(self, xs: Any) -> Any:
        return self.left + (np.asarray(xs, dtype="f8") - self.x_lo) * (self.width / (self.x_hi - self.x_lo))

    def py(self, ys: Any) -> Any:
        scale = self.height / (self.y_hi - self.y_lo)
        return self.top + self.height - (np.asarray(ys, dtype="f8") - self.y_lo) * scale


class _Chart:
    """What one chart draws: per run its decimated raw line, smoothed line and ±std band, and its alert steps."""

    def __init__(self, name: str, data: StaticData) -> None:
        self.name = name
        self.lines: list[tuple[RunData, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]] = []
        self.bands: list[tuple[RunData, np.ndarray, np.ndarray, np.ndarray]] = []
        self.lasts: list[tuple[str, float]] = []
        sibling = _band_sibling(name)
        x_lo, x_hi, y_lo, y_hi = math.inf, -math.inf, math.inf, -math.inf
        for run in data.runs:
            column = run.columns.get(name)
            if column is None:
                continue
            xs, ys = column
            self.lasts.append((run.colour, float(ys[-1])))
            plain = np.where(np.isfinite(ys), ys, np.nan)
            raw_x, raw_y = decimate(xs, plain, RAW_POINTS)
            smooth_x, smooth_y = smoothed_line(xs, ys)
            self.lines.append((run, raw_x, raw_y, smooth_x, smooth_y, len(xs) <= SPARSE_POINTS))
            std = run.columns.get(sibling) if sibling else None
            if std is not None:
                lo, hi = _band(xs, std, smooth_x, smooth_y)
                self.bands.append((run, smooth_x, lo, hi))
                y_lo, y_hi = _extend(y_lo, y_hi, lo, hi)
            y_lo, y_hi = _extend(y_lo, y_hi, raw_y, raw_y)
            x_lo, x_hi = min(x_lo, float(xs[0])), max(x_hi, float(xs[-1]))
        self.own_alerts = {s: [a["step"] for a in data.alerts if a["drawn_on"] == name and a["severity"] == s]
                           for s in SEVERITIES}
        self.other_alerts = {s: [a["step"] for a in data.alerts if a["drawn_on"] == "*" and a["severity"] == s]
                             for s in SEVERITIES}
        steps = [step for group in (self.own_alerts, self.other_alerts) for v in group.values() for step in v]
        if steps:
            x_lo, x_hi = min(x_lo, min(steps)), max(x_hi, max(steps))
        if not math.isfinite(x_lo):
            x_lo, x_hi = 0.0, 1.0
        if x_hi <= x_lo:
            x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
        if not math.isfinite(y_lo):
            y_lo, y_hi = 0.0, 1.0
        pad = (y_hi - y_lo) * 0.06 or abs(y_hi) * 0.05 or 0.5
        self.x_lim = (x_lo, x_hi)
        self.y_lim = (y_lo - pad, y_hi + pad)


class _Layout:
    def __init__(self, data: StaticData) -> None:
        self.charts = [_Chart(name, data) for name in data.charts]
        count = len(self.charts)
        self.columns = 1 if count <= 1 else (2 if count == 2 else COLUMNS)
        rows = max(1, -(-count // self.columns))
        self.width = WIDTH_PX
        self.height = HEAD_PX + rows * CELL_HEIGHT_PX + PAD_PX
        cell_width = (WIDTH_PX - 2 * PAD_PX) / self.columns
        self.frames = []
        for index, chart in enumerate(self.charts):
            row, column = divmod(index, self.columns)
            left = PAD_PX + column * cell_width + LEFT_PX
            top = HEAD_PX + row * CELL_HEIGHT_PX + TITLE_PX
            self.frames.append(_Frame(left, top, cell_width - LEFT_PX - RIGHT_PX, PLOT_HEIGHT_PX, chart.x_lim,
                                      chart.y_lim))
        self.x_ticks = [_ticks(f.x_lo, f.x_hi, 5, integer=True) for f in self.frames]
        self.y_ticks = [_ticks(f.y_lo, f.y_hi, 4, integer=False) for f in self.frames]


def _ticks(lo: float, hi: float, bins: int, integer: bool) -> np.ndarray:
    from matplotlib.ticker import MaxNLocator

    values = MaxNLocator(nbins=bins, integer=integer).tick_values(lo, hi)
    return values[(values >= lo - 1e-9 * abs(hi - lo)) & (values <= hi + 1e-9 * abs(hi - lo))]


def _pt(pixels: float) -> float:
    """A width in pixels as matplotlib points (at DPI)."""
    return pixels * 72 / DPI


def _joined(pieces: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Polylines joined into one, NaN between them (one artist per run and style instead of one per chart)."""
    xs, ys = [], []
    for x, y in pieces:
        xs += [x, [np.nan]]
        ys += [y, [np.nan]]
    return np.concatenate(xs), np.concatenate(ys)


def _draw_geometry(layout: _Layout, colours: Mapping[str, str]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.transforms import IdentityTransform
    from PIL import Image

    height = layout.height
    flip = lambda ys: height - ys  # noqa: E731 - image rows (top down) → matplotlib pixels (bottom up)
    figure = Figure(figsize=(layout.width / DPI, height / DPI), dpi=DPI, facecolor=colours["bg"],
                    edgecolor=colours["bg"], linewidth=0, frameon=True, layout="none")
    FigureCanvasAgg(figure)
    identity = IdentityTransform()
    artists: list[Any] = []
    grid, base = [], []
    raw: dict[str, list] = {}
    smooth: dict[str, list] = {}
    dots: dict[str, list] = {}
    bands: dict[str, list] = {}
    alert_lines: dict[str, list] = {s: [] for s in SEVERITIES}
    alert_tops: dict[str, list] = {s: [] for s in SEVERITIES}
    alert_bottoms: dict[str, list] = {s: [] for s in SEVERITIES}
    colour_of: dict[str, str] = {}
    for chart, frame, x_ticks, y_ticks in zip(layout.charts, layout.frames, layout.x_ticks, layout.y_ticks):
        top, bottom = flip(frame.top), flip(frame.top + frame.height)
        right = frame.left + frame.width
        for x in np.round(frame.px(x_ticks)) + 0.5:
            grid.append(((x, bottom), (x, top)))
        for y in np.round(flip(frame.py(y_ticks))) + 0.5:
            grid.append(((frame.left, y), (right, y)))
        base.append(((frame.left, round(bottom) + 0.5), (right, round(bottom) + 0.5)))
        for run, lo_x, lo, hi in ((b[0], b[1], b[2], b[3]) for b in chart.bands):
            colour_of[run.run_id] = run.colour
            px = frame.px(lo_x)
            for segment in _finite_runs(lo, hi):
                polygon = np.column_stack([np.concatenate([px[segment], px[segment][::-1]]),
                                           flip(np.concatenate([frame.py(lo[segment]), frame.py(hi[segment])[::-1]]))])
                bands.setdefault(run.run_id, []).append(polygon)
        for run, raw_x, raw_y, smooth_x, smooth_y, sparse in chart.lines:
            colour_of[run.run_id] = run.colour
            raw.setdefault(run.run_id, []).append((frame.px(raw_x), flip(frame.py(raw_y))))
            smooth.setdefault(run.run_id, []).append((frame.px(smooth_x), flip(frame.py(smooth_y))))
            if sparse:
                dots.setdefault(run.run_id, []).append((frame.px(raw_x), flip(frame.py(raw_y))))
        span = frame.x_hi - frame.x_lo
        for severity in SEVERITIES:
            for x in np.round(frame.px(_one_per_pixel(chart.own_alerts[severity], frame.x_lo, span))) + 0.5:
                alert_lines[severity].append(((x, bottom), (x, top)))
                alert_tops[severity].append((x, top + 3))
            for x in np.round(frame.px(_one_per_pixel(chart.other_alerts[severity], frame.x_lo, span))) + 0.5:
                alert_bottoms[severity].append((x, bottom + 3))
    line_props = {"transform": identity, "antialiased": True, "solid_joinstyle": "round", "solid_capstyle": "butt"}
    artists.append(LineCollection(grid, colors=colours["grid"], linewidths=_pt(1), transform=identity, zorder=0))
    artists.append(LineCollection(base, colors=colours["spine"], linewidths=_pt(1), transform=identity, zorder=1))
    for run_id, polygons in bands.items():
        artists.append(PolyCollection(polygons, facecolors=colour_of[run_id], alpha=0.15, linewidths=0,
                                      edgecolors="none", transform=identity, zorder=2))
    for run_id, pieces in raw.items():
        x, y = _joined(pieces)
        artists.append(Line2D(x, y, color=colour_of[run_id], linewidth=_pt(1), alpha=0.3, zorder=3, **line_props))
    for run_id, pieces in dots.items():
        x, y = _joined(pieces)
        artists.append(Line2D(x, y, color=colour_of[run_id], linestyle="none", marker="o", markersize=_pt(4),
                              markeredgewidth=0, zorder=4, transform=identity))
    for run_id, pieces in smooth.items():
        x, y = _joined(pieces)
        artists.append(Line2D(x, y, color=colour_of[run_id], linewidth=_pt(2), zorder=4, **line_props))
    for severity in reversed(SEVERITIES):  # critical on top
        colour = SEVERITY_COLOURS[severity]
        if alert_lines[severity]:
            artists.append(LineCollection(alert_lines[severity], colors=colour, linewidths=_pt(1), alpha=1.0,
                                          linestyles=[(0, (3, 2))], transform=identity, zorder=5))
        for points, marker in ((alert_tops[severity], "v"), (alert_bottoms[severity], "^")):
            if points:
                xy = np.asarray(points)
                artists.append(Line2D(xy[:, 0], xy[:, 1], linestyle="none", marker=marker, markersize=_pt(7),
                                      color=colour, markeredgewidth=0, transform=identity, zorder=6))
    for artist in artists:
        artist.set_sketch_params(None)  # a user's plt.xkcd() or path effects must not reach the picture
        artist.set_path_effects([])
        figure.add_artist(artist)
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    return Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB")


def _finite_runs(lo: np.ndarray, hi: np.ndarray) -> list[slice]:
    """Slices of consecutive points where both band edges are finite (a polygon each)."""
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.all():
        return [slice(0, len(ok))] if len(ok) > 1 else []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype("i1"), [0]])))
    return [slice(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a > 1]


def _extend(lo: float, hi: float, low_values: np.ndarray, high_values: np.ndarray) -> tuple[float, float]:
    low = low_values[np.isfinite(low_values)]
    high = high_values[np.isfinite(high_values)]
    if len(low):
        lo = min(lo, float(low.min()))
    if len(high):
        hi = max(hi, float(high.max()))
    return lo, hi


def _band(xs: np.ndarray, std: tuple[np.ndarray, np.ndarray], at_x: np.ndarray, mean: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """mean ± smoothed std at the drawn steps: on the mean's own grid when std was logged at the same steps, else the
    std's smoothed line at the steps it shares with the drawn ones (exact matches, as the live view's alignTo)."""
    std_x, std_y = std
    if len(std_x) == len(xs) and std_x[-1] == xs[-1] and std_x[0] == xs[0]:
        _, band = smoothed_line(std_x, std_y)
    else:
        line_x, line_y = smoothed_line(std_x, std_y)
        index = np.searchsorted(line_x, at_x, side="right") - 1
        safe = np.clip(index, 0, None)
        band = np.where((index >= 0) & (line_x[safe] == at_x), line_y[safe], np.nan)
    if len(band) != len(mean):
        band = np.resize(band, len(mean))
    with np.errstate(invalid="ignore"):
        return mean - band, mean + band


def _one_per_pixel(steps: list[float], x_lo: float, span: float, pixels: int = 320) -> np.ndarray:
    if not steps:
        return np.empty(0)
    values = np.asarray(steps, dtype="f8")
    _, first = np.unique(np.round((values - x_lo) / span * pixels), return_index=True)
    return values[np.sort(first)]


# ---- texts (Pillow, with matplotlib's DejaVu fonts) ---------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _font(size: int, bold: bool = False) -> Any:
    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name), size)


def _tick_labels(values: np.ndarray) -> list[str]:
    """format_value of each tick, with more digits where that would make two ticks read the same."""
    labels = [format_value(float(v)) for v in values]
    digits = 3
    while len(set(labels)) < len(labels) and digits < 10:
        labels = [f"{float(v):.{digits}g}" for v in values]
        digits += 1
    return labels


def _fit(text: str, font: Any, width: float) -> str:
    """`text` cut (with "…") to at most `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _draw_texts(image: Any, layout: _Layout, data: StaticData, colours: Mapping[str, str]) -> None:
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    regular, small, head = _font(FONT_PX), _font(SMALL_FONT_PX), _font(HEAD_FONT_PX, bold=True)
    runs = f"{data.run_count} runs" if data.run_count != 1 else "1 run"
    step = f"step {format_int(data.step)}" if data.step is not None else "no steps yet"
    alerts = f" · {data.alert_count:,} alert{'' if data.alert_count == 1 else 's'}" if data.alert_count else ""
    draw.text((PAD_PX + 4, 8), f"RLDK · {runs} · {step}{alerts}", font=head, fill=colours["fg"])
    x, drawn = PAD_PX + 4.0, 0
    for run in data.runs:
        label = _fit(clean_text(run.run_id, CAP_RUN_ID), regular, 220)
        width = 14 + regular.getlength(label) + 14
        if drawn and x + width > layout.width - 90:
            break
        draw.rectangle((x, 33, x + 9, 42), fill=run.colour)
        draw.text((x + 13, 30), label, font=regular, fill=colours["fg"])
        x += width
        drawn += 1
    if data.run_count - drawn:
        draw.text((x, 30), f"+{data.run_count - drawn} more", font=regular, fill=colours["muted"])
    if not layout.charts:
        draw.text((layout.width / 2, HEAD_PX + 60), "No metrics yet", font=regular, fill=colours["muted"], anchor="mm")
        return
    for chart, frame, x_ticks, y_ticks in zip(layout.charts, layout.frames, layout.x_ticks, layout.y_ticks):
        title_y = frame.top - TITLE_PX + 3
        right = frame.left + frame.width
        lasts = []
        for colour, value in chart.lasts[:3]:
            bad = not math.isfinite(value)
            lasts.append((format_value(value), SEVERITY_COLOURS["critical"] if bad else colour))
        x = right
        for text, colour in reversed(lasts):
            x -= regular.getlength(text)
            draw.text((x, title_y), text, font=regular, fill=colour)
            x -= 8
        title = _fit(clean_text(chart.name, CAP_METRIC), regular, x - (frame.left - LEFT_PX + 4) - 8)
        draw.text((frame.left - LEFT_PX + 4, title_y), title, font=regular, fill=colours["fg"])
        bottom = frame.top + frame.height
        for value, px in zip(x_ticks, frame.px(x_ticks)):
            label = f"{value:,.0f}" if abs(value) < 1e7 else f"{value:.2g}"
            draw.text((px, bottom + 3), label, font=small, fill=colours["muted"], anchor="ma")
        for label, py in zip(_tick_labels(y_ticks), frame.py(y_ticks)):
            draw.text((frame.left - 4, py), label, font=small, fill=colours["muted"], anchor="rm")


# ---- the HTML summary --------------------------------------------------------------------------------------------
def _img_tag(b64: str, width: int, height: int) -> str:
    return (f'<img src="data:image/png;base64,{b64}" width="{width}" height="{height}" '
            'alt="RLDK dashboard charts" style="max-width:100%;height:auto">')


def _run_stats(run: RunData) -> dict[str, Any]:
    """js/src/header.ts runStats: latest step, reward / KL / loss, steps/s from the timestamps, ETA, last record."""
    step = run.last_step
    rate = math.nan
    last_unix = math.nan
    ts = run.columns.get("timestamp")
    if ts is not None and len(ts[0]):
        x, y = ts
        n = len(x)
        last_unix = float(y[-1])
        j = max(0, n - 1 - RATE_WINDOW)
        dt, ds = y[-1] - y[j], x[-1] - x[j]
        if n >= 2 and dt > 0 and ds >= 0:
            rate = float(ds / dt)
    eta = "–"
    if run.max_steps is not None and step is not None:
        if step >= run.max_steps:
            eta = "done"
        elif rate > 0:
            eta = format_duration((run.max_steps - step) / rate)

    def last(name: str) -> float | None:
        column = run.columns.get(name)
        return float(column[1][-1]) if column is not None else None

    return {"step": step, "reward": last("reward_mean"), "kl": last("kl_mean"), "loss": last("loss"), "rate": rate,
            "eta": eta, "last_unix": last_unix}


def render_html(data: StaticData, made_at: float | None = None) -> str:
    """The script-free summary (≤ MAX_HTML_BYTES): the header tiles' values per run, the alert counts and the newest
    alerts as text, and "made by rldk_widget at step N". Colours come from the page; every data text is escaped.
    `StaticPicture.html_with_image` puts the PNG where the `<!--rldk-image-->` comment is."""
    from . import __version__

    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() if made_at is None else made_at))
    step = format_int(data.step) if data.step is not None else "–"
    runs_text = f"{data.run_count} runs" if data.run_count != 1 else "1 run"
    parts = [
        '<div class="rldk-static" style="font-family:system-ui,-apple-system,\'Segoe UI\',Roboto,sans-serif;'
        'font-size:13px;line-height:1.4;max-width:1000px">',
        f'<div><b>RLDK dashboard</b> · {runs_text} · step {step}</div>',
        "<!--rldk-image-->",
    ]
    stats = [(run, _run_stats(run)) for run in data.runs[:MAX_HEADER_RUNS]]
    if stats:
        show = {key: any(s[key] is not None for _, s in stats) for key in ("reward", "kl", "loss")}
        has_max = any(run.max_steps is not None for run, _ in stats)
        head = ["run", "step"] + [label for key, label in (("reward", "reward"), ("kl", "KL"), ("loss", "loss"))
                                  if show[key]] + ["steps/s"] + (["ETA"] if has_max else []) + ["last record"]
        parts.append('<table style="border-collapse:collapse;margin:4px 0"><thead><tr>')
        parts.extend(f'<th style="text-align:left;padding:2px 10px 2px 0;font-weight:600">{h}</th>' for h in head)
        parts.append("</tr></thead><tbody>")
        for run, s in stats:
            kind = f' <span style="opacity:.7">({_h(run.trainer, CAP_KIND)})</span>' if run.trainer else ""
            step_text = format_int(s["step"])
            if run.max_steps is not None:
                done = 0.0 if s["step"] is None else s["step"] / run.max_steps
                step_text += f' / {run.max_steps:,} ({100 * max(0.0, min(1.0, done)):.1f}%)'
            cells = [f'<span style="color:{run.colour}">■</span> <bdi>{_h(run.run_id, CAP_RUN_ID)}</bdi>{kind}',
                     step_text]
            cells += [_value_cell(s[key]) for key in ("reward", "kl", "loss") if show[key]]
            cells.append(format_value(s["rate"]) if math.isfinite(s["rate"]) else "–")
            if has_max:
                cells.append(s["eta"])
            cells.append(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(s["last_unix"]))
                         if math.isfinite(s["last_unix"]) and 0 <= s["last_unix"] < 32503680000 else "–")
            parts.append("<tr>" + "".join(f'<td style="padding:2px 10px 2px 0">{c}</td>' for c in cells) + "</tr>")
        parts.append("</tbody></table>")
        if len(data.runs) < data.run_count or len(stats) < len(data.runs):
            parts.append(f'<div style="opacity:.7">+{data.run_count - len(stats)} more runs</div>')
    else:
        parts.append("<div>Waiting for the first metrics…</div>")
    if data.status.get("level") not in ("ok", None) or data.status.get("message"):
        level = data.status.get("level") if data.status.get("level") in ("info", "warning", "error") else "info"
        parts.append(f'<div style="margin:4px 0"><b>{level}</b>: {_h(data.status.get("message"), CAP_STATUS)}</div>')
    parts.append(_alerts_html(data))
    parts.append('<div style="opacity:.7;font-size:11px;margin-top:4px">'
                 f"made by rldk_widget {html.escape(__version__)} at step {step}, {made}; "
                 "a static picture of the live dashboard</div></div>")
    text = "".join(parts)
    while len(text.encode("utf-8")) > MAX_HTML_BYTES and "<li" in text:  # cannot happen with the caps; a guard
        text = re.sub(r"<li[^>]*>(?:(?!</li>).)*</li>(?=</ul>)", "", text, count=1, flags=re.S)
    return text


def _value_cell(value: float | None) -> str:
    text = format_value(value)
    if value is not None and not math.isfinite(value):
        return f'<b style="color:{SEVERITY_COLOURS["critical"]}">{text}</b>'
    return text


def _alerts_html(data: StaticData) -> str:
    if not data.alert_count:
        return '<div style="margin-top:4px">No alerts.</div>'
    counts = ", ".join(f"{data.alert_counts[s]:,} {s}" for s in SEVERITIES if data.alert_counts[s])
    listed = [a for a in data.alerts if a["listed"]]
    parts = [f'<div style="margin-top:6px"><b>Alerts: {data.alert_count:,}</b> ({counts})'
             + (f", the newest {len(listed)}:" if len(listed) < data.alert_count else ":") + "</div>",
             '<ul style="margin:2px 0;padding-left:20px">']
    for alert in reversed(listed):
        colour = SEVERITY_COLOURS[alert["severity"]]
        step = f" · step {format_int(alert['step'])}" if alert["step"] is not None else ""
        metric = f" · {html.escape(alert['metric'])}" if alert["metric"] else ""
        extra = f' <span style="opacity:.7">{html.escape(alert["extra"])}</span>' if alert["extra"] else ""
        parts.append(
            f'<li><b style="color:{colour}">{alert["severity"]}</b> <bdi>{html.escape(alert["type"])}</bdi> · '
            f'<bdi>{html.escape(alert["run_id"])}</bdi>{step}{metric}: <bdi>{html.escape(alert["message"])}</bdi>'
            f"{extra}</li>"
        )
    parts.append("</ul>")
    return "".join(parts)

