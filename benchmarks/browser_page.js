// The browser benchmark's page code (driven by benchmarks/browser.py). It reuses the fake anywidget host of
// tests/browser_harness (FakeModel, per-call model proxies, data generators in the protocol's format) and
// loads the real bundle, rldk_widget/static/widget.js, the way anywidget does.
import { createModel, loadWidget, makeDelta, makeState, renderView } from "../tests/browser_harness/harness.js";

const RUN = "bench_run";
const MAX_STEPS = 1_000_000;
const CHARTS = 6;

const nextFrame = () => new Promise((resolve) => requestAnimationFrame(resolve));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let current = null; // {model, views, lengths}

/** requestAnimationFrame timestamps until stopped: the frames the page actually produced. */
function recordFrames() {
  const stamps = [];
  let on = true;
  const tick = (t) => {
    stamps.push(t);
    if (on) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  return () => {
    on = false;
    return stamps;
  };
}

function frameStats(stamps) {
  const gaps = [];
  for (let i = 1; i < stamps.length; i++) gaps.push(stamps[i] - stamps[i - 1]);
  gaps.sort((a, b) => a - b);
  const span = stamps[stamps.length - 1] - stamps[0];
  const pick = (q) => gaps[Math.min(gaps.length - 1, Math.ceil(q * gaps.length) - 1)];
  return {
    frames: gaps.length,
    seconds: span / 1000,
    fps: (gaps.length / span) * 1000,
    frame_ms_median: pick(0.5),
    frame_ms_p95: pick(0.95),
    frame_ms_max: gaps[gaps.length - 1],
    frames_over_33ms: gaps.filter((g) => g > 1000 / 30).length,
    frames_over_50ms: gaps.filter((g) => g > 50).length,
  };
}

const viewClass = (view) => view.internals.view.constructor;

/** The charts of a view's visible tab: [{name, lastX of every trace}] (plotly's own data). */
function drawnCharts(view) {
  const out = [];
  for (const box of view.el.querySelectorAll(".rldk-chartpanel:not([hidden]) .rldk-chart")) {
    const gd = box.querySelector(".rldk-plot");
    if (!gd._fullLayout || !gd.data) continue;
    out.push(gd.data.map((t) => t.x[t.x.length - 1]));
  }
  return out;
}

/** Every one of the CHARTS charts is drawn and every trace ends at step `lastStep`. */
function showsStep(view, lastStep) {
  const charts = drawnCharts(view);
  return charts.length === CHARTS && charts.every((traces) => traces.length && traces.every((x) => x === lastStep));
}

/** Wait until no view has a frame or a throttled redraw pending, then for one more frame (painted). */
async function settle(view, maxFrames = 1200) {
  for (let i = 0; i < maxFrames; i++) {
    await nextFrame();
    if (!viewClass(view).busy) {
      await nextFrame();
      return;
    }
  }
  throw new Error("the view did not settle");
}

async function destroyCurrent() {
  if (!current) return;
  for (const v of current.views) await v.destroy();
  current.model.initCleanup?.();
  current = null;
}

/** A snapshot of `steps` steps (one run, 9 series, full resolution) as the JSON text of a kernel message. */
function snapshotText(steps) {
  const { state, lengths } = makeState({ runIds: [RUN], steps, maxSteps: MAX_STEPS });
  state.alerts = [];
  return { text: JSON.stringify(state), lengths };
}

const prepared = {};

/** Import the bundle (fetch, parse, evaluate 1.1 MB): what the first widget of a notebook page waits for. */
async function loadBundle() {
  const t0 = performance.now();
  await loadWidget();
  return performance.now() - t0;
}

/** Build the snapshot text once per size (not timed). */
function prepare({ steps }) {
  prepared[steps] = snapshotText(steps);
  return { snapshot_bytes: prepared[steps].text.length };
}

/**
 * Time to first render: parse the snapshot message, create the model (initialize), render one view, and wait
 * until all six default charts are drawn and painted. `text` defaults to the prepared snapshot of `steps`.
 */
async function firstRender({ steps, text = null }) {
  await destroyCurrent();
  await loadWidget();
  const source = text ?? prepared[steps].text;
  const lengths = text ? { [RUN]: steps } : { ...prepared[steps].lengths };
  await sleep(50);
  const t0 = performance.now();
  const state = JSON.parse(source);
  const tParsed = performance.now();
  const model = await createModel(state);
  const view = await renderView(model, document.getElementById("cell"));
  const tRendered = performance.now();
  let frames = 0;
  while (!showsStep(view, steps - 1) || viewClass(view).busy) {
    await nextFrame();
    if (++frames > 1200) throw new Error("first render did not finish");
  }
  await nextFrame(); // the frame with the last chart has been painted
  const t1 = performance.now();
  current = { model, views: [view], lengths };
  const stats = view.internals.view.stats;
  return {
    total_ms: t1 - t0,
    parse_ms: tParsed - t0,
    initialize_and_render_call_ms: tRendered - tParsed,
    charts_drawn_ms: t1 - tRendered,
    chart_draws: stats.draws,
    chart_draw_ms_max: stats.maxDrawMs,
    chart_draw_ms_sum: stats.drawMs,
  };
}

/** The next delta of `n` steps for the current model, as the JSON text of a kernel message. */
function deltaText(n) {
  const store = current.views[0].internals.store;
  return JSON.stringify(makeDelta(store.lastSeq + 1, current.lengths, n, MAX_STEPS));
}

const lastStep = () => current.lengths[RUN] - 1;

/**
 * Apply `n` appended steps while the snapshot's steps are shown, `reps` times:
 * - apply_ms: message in (JSON.parse of the delta + msg:custom: decode, store append, charts marked dirty);
 * - redraw_ms: then all six charts redrawn at once (View.flushAll), JavaScript only;
 * - scheduled: the view's own path (no flushAll): time until all six charts show the new last step, and the
 *   longest frame (rAF to rAF, incl. layout and paint) meanwhile. Waits out the chart throttle between reps.
 */
async function applyDeltas({ n, reps, pauseMs }) {
  const view = current.views[0];
  const sync = [];
  for (let r = 0; r < reps; r++) {
    await settle(view);
    const text = deltaText(n);
    const a = performance.now();
    current.model.trigger("msg:custom", JSON.parse(text), []);
    const b = performance.now();
    view.internals.view.flushAll();
    const c = performance.now();
    if (!showsStep(view, lastStep())) throw new Error("flushAll did not draw the delta");
    sync.push({ apply_ms: b - a, redraw_ms: c - b });
  }
  const scheduled = [];
  for (let r = 0; r < reps; r++) {
    await settle(view);
    await sleep(pauseMs);
    await nextFrame();
    const stop = recordFrames();
    await sleep(0);
    const text = deltaText(n);
    const a = performance.now();
    current.model.trigger("msg:custom", JSON.parse(text), []);
    while (!showsStep(view, lastStep())) await nextFrame();
    await nextFrame();
    const shown = performance.now() - a;
    const frames = frameStats(stop());
    scheduled.push({ shown_ms: shown, frames: frames.frames, frame_ms_max: frames.frame_ms_max });
  }
  return { sync, scheduled };
}

/** Render a second view of the current model into the sidebar (a cell view and a sidebar view). */
async function addSidebarView() {
  const view = await renderView(current.model, document.getElementById("sidebar"));
  current.views.push(view);
  await settle(view);
  return current.views.length;
}

/**
 * Stream: `seconds` of `stepsPerSecond` steps arriving as `messagesPerSecond` delta messages (the kernel's
 * throttle) while frames are recorded; chart draws and their cost from the views' own counters.
 */
async function stream({ seconds, stepsPerSecond, messagesPerSecond }) {
  const views = current.views;
  await settle(views[0]);
  const count = Math.round(seconds * messagesPerSecond);
  const perMessage = Math.round(stepsPerSecond / messagesPerSecond);
  const interval = 1000 / messagesPerSecond;
  const before = views.map((v) => ({ ...v.internals.view.stats }));
  const applyMs = [];
  const stop = recordFrames();
  await nextFrame();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const due = t0 + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const text = deltaText(perMessage);
    const a = performance.now();
    current.model.trigger("msg:custom", JSON.parse(text), []);
    applyMs.push(performance.now() - a);
  }
  await sleep(interval);
  const frames = frameStats(stop());
  const wall = performance.now() - t0;
  const after = views.map((v) => v.internals.view.stats);
  await settle(views[0]);
  for (const v of views) if (!showsStep(v, lastStep())) throw new Error("a view does not show the streamed steps");
  applyMs.sort((x, y) => x - y);
  return {
    ...frames,
    messages: count,
    steps: count * perMessage,
    apply_ms_median: applyMs[applyMs.length >> 1],
    apply_ms_max: applyMs[applyMs.length - 1],
    chart_draws: after.reduce((s, st, i) => s + st.draws - before[i].draws, 0),
    chart_main_thread_share: after.reduce((s, st, i) => s + st.drawMs - before[i].drawMs, 0) / wall,
  };
}

/** Frames of the page showing the current view with nothing arriving: the baseline of `stream`. */
async function idle({ seconds }) {
  await settle(current.views[0]);
  const stop = recordFrames();
  await sleep(seconds * 1000);
  return frameStats(stop());
}

/** Append `steps` steps in deltas of `perDelta`, every view redrawing all its charts every `redrawEvery` deltas. */
async function appendBulk({ steps, perDelta, redrawEvery }) {
  const count = Math.ceil(steps / perDelta);
  for (let i = 0; i < count; i++) {
    current.model.trigger("msg:custom", JSON.parse(deltaText(perDelta)), []);
    if ((i + 1) % redrawEvery === 0 || i === count - 1) {
      for (const v of current.views) v.internals.view.flushAll();
      await nextFrame();
    }
  }
  await settle(current.views[0]);
  return { steps: count * perDelta, last_step: lastStep() };
}

/** Bytes the store's columns hold (allocated capacity and the points in them) and the step count. */
function storeBytes() {
  const store = current.views[0].internals.store;
  let capacity = 0;
  let points = 0;
  let series = 0;
  for (const run of store.runs.values()) {
    for (const s of run.values()) {
      const n = s.length;
      capacity += s.xs.byteLength + s.ys.byteLength;
      points += n;
      series++;
    }
  }
  return { capacity_bytes: capacity, data_bytes: points * 16, series, steps: current.lengths[RUN] };
}

window.B = { loadBundle, prepare, firstRender, applyDeltas, addSidebarView, idle, stream, appendBulk, storeBytes, destroyCurrent };
window.__benchReady = true;
