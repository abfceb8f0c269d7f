// A fake anywidget host: a Backbone-like model, anywidget-style per-call model proxies, and data generators.
// Loads the built bundle (rldk_widget/static/widget.js) with import(), like anywidget does.

const BUNDLE = new URL("../../rldk_widget/static/widget.js", import.meta.url).href;

/** Backbone-ish model: attributes, events with context, change:<key> then change, msg:custom, send log. */
export class FakeModel {
  constructor(state) {
    this.attrs = { ...state };
    this.listeners = []; // {name, cb, ctx}
    this.sent = [];
    this.widget_manager = {};
  }
  get(k) { return this.attrs[k]; }
  set(k, v) { this.kernelSet({ [k]: v }); }
  save_changes() {}
  send(content) { this.sent.push(content); }
  on(name, cb, ctx) { this.listeners.push({ name, cb, ctx }); }
  off(name, cb, ctx) {
    this.listeners = this.listeners.filter((l) =>
      !((name == null || l.name === name) && (cb == null || l.cb === cb) && (ctx == null || l.ctx === ctx)));
  }
  trigger(name, ...args) { for (const l of this.listeners.slice()) if (l.name === name) l.cb(...args); }
  /** what a kernel state update does: set every attribute, then change:<key> each, then change */
  kernelSet(state) {
    const changed = Object.keys(state);
    // a JSON round trip: the view gets fresh objects, as from a comm message
    const fresh = JSON.parse(JSON.stringify(state));
    Object.assign(this.attrs, fresh);
    for (const k of changed) this.trigger("change:" + k);
    this.trigger("change");
  }
  custom(msg) { this.trigger("msg:custom", JSON.parse(JSON.stringify(msg)), []); }
  /** anywidget gives initialize and every render its own proxy object (listeners tagged with a context) */
  proxy(ctx) {
    const m = this;
    return {
      get: m.get.bind(m), set: m.set.bind(m), save_changes: m.save_changes.bind(m), send: m.send.bind(m),
      on(name, cb) { m.on(name, cb, ctx); }, off(name, cb) { m.off(name, cb, ctx); },
      widget_manager: m.widget_manager,
    };
  }
  listenerCount(ctx) { return this.listeners.filter((l) => ctx === undefined || l.ctx === ctx).length; }
}

// ---------------------------------------------------------------------------------------------------------
// data

export function b64(f64) {
  const bytes = new Uint8Array(f64.buffer, f64.byteOffset, f64.byteLength);
  if (bytes.toBase64) return bytes.toBase64();
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// unix seconds of step 0: the snapshot's last rows are then a few seconds old, like a live run
export const T0 = Math.floor(Date.now() / 1000) - 45000;
/** per-run start times, set by makeState so that every run's last snapshot row is ~now */
const T0S = [];

/** Values of the standard metrics at step s (deterministic given the run index and rand). */
function row(s, ri, rand, maxSteps) {
  const p = s / maxSteps;
  const noise = () => (rand() - 0.5) * 2;
  const lr = s < maxSteps * 0.05 ? 5e-6 * (s / (maxSteps * 0.05)) : 5e-6 * 0.5 * (1 + Math.cos(Math.PI * p));
  const o = {
    reward_mean: 0.2 + 0.6 * (1 - Math.exp(-4 * p)) + 0.05 * ri + 0.08 * noise(),
    reward_std: 0.25 - 0.1 * p + 0.03 * rand(),
    kl_mean: 0.002 + 0.08 * p * p * (1 + 0.5 * ri) + 0.004 * rand(),
    loss: 0.7 * Math.exp(-3 * p) + 0.05 + 0.04 * noise(),
    entropy_mean: 2.2 * Math.exp(-1.5 * p) + 0.3 + 0.05 * noise(),
    grad_norm: 0.6 + 0.3 * rand() + (rand() < 0.001 ? 8 * rand() : 0),
    learning_rate: lr,
    timestamp: (T0S[ri] ?? T0) + s * (0.45 + 0.1 * ri) + rand() * 0.1,
    "rewards/format/mean": Math.min(1, 0.3 + p + 0.1 * noise()),
  };
  return o;
}

/** Columnar data for steps [from, from+n) of run `ri`. `extra` adds ppo:* / ckpt:* series. */
export function genRun(ri, from, n, maxSteps, { nanEvery = 0, extra = false, stride = 1 } = {}) {
  const rand = rng(1234 + ri * 7919 + from);
  const cols = {};
  const steps = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = (from + i) * stride;
    steps[i] = s;
    const r = row(s, ri, rand, maxSteps);
    if (nanEvery && (from + i) % nanEvery === nanEvery - 1) r.loss = NaN;
    for (const [k, v] of Object.entries(r)) (cols[k] ??= new Float64Array(n))[i] = v;
  }
  const out = {};
  for (const [k, y] of Object.entries(cols)) out[k] = { x: b64(steps), y: b64(y) };
  if (extra) {
    const ppoN = Math.ceil(n / 10);
    const px = new Float64Array(ppoN), pv = new Float64Array(ppoN), pc = new Float64Array(ppoN), pe = new Float64Array(ppoN);
    for (let i = 0; i < ppoN; i++) {
      px[i] = steps[i * 10 < n ? i * 10 : n - 1];
      pv[i] = 0.5 * Math.exp(-px[i] / maxSteps * 3) + 0.05 * rand();
      pc[i] = 0.1 + 0.1 * rand();
      pe[i] = 0.3 + 0.2 * Math.sin(px[i] / 2000);
    }
    out["ppo:value_loss"] = { x: b64(px), y: b64(pv) };
    out["ppo:clip_frac"] = { x: b64(px), y: b64(pc) };
    out["ppo:explained_variance"] = { x: b64(px), y: b64(pe) };
    const ckN = Math.max(1, Math.floor(n / 5000));
    const cx = new Float64Array(ckN), cr = new Float64Array(ckN), ck = new Float64Array(ckN);
    for (let i = 0; i < ckN; i++) { cx[i] = steps[Math.min(n - 1, (i + 1) * 5000 - 1)]; cr[i] = 0.3 + 0.5 * (i / ckN) + 0.05 * rand(); ck[i] = 0.01 * i; }
    out["ckpt:reward_mean"] = { x: b64(cx), y: b64(cr) };
    out["ckpt:kl"] = { x: b64(cx), y: b64(ck) };
  }
  return out;
}

export function alert(run_id, step, severity, type, message, extra = {}) {
  return { run_id, type, message, step, severity, timestamp: T0 + step * 0.5, ...extra };
}

/** Initial model state: `steps` steps for each of `runIds` (second run 80% as long), seq `seq`. */
export function makeState({ runIds = ["grpo-qwen-0.5b", "grpo-qwen-0.5b-lr2x"], steps = 100000, maxSteps = 120000, seq = 1, extra = false, nanEvery = 0 } = {}) {
  const runs = {};
  const lengths = {};
  runIds.forEach((r, i) => {
    const n = i === 0 ? steps : Math.floor(steps * 0.8);
    T0S[i] = Date.now() / 1000 - 3 - n * (0.45 + 0.1 * i);
    lengths[r] = n;
    runs[r] = genRun(i, 0, n, maxSteps, { extra, nanEvery });
  });
  const alerts = [
    alert(runIds[0], 1200, "info", "warmup_done", "learning-rate warmup finished"),
    alert(runIds[0], Math.floor(steps * 0.4), "warning", "kl_spike", "KL 0.091 is 3.2× its recent median", { value: 0.091, threshold: 0.05 }),
  ];
  const info = {};
  for (const r of runIds) info[r] = { max_steps: maxSteps, trainer: "GRPOTrainer", started: T0 };
  return {
    lengths,
    state: {
      metrics: { seq, runs },
      alerts,
      run_ids: runIds,
      status: { level: "ok", message: "" },
      info,
      default_charts: [],
    },
  };
}

/** A delta with `n` new steps for every run (starting after `lengths[run]`), advancing lengths. */
export function makeDelta(seq, lengths, n, maxSteps = 120000, alerts = []) {
  const metrics = {};
  Object.keys(lengths).forEach((r, i) => {
    metrics[r] = genRun(i, lengths[r], n, maxSteps);
    lengths[r] += n;
  });
  return { type: "delta", seq, metrics, alerts };
}

// ---------------------------------------------------------------------------------------------------------
// host

let widgetPromise = null;
export function loadWidget() {
  widgetPromise ??= import(BUNDLE).then((m) => m.default);
  return widgetPromise;
}

/** Create a model, run initialize (as anywidget does: once per model, own proxy). */
export async function createModel(state) {
  const widget = await loadWidget();
  const model = new FakeModel(state);
  const initCleanup = await widget.initialize?.({ model: model.proxy("initialize") });
  model.initCleanup = initCleanup;
  return model;
}

let viewCounter = 0;
/** Render a view of `model` into `el` (own proxy, like anywidget's per-view context). */
export async function renderView(model, el) {
  const widget = await loadWidget();
  const ctx = "view" + ++viewCounter;
  const cleanup = await widget.render({ model: model.proxy(ctx), el });
  return {
    ctx,
    el,
    internals: el.__rldk,
    async destroy() { await cleanup?.(); model.off(null, null, ctx); },
  };
}

/** Resolve after every view has drawn everything dirty (waits for animation frames). */
export async function settle(views, maxFrames = 600) {
  let idle = 0;
  for (let i = 0; i < maxFrames; i++) {
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    const busy = views.some((v) => v.el.__rldk && v.el.__rldk.view.constructor.busy);
    idle = busy ? 0 : idle + 1;
    if (idle >= 2) return i;
  }
  throw new Error("views did not settle");
}

/** The plotly data of every drawn chart of a view, summarised: {title: [[n, firstX, lastX, lastY], ...]} */
export function chartSummary(view) {
  const out = {};
  for (const box of view.el.querySelectorAll(".rldk-chartpanel:not([hidden]) .rldk-chart")) {
    const title = box.querySelector(".rldk-chart-title").textContent;
    const gd = box.querySelector(".rldk-plot");
    out[title] = (gd.data || []).map((t) => [t.y.length, t.x[0], t.x[t.x.length - 1], t.y[t.y.length - 1]]);
  }
  return out;
}

window.H = { FakeModel, b64, genRun, makeState, makeDelta, alert, createModel, renderView, settle, chartSummary, loadWidget, T0 };
window.dispatchEvent(new Event("harness-ready"));
window.__harnessReady = true;

// ---------------------------------------------------------------------------------------------------------
// benchmarks (used by test_harness.py and the lead's browser benchmarks)

function longTaskObserver() {
  const tasks = [];
  let obs = null;
  try {
    obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) tasks.push(e.duration); });
    obs.observe({ type: "longtask", buffered: false });
  } catch { /* not supported */ }
  return { tasks, stop: () => obs?.disconnect() };
}

/**
 * Time to first render: create a model from a snapshot of `steps` steps × the standard metrics for 2 runs,
 * render one view into `el` and wait until every default chart is drawn (the real rAF-driven path).
 */
async function benchFirstRender({ steps = 100000, el = document.getElementById("view1") } = {}) {
  await loadWidget();
  const { state, lengths } = makeState({ steps });
  const t0 = performance.now();
  const model = await createModel(state);
  const tInit = performance.now();
  const view = await renderView(model, el);
  await settle([view]);
  const t1 = performance.now();
  const st = view.internals.view.stats;
  return { model, view, lengths, result: { init_ms: tInit - t0, first_render_ms: t1 - t0, charts: st.draws, max_chart_ms: st.maxDrawMs, frames: st.frames } };
}

/**
 * Streaming: `count` deltas of `stepsPerDelta` steps each, `intervalMs` apart, into a model with views.
 * Reports the synchronous cost of applying one delta (decode + append + listeners), the per-frame work, and
 * the share of the main thread spent drawing charts.
 */
async function benchStream(model, views, lengths, { count = 30, stepsPerDelta = 100, intervalMs = 100, seq0 } = {}) {
  let seq = seq0 ?? views[0].internals.store.lastSeq;
  const msgs = [];
  for (let i = 0; i < count; i++) msgs.push(JSON.parse(JSON.stringify(makeDelta(++seq, lengths, stepsPerDelta))));
  const applyMs = [];
  const before = views.map((v) => ({ ...v.internals.view.stats }));
  const lt = longTaskObserver();
  // per-frame main-thread time: measure the duration of each rAF callback chain via our own hook
  const t0 = performance.now();
  for (const m of msgs) {
    const a = performance.now();
    model.trigger("msg:custom", m, []);
    applyMs.push(performance.now() - a);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  await settle(views);
  const wall = performance.now() - t0;
  lt.stop();
  const after = views.map((v) => v.internals.view.stats);
  const drawMs = after.reduce((s, st, i) => s + st.drawMs - before[i].drawMs, 0);
  const draws = after.reduce((s, st, i) => s + st.draws - before[i].draws, 0);
  applyMs.sort((x, y) => x - y);
  return {
    deltas: count,
    steps_per_delta: stepsPerDelta,
    apply_ms_median: applyMs[Math.floor(applyMs.length / 2)],
    apply_ms_max: applyMs[applyMs.length - 1],
    chart_draws: draws,
    chart_draw_ms_mean: draws ? drawMs / draws : 0,
    chart_draw_ms_max: Math.max(...after.map((s) => s.maxDrawMs)),
    chart_main_thread_share: drawMs / wall,
    long_tasks: lt.tasks.length,
    long_task_ms_max: lt.tasks.length ? Math.max(...lt.tasks) : 0,
  };
}

/** Synchronous cost of one delta of `n` steps: apply + one full redraw of every view (no throttle). */
async function benchDeltaSync(model, views, lengths, n = 100) {
  const seq = model.get("metrics").seq;
  const store = views[0].internals.store;
  const m = JSON.parse(JSON.stringify(makeDelta(store.lastSeq + 1, lengths, n)));
  const a = performance.now();
  model.trigger("msg:custom", m, []);
  const b = performance.now();
  for (const v of views) v.internals.view.flushAll();
  const c = performance.now();
  return { apply_ms: b - a, redraw_all_ms: c - b, seq_before: seq };
}

Object.assign(window.H, { benchFirstRender, benchStream, benchDeltaSync });
