"""The static picture of a dashboard (rldk_widget/static_view.py): a PNG that decodes and shows the charts, the
alert markers at their steps, an HTML summary with the header tiles' values and the newest alerts; both bounded
whatever the run (1M points, 50 runs × 20 metrics), every data text escaped, the user's matplotlib untouched."""

from __future__ import annotations

import io
import math
import re
import sys
import threading
import time
from array import array
from html.parser import HTMLParser

import matplotlib
import numpy as np
import pytest
from PIL import Image

from rldk_widget import static_view as sv
from rldk_widget.series import RunSeries
from rldk_widget.trl_keys import default_charts

GRPO_KEYS = ("reward_mean", "reward_std", "kl_mean", "entropy_mean", "loss", "grad_norm", "clip_frac",
             "learning_rate", "completions/mean_length", "frac_reward_zero_std")


def column(values) -> array:
    out = array("d")
    out.frombytes(np.asarray(values, dtype="f8").tobytes())
    return out


def make_run(steps: int, names=GRPO_KEYS, seed: int = 0, t0: float = 1_780_000_000.0, noise: float = 1.0,
             offset: float = 0.0) -> RunSeries:
    """A RunSeries with `steps` points per series, built column by column (a 1M-step run in milliseconds)."""
    rng = np.random.default_rng(seed)
    run = RunSeries()
    xs = np.arange(steps, dtype="f8")
    for index, name in enumerate(names):
        trend = np.linspace(0.2, 0.8, steps) * (index + 1) + offset
        run.columns[name] = (column(xs), column(trend + noise * rng.standard_normal(steps)))
    run.columns["timestamp"] = (column(xs), column(t0 + 0.5 * xs))
    run.last_step = steps - 1 if steps else None
    run.record_count = steps
    return run


def decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB")).astype(int)


def hex_rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])


def near(pixels: np.ndarray, colour: str, tolerance: int = 40) -> np.ndarray:
    return np.abs(pixels - hex_rgb(colour)).sum(axis=-1) <= tolerance


def frame_pixels(pixels: np.ndarray, frame) -> np.ndarray:
    return pixels[int(frame.top):int(frame.top + frame.height), int(frame.left):int(frame.left + frame.width)]


# ---- the picture ---------------------------------------------------------------------------------------------
def test_png_decodes_at_the_fixed_size_and_every_chart_shows_its_runs():
    runs = {"seed_a": make_run(500, seed=1), "seed_b": make_run(500, seed=2)}
    info = {"seed_a": {"max_steps": 1000, "trainer": "grpo", "started": None}}
    started = time.perf_counter()
    picture = sv.render_static_view(runs, ["seed_a", "seed_b"], [], [], info, {"level": "ok", "message": ""})
    print(f"\n500 steps × 2 runs × 10 charts: {1000 * (time.perf_counter() - started):.0f} ms, "
          f"{len(picture.png):,} B PNG, {len(picture.html):,} B HTML, phases (ms) "
          f"{ {k: round(1000 * v, 1) for k, v in picture.timings.items()} }")
    data = sv.StaticData.collect(runs, ["seed_a", "seed_b"], [], [], info)
    assert data.charts == default_charts("grpo", GRPO_KEYS)  # the trainer kind's defaults, only those logged
    pixels = decode(picture.png)
    layout = sv._Layout(data)
    assert pixels.shape == (layout.height, sv.WIDTH_PX, 3) == (picture.height, picture.width, 3)
    assert len(layout.frames) == 10
    for chart, frame in zip(layout.charts, layout.frames):
        area = frame_pixels(pixels, frame)
        for colour in (sv.PALETTE[0], sv.PALETTE[1]):  # both runs' smoothed lines, in the live view's colours
            assert near(area, colour).sum() > 200, (chart.name, colour)
    assert (pixels == hex_rgb(sv.THEMES["light"]["bg"])).all(axis=-1).mean() > 0.5  # light by default, exact


def test_dark_theme_and_an_empty_dashboard():
    picture = sv.render_static_view({"r": make_run(50)}, theme="dark")
    pixels = decode(picture.png)
    assert (pixels == hex_rgb(sv.THEMES["dark"]["bg"])).all(axis=-1).mean() > 0.5
    with pytest.raises(ValueError):
        sv.render_static_view({}, theme="sepia")
    empty = sv.render_static_view({})
    assert decode(empty.png).shape[1] == sv.WIDTH_PX
    assert "Waiting for the first metrics" in empty.html and "No alerts" in empty.html


def test_alert_markers_are_drawn_at_their_step_on_their_metrics_chart():
    run = make_run(1000, names=("reward_mean", "kl_mean", "loss"), noise=0.0)
    alerts = [
        {"run_id": "r", "type": "high_kl", "message": "KL 0.3 above 0.1", "step": 700, "severity": "critical",
         "metric": "kl_mean", "value": 0.3, "threshold": 0.1},
        {"run_id": "r", "type": "note", "message": "no metric", "step": 200, "severity": "info"},
    ]
    data = sv.StaticData.collect({"r": run}, ["r"], ["reward_mean", "kl_mean", "loss"], alerts)
    pixels = decode(sv.render(data).png)
    layout = sv._Layout(data)
    critical = sv.SEVERITY_COLOURS["critical"]
    for chart, frame in zip(layout.charts, layout.frames):
        area = frame_pixels(pixels, frame)
        x = int(round(float(frame.px(700)) - frame.left))
        dashed = near(area[:, max(0, x - 1):x + 2], critical, 90).sum()
        if chart.name == "kl_mean":
            assert dashed > 0.3 * frame.height  # a dashed line over the plot's height
            assert near(area[:, :x - 3], critical, 60).sum() == 0  # only there
        else:
            assert near(area, critical, 60).sum() == 0
        below = pixels[int(frame.top + frame.height):int(frame.top + frame.height) + 6,
                       int(frame.px(200)) - 4:int(frame.px(200)) + 5]
        assert near(below, sv.SEVERITY_COLOURS["info"], 60).sum() >= 4  # no metric: a mark on every chart's axis


def test_non_finite_values_and_sparse_runs_render():
    run = make_run(40, names=("loss", "reward_mean", "kl_mean"))
    xs, ys = run.columns["loss"]
    ys[10], ys[20], ys[-1] = math.nan, math.inf, -math.inf
    run.columns["reward_std"] = (column(np.arange(0, 40, 2)), column(np.full(20, math.nan)))
    picture = sv.render_static_view({"r": run}, charts=["loss", "reward_mean", "kl_mean"])
    assert decode(picture.png).shape[0] == picture.height
    assert "-Inf" in picture.html  # the loss tile shows the last value as the live view formats it
    only_nan = RunSeries()
    only_nan.columns["loss"] = (column([0, 1]), column([math.nan, math.nan]))
    assert sv.render_static_view({"n": only_nan}).png


def test_ema_matches_the_live_views_recurrence():
    rng = np.random.default_rng(3)
    ys = rng.standard_normal(5000)
    ys[[0, 7, 100, 4999]] = [math.nan, math.inf, -math.inf, math.nan]
    for weight in (0.0, 0.6, 0.99):
        expected, last, power, seen = [], 0.0, 1.0, 0
        for v in ys:  # js/src/downsample.ts Ema.update
            if math.isfinite(v):
                last = last * weight + (1 - weight) * v
                power *= weight
                seen += 1
            expected.append(last / (1 - power) if seen else math.nan)
        np.testing.assert_allclose(sv.ema(ys, weight), expected, rtol=1e-12, atol=1e-12, equal_nan=True)


# ---- bounded whatever the run -----------------------------------------------------------------------------------
def test_sizes_are_bounded_at_a_million_points():
    run = make_run(1_000_000, names=GRPO_KEYS, noise=3.0)  # noise: the hardest case for PNG compression
    xs, ys = run.columns["loss"]
    ys[123_456] = math.nan
    ys[654_321] = 1e9
    alerts = [{"run_id": "big", "type": "spike", "message": f"spike {i}", "step": i * 37, "severity": "warning",
               "metric": "loss"} for i in range(20_000)]
    started = time.perf_counter()
    cpu = time.process_time()
    picture = sv.render_static_view({"big": run}, ["big"], None, alerts, {"big": {"trainer": "grpo"}})
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"\n1M steps × 10 charts, 20k alerts: {1000 * wall:.0f} ms wall, {1000 * cpu:.0f} ms CPU, "
          f"{len(picture.png):,} B PNG, {len(picture.html):,} B HTML, phases (ms) "
          f"{ {k: round(1000 * v, 1) for k, v in picture.timings.items()} }")
    assert len(picture.png) <= sv.MAX_PNG_BYTES
    assert len(picture.html.encode()) <= sv.MAX_HTML_BYTES
    assert len(picture.html_with_image().encode()) <= sv.MAX_HTML_BYTES + 4 * sv.MAX_PNG_BYTES // 3 + 200
    assert "20,000 warning" in picture.html and picture.html.count("<li>") == sv.MAX_ALERTS_LISTED
    decode(picture.png)


def test_sizes_are_bounded_at_fifty_runs_of_twenty_metrics():
    names = GRPO_KEYS + tuple(f"rewards/fn_{i}/mean" for i in range(10))
    runs = {f"run_{i:02d}": make_run(20_000, names=names, seed=i, offset=3 * i) for i in range(50)}
    started = time.perf_counter()
    picture = sv.render_static_view(runs, list(runs), None, [], {r: {"trainer": "grpo", "max_steps": 40_000}
                                                                 for r in runs})
    print(f"\n50 runs × 20 metrics × 20k steps: {1000 * (time.perf_counter() - started):.0f} ms, "
          f"{len(picture.png):,} B PNG, {len(picture.html):,} B HTML")
    assert len(picture.png) <= sv.MAX_PNG_BYTES and len(picture.html.encode()) <= sv.MAX_HTML_BYTES
    data = sv.StaticData.collect(runs, list(runs), None)
    assert len(data.runs) == sv.MAX_RUNS and data.hidden_runs == 40 and len(data.charts) <= sv.MAX_CHARTS
    assert picture.html.count("<tr>") == 1 + sv.MAX_HEADER_RUNS and "+44 more runs" in picture.html
    pixels = decode(picture.png)
    frame = sv._Layout(data).frames[0]
    for colour in sv.PALETTE:  # the ten drawn runs, each in its own colour
        assert near(frame_pixels(pixels, frame), colour, 30).sum() > 20, colour


def test_png_encoder_keeps_the_cap_for_any_image():
    noise = np.random.default_rng(0).integers(0, 256, (800, 1000, 3), dtype=np.uint8)
    for cap in (sv.MAX_PNG_BYTES, 90_000, 20_000):
        png = sv._encode_png(Image.fromarray(noise, "RGB"), max_bytes=cap)
        assert len(png) <= cap
        decode(png)
    run = make_run(100_000, noise=3.0)
    picture = sv.render_static_view({"r": run}, max_png_bytes=30_000)
    assert len(picture.png) <= 30_000 and decode(picture.png).shape[0] > 100
    bundle = picture.mime_bundle(image_in_html=True)
    assert set(bundle) == {"image/png", "text/html"} and picture.png_base64() in bundle["text/html"]
    assert '<img src="data:image/png;base64,' in bundle["text/html"] and "<!--rldk-image-->" not in bundle["text/html"]


# ---- hostile text ------------------------------------------------------------------------------------------------
HOSTILE = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    '"><svg onload=alert(1)>',
    "javascript:alert(1)",
    "</td></tr></table><b style='position:fixed;inset:0'>overlay</b>",
    "\u202egnp.exe\u202c evil \u2066rtl\u2069",
    "$\\frac{1}{0}$ $$ \\undefinedmacro",
    "<!-- comment --><style>body{display:none}</style>",
    "x\x00y\x1b[31mz\ud800",
    "A" * 1_000_000,
]


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.comments.append(data)


def hostile_inputs():
    runs = {}
    for index, text in enumerate(HOSTILE):
        run = make_run(30, names=("loss", text), seed=index)
        runs[text if index % 2 else f"run{index}{text[:20]}"] = run
    alerts = [{"run_id": run_id, "type": text, "message": text, "step": 5, "severity": "critical", "metric": text,
               text[:30] or "k": text} for run_id, text in zip(runs, HOSTILE)]
    info = {run_id: {"trainer": text, "max_steps": 100} for run_id, text in zip(runs, HOSTILE)}
    return runs, list(runs), ["loss", *HOSTILE], alerts, info, {"level": "warning", "message": " | ".join(HOSTILE)}


@pytest.mark.parametrize("with_image", [False, True])
def test_hostile_text_is_escaped_and_capped(with_image):
    runs, order, charts, alerts, info, status = hostile_inputs()
    picture = sv.render_static_view(runs, order, charts, alerts, info, status)
    page = picture.html_with_image() if with_image else picture.html
    assert len(picture.html.encode()) <= sv.MAX_HTML_BYTES
    parser = Elements()
    parser.feed(page)
    parser.close()
    allowed = {"div", "b", "span", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "bdi"}
    allowed_attrs = {"style", "class"}
    if with_image:
        allowed, allowed_attrs = allowed | {"img"}, allowed_attrs | {"src", "width", "height", "alt"}
    assert {tag for tag, _ in parser.tags} <= allowed
    assert {name for _, attrs in parser.tags for name, _ in attrs} <= allowed_attrs
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert value is not None and not any(m in value.lower() for m in ("script", "onerror", "onload", "<",
                                                                              "javascript", "expression("))
            if name == "src":
                assert value.startswith("data:image/png;base64,") and tag == "img"
    assert parser.comments == ([] if with_image else ["rldk-image"])
    text = "".join(parser.text)
    assert "<script>window.__pwned=1</script>" in text  # shown as text
    assert '<img src=x onerror="window.__pwned=1">' in text
    assert not any(c in page for c in "\u202e\u202c\u2066\u2069\x00\x1b\ud800")  # no bidi override, no controls
    assert "A" * (sv.CAP_MESSAGE + 1) not in text and "A" * sv.CAP_TYPE + "…" in text  # 1 MB strings capped
    pixels = decode(picture.png)  # metric names with $…$ and TeX are drawn as plain text
    assert pixels.shape == (picture.height, picture.width, 3)


def test_every_text_of_the_summary_goes_through_clean_text():
    assert sv.clean_text("a\u202eb\nc\td\x7f", 100) == "a\ufffdb c d\ufffd"
    assert sv.clean_text("x" * 10, 4) == "xxxx…"
    assert sv.clean_text(None, 5) == "" and sv.clean_text(12, 5) == "12"


# ---- the summary ---------------------------------------------------------------------------------------------------
def test_summary_holds_the_header_tiles_and_the_newest_alerts():
    run = make_run(0)
    rows = [{"step": s, "reward_mean": 0.5 + s / 1000, "kl_mean": 0.01, "loss": 1 / (s + 1), "timestamp": 1e9 + 2 * s}
            for s in range(100)]
    run.add_records(rows)
    alerts = [{"run_id": "grpo_run", "type": f"type_{i}", "message": f"message {i}", "step": i, "severity":
               ("info", "warning", "critical")[i % 3], "metric": "kl_mean", "value": 0.1 * i, "threshold": 0.1}
              for i in range(15)]
    picture = sv.render_static_view({"grpo_run": run}, ["grpo_run"], None, alerts,
                                    {"grpo_run": {"max_steps": 400, "trainer": "grpo", "started": 1e9}},
                                    made_at=1_780_000_000)
    html = picture.html
    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(1_780_000_000))
    for expected in ("grpo_run", "(grpo)", "99 / 400 (24.8%)", ">0.599</td>", ">0.01</td>", ">0.5</td>",
                     ">10m 02s</td>", "15</b> (5 critical, 5 warning, 5 info), the newest 10",
                     "made by rldk_widget", "at step 99", made):
        assert expected in html, expected
    listed = [line for line in html.split("<li>")[1:]]
    assert [f"message {i}" in line for i, line in zip(range(14, 4, -1), listed)] == [True] * 10  # newest first
    assert "value=1.4" in listed[0] and "threshold=0.1" in listed[0]


def test_collect_copies_so_the_series_can_grow_while_rendering():
    run = make_run(1000)
    data = sv.StaticData.collect({"r": run})
    done = threading.Event()
    errors = []

    def draw():
        try:
            sv.render(data)
        except Exception as err:  # noqa: BLE001
            errors.append(err)
        done.set()

    thread = threading.Thread(target=draw)
    thread.start()
    while not done.is_set():  # appending while the picture is drawn: no BufferError (numpy holds copies)
        run.add_records([{"step": 1000 + i, "loss": 0.1} for i in range(50)])
    thread.join()
    assert not errors


def test_rendering_leaves_matplotlib_state_alone():
    before = dict(matplotlib.rcParams)
    with matplotlib.rc_context({"text.usetex": True, "path.sketch": (5, 50, 2), "lines.linewidth": 9,
                                "figure.autolayout": True, "font.family": "monospace"}):
        inside = dict(matplotlib.rcParams)
        picture = sv.render_static_view({"r": make_run(200)})  # TeX is not installed: using it would raise
        assert dict(matplotlib.rcParams) == inside
    assert dict(matplotlib.rcParams) == before
    if "matplotlib.pyplot" in sys.modules:
        assert not sys.modules["matplotlib.pyplot"].get_fignums()  # no figure of pyplot's was made
    decode(picture.png)


def test_nbconvert_html_of_a_saved_output_shows_the_picture_and_the_escaped_summary():
    """What `jupyter nbconvert --to html` makes of a saved dashboard output without widget state: it shows the
    text/html entry (it ranks text/html above image/png), so the picture must be inside the HTML to be seen."""
    nbformat = pytest.importorskip("nbformat")
    nbconvert = pytest.importorskip("nbconvert")
    runs, order, charts, alerts, info, status = hostile_inputs()
    picture = sv.render_static_view(runs, order, charts, alerts, info, status, max_png_bytes=90_000)
    view = {"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0, "model_id": "ab" * 16},
            "text/plain": "RLDKDashboard(...)"}
    pages = {}
    for variant, extra in (("summary", picture.mime_bundle()), ("image in html", picture.mime_bundle(True))):
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("dash", execution_count=1)
        cell.outputs = [nbformat.v4.new_output("display_data", data={**view, **extra})]
        nb.cells = [cell]
        pages[variant], _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    image = re.compile(r'<img [^>]*src="data:image/png;base64,')
    assert "made by rldk_widget" in pages["summary"] and not image.search(pages["summary"])
    assert len(image.findall(pages["image in html"])) == 1
    for page in pages.values():
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page and "<script>window.__pwned" not in page
        assert '<img src=x onerror="window.__pwned=1">' not in page and "RLDKDashboard(...)" not in page
