// The chart grid: one SVG plotly chart per metric, one colour per run, EMA smoothing, min/max downsampling.
import Plotly from "plotly.js/lib/core";
import scatter from "plotly.js/lib/scatter";
import type { Data, Layout, Config } from "plotly.js/lib/core";
import { Decimator, Ema, MeanDecimator, gather } from "./downsample";
import type { Series, Store, StoreChange } from "./store";
import { el, escapeHtml, formatValue, isBad } from "./dom";
import { markerTraces } from "./markers";

Plotly.register([scatter]);

export { PALETTE, runColor } from "./colors";

/** Names are data: plotly shows them in hover labels (escaped); a path of a deep sweep is cut, not the label. */
function clipName(s: string): string {
  return s.length > 80 ? s.slice(0, 79) + "…" : s;
}

function withAlpha(hex: string, a: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
}

/** the .rldk-plot box height in style.css */
const PLOT_HEIGHT = 180;

export interface Focus {
  step: number;
  /** half the width of the step range shown around it */
  span: number;
  /** bumped per focus, so charts apply its range once and keep the user's zoom after that */
  revision: number;
}

export interface Settings {
  xMode: "step" | "time";
  smoothing: number;
  logY: boolean;
  focus: Focus | null;
  /** a run the user points at (a row of the runs table): drawn on top, the others fade; view-local */
  highlight: string | null;
}

/** Opacity factor of the runs that are not the highlighted one (their lines stay visible as context). */
export const FADED = 0.2;

/** What a click on a chart asks for: the alert behind a marker, or the step of a point of a run. */
export type ChartClick = { kind: "alert"; index: number } | { kind: "point"; chart: string; runId: string; step: number };

export interface Theme {
  fg: string;
  muted: string;
  grid: string;
  bg: string;
  border: string;
  font: string;
}

/** Parse `rgb(...)` / `rgba(...)` (what getComputedStyle returns for colours). */
function parseRgb(c: string): [number, number, number, number] | null {
  const m = /^rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)(?:\s*[,/]\s*([\d.]+%?))?\s*\)$/.exec(c.trim());
  if (!m) return null;
  let a = m[4] === undefined ? 1 : parseFloat(m[4]);
  if (m[4]?.endsWith("%")) a /= 100;
  return [+m[1], +m[2], +m[3], a];
}

function rgba(c: [number, number, number, number], a: number): string {
  return `rgba(${c[0]},${c[1]},${c[2]},${a})`;
}

/**
 * Colours for plotly, resolved at render time from the widget root: the text colour it actually has
 * (JupyterLab variable or inherited from the host page), grid / border as translucent versions of it, and the
 * first opaque background up the tree for hover labels. Works for light and dark hosts alike.
 */
export function readTheme(root: HTMLElement): Theme {
  const cs = getComputedStyle(root);
  const fgc = parseRgb(cs.color) ?? [31, 35, 40, 1];
  let bg = "";
  for (let n: Element | null = root; n; n = n.parentElement) {
    const c = parseRgb(getComputedStyle(n).backgroundColor);
    if (c && c[3] > 0.5) {
      bg = rgba(c, 1);
      break;
    }
  }
  if (!bg) {
    const lum = 0.299 * fgc[0] + 0.587 * fgc[1] + 0.114 * fgc[2];
    bg = lum > 128 ? "rgb(30,30,30)" : "rgb(255,255,255)";
  }
  return {
    fg: rgba(fgc, 1),
    muted: rgba(fgc, 0.68),
    grid: rgba(fgc, 0.1),
    bg,
    border: rgba(fgc, 0.28),
    font: cs.fontFamily || "system-ui, sans-serif",
  };
}

/** min/max buckets per trace: one per plot pixel, ~2 points each, at most ~2000 points */
const MAX_BUCKETS = 1000;
const MIN_BUCKETS = 200;
const BAND_SIBLINGS: Array<[RegExp, string]> = [
  [/_mean$/, "_std"],
  [/\/mean$/, "/std"],
];

function bandSibling(name: string): string | null {
  for (const [re, rep] of BAND_SIBLINGS) if (re.test(name)) return name.replace(re, rep);
  return null;
}

// caches keyed on Series objects (a snapshot makes new Series, so stale entries die with them)
const emaCache = new WeakMap<Series, Ema>();
const decimators = new WeakMap<object, Map<number, Decimator>>();
const meanDecimators = new WeakMap<object, Map<number, MeanDecimator>>();

/** Bucket means of a smoothed column owned by `owner` (an Ema): middle indices + values, or null for all. */
function decimateMean(owner: object, y: Float64Array, buckets: number): { idx: Uint32Array; y: Float64Array } | null {
  let byN = meanDecimators.get(owner);
  if (!byN) {
    byN = new Map();
    meanDecimators.set(owner, byN);
  }
  let d = byN.get(buckets);
  if (!d) {
    d = new MeanDecimator(buckets);
    byN.set(buckets, d);
  }
  return d.update(y);
}

/** Indices of `y` to draw (null: all), from an incremental decimator owned by `owner` (a Series or an Ema). */
function decimate(owner: object, y: Float64Array, buckets: number): Uint32Array | null {
  let byN = decimators.get(owner);
  if (!byN) {
    byN = new Map();
    decimators.set(owner, byN);
  }
  let d = byN.get(buckets);
  if (!d) {
    d = new Decimator(buckets);
    byN.set(buckets, d);
  }
  return d.update(y);
}
function smoother(s: Series, w: number): Ema {
  let e = emaCache.get(s);
  if (!e || e.weight !== w) {
    e = new Ema(w);
    emaCache.set(s, e);
  }
  return e;
}

/** Map steps to display times (ms, shifted so plotly's UTC date axis shows local time) via the run's `timestamp`. */
function stepsToTime(ts: Series, steps: Float64Array): Float64Array {
  const tx = ts.x();
  const ty = ts.y();
  const n = tx.length;
  const out = new Float64Array(steps.length);
  const tz = new Date().getTimezoneOffset() * 60000;
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i];
    let t: number;
    const j = ts.floorIndex(s);
    if (j < 0) t = ty[0];
    else if (j >= n - 1 || tx[j] === s) t = ty[j];
    else {
      const x0 = tx[j];
      const x1 = tx[j + 1];
      t = x1 > x0 ? ty[j] + ((ty[j + 1] - ty[j]) * (s - x0)) / (x1 - x0) : ty[j];
    }
    out[i] = t * 1000 - tz;
  }
  return out;
}

/** Values `src` of series `other` at the steps `xs` (exact step match, else NaN). */
function alignTo(other: Series, xs: Float64Array, src: Float64Array): Float64Array {
  const out = new Float64Array(xs.length);
  const ox = other.x();
  for (let i = 0; i < xs.length; i++) {
    const j = other.floorIndex(xs[i]);
    out[i] = j >= 0 && ox[j] === xs[i] ? src[j] : NaN;
  }
  return out;
}

export interface DrawStats {
  draws: number;
  drawMs: number;
  maxDrawMs: number;
  /** running estimate of one chart draw (ms) */
  estimate: number;
}

export interface GridOptions {
  /** which series this grid offers */
  accept: (name: string) => boolean;
  /** chart title for a series name (data text: goes through textContent) */
  title: (name: string) => string;
  /** the charts to show while the user has not picked any */
  defaults: (store: Store) => string[];
  emptyText: string;
  /** the colour of a run (colors.ts: the view's one colour function) */
  colorOf: (runId: string) => string;
}

interface Chart {
  name: string;
  box: HTMLElement;
  plot: HTMLElement;
  lastEl: HTMLElement;
  plotted: boolean;
  dirty: boolean;
  /** performance.now() when it became dirty */
  dirtyAt: number;
  revision: number;
  width: number;
  ro: ResizeObserver;
}

const PLOT_CONFIG: Partial<Config> = {
  displaylogo: false,
  responsive: false,
  displayModeBar: "hover",
  modeBarButtonsToRemove: ["select2d", "lasso2d", "zoomIn2d", "zoomOut2d", "toImage"],
  showTips: false,
  typesetMath: false,
  doubleClick: "reset+autosize",
};

export class ChartGrid {
  readonly el: HTMLElement;
  private grid: HTMLElement;
  private empty: HTMLElement;
  private pickerBtn: HTMLButtonElement;
  private pickerPanel: HTMLElement;
  private pickerSearch: HTMLInputElement;
  private pickerList: HTMLElement;
  private charts = new Map<string, Chart>();
  private order: string[] = [];
  /** null: follow the defaults; otherwise the user's pick, in order */
  private picked: string[] | null = null;
  private visible = false;
  private namesSeen = "";
  private destroyed = false;

  constructor(
    private store: Store,
    private settings: Settings,
    private opts: GridOptions,
    private getTheme: () => Theme,
    private requestFrame: (urgent: boolean) => void,
    private onClick: (click: ChartClick) => void = () => {},
  ) {
    this.pickerBtn = el("button", { className: "rldk-btn rldk-picker-btn", type: "button" });
    this.pickerBtn.setAttribute("aria-expanded", "false");
    this.pickerSearch = el("input", { className: "rldk-input", type: "search", placeholder: "filter metrics…" });
    this.pickerList = el("div", { className: "rldk-picker-list" });
    const defaultsBtn = el("button", { className: "rldk-btn rldk-btn-small", type: "button", textContent: "defaults" });
    const noneBtn = el("button", { className: "rldk-btn rldk-btn-small", type: "button", textContent: "none" });
    this.pickerPanel = el("div", { className: "rldk-picker-panel", hidden: true }, [
      el("div", { className: "rldk-picker-tools" }, [this.pickerSearch, defaultsBtn, noneBtn]),
      this.pickerList,
    ]);
    this.grid = el("div", { className: "rldk-grid" });
    this.empty = el("div", { className: "rldk-empty", textContent: opts.emptyText });
    this.el = el("div", { className: "rldk-chartpanel" }, [
      el("div", { className: "rldk-picker" }, [this.pickerBtn, this.pickerPanel]),
      this.empty,
      this.grid,
    ]);

    this.pickerBtn.addEventListener("click", () => this.togglePicker());
    this.pickerSearch.addEventListener("input", () => this.renderPickerList());
    this.pickerSearch.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.togglePicker(false);
    });
    defaultsBtn.addEventListener("click", () => {
      this.picked = null;
      this.syncCharts();
      this.renderPickerList();
    });
    noneBtn.addEventListener("click", () => {
      this.picked = [];
      this.syncCharts();
      this.renderPickerList();
    });
    this.pickerList.addEventListener("change", (e) => {
      const t = e.target as HTMLInputElement;
      const name = t.dataset.name;
      if (name === undefined) return;
      const cur = this.picked ?? this.currentNames();
      this.picked = t.checked ? [...cur.filter((n) => n !== name), name] : cur.filter((n) => n !== name);
      this.syncCharts();
      this.updatePickerBtn();
    });
    this.syncCharts();
  }

  /** Names offered by this grid (sorted). */
  available(): string[] {
    return this.store.seriesNames().filter(this.opts.accept);
  }

  private currentNames(): string[] {
    if (this.picked) return this.picked;
    return this.opts.defaults(this.store).filter((n) => this.opts.accept(n) && this.store.hasSeries(n));
  }

  private togglePicker(open?: boolean): void {
    const show = open ?? this.pickerPanel.hidden;
    this.pickerPanel.hidden = !show;
    this.pickerBtn.setAttribute("aria-expanded", String(show));
    if (show) {
      this.renderPickerList();
      this.pickerSearch.focus();
    }
  }

  private updatePickerBtn(): void {
    const n = this.currentNames().length;
    const total = this.available().length;
    this.pickerBtn.textContent = `Metrics ${n}/${total} ▾`;
  }

  private renderPickerList(): void {
    if (this.pickerPanel.hidden) return;
    const q = this.pickerSearch.value.trim().toLowerCase();
    const names = this.available();
    this.pickerSearch.hidden = names.length <= 8 && !q;
    const chosen = new Set(this.currentNames());
    const frag = document.createDocumentFragment();
    let shown = 0;
    for (const name of names) {
      const title = this.opts.title(name);
      if (q && !name.toLowerCase().includes(q)) continue;
      const cb = el("input", { type: "checkbox", checked: chosen.has(name) });
      cb.dataset.name = name;
      frag.append(el("label", { className: "rldk-picker-item", title: name }, [cb, document.createTextNode(title)]));
      shown++;
    }
    if (!shown) frag.append(el("div", { className: "rldk-muted", textContent: names.length ? "no match" : "no metrics yet" }));
    this.pickerList.replaceChildren(frag);
    this.updatePickerBtn();
  }

  /** Create / remove chart boxes so they match the current selection. */
  private syncCharts(): void {
    const names = this.currentNames();
    const want = new Set(names);
    for (const [name, c] of this.charts) {
      if (!want.has(name)) {
        this.destroyChart(c);
        this.charts.delete(name);
      }
    }
    for (const name of names) if (!this.charts.has(name)) this.charts.set(name, this.createChart(name));
    // order in the DOM = selection order
    const same = this.order.length === names.length && this.order.every((n, i) => n === names[i]);
    if (!same) {
      this.grid.replaceChildren(...names.map((n) => this.charts.get(n)!.box));
      this.order = names.slice();
    }
    this.empty.hidden = names.length > 0;
    this.empty.textContent = this.available().length ? "No charts selected — pick metrics above." : this.opts.emptyText;
    this.updatePickerBtn();
    this.requestFrame(true);
  }

  private createChart(name: string): Chart {
    const title = el("span", { className: "rldk-chart-title", textContent: this.opts.title(name), title: name });
    const lastEl = el("span", { className: "rldk-chart-last" });
    const close = el("button", { className: "rldk-chart-close", type: "button", textContent: "×", title: "remove chart" });
    const plot = el("div", { className: "rldk-plot" });
    const box = el("div", { className: "rldk-chart" }, [el("div", { className: "rldk-chart-head" }, [title, lastEl, close]), plot]);
    close.addEventListener("click", () => {
      this.picked = this.currentNames().filter((n) => n !== name);
      this.syncCharts();
      this.renderPickerList();
    });
    const chart: Chart = { name, box, plot, lastEl, plotted: false, dirty: true, dirtyAt: 0, revision: 0, width: -1, ro: null as unknown as ResizeObserver };
    chart.ro = new ResizeObserver((entries) => {
      const w = Math.round(entries[entries.length - 1].contentRect.width);
      if (w === chart.width) return;
      const prev = chart.width;
      chart.width = w;
      if (w <= 0) return;
      if (!chart.plotted || prev <= 0 || this.buckets(w) !== this.buckets(prev)) {
        this.markDirty(chart); // (re)draw with a downsampling target for the new width
        this.requestFrame(true);
      } else {
        void Plotly.relayout(chart.plot, { width: w });
      }
    });
    chart.ro.observe(plot);
    return chart;
  }

  private destroyChart(c: Chart): void {
    c.ro.disconnect();
    if (c.plotted) Plotly.purge(c.plot);
    c.plotted = false;
    c.box.remove();
  }

  setVisible(v: boolean): void {
    this.visible = v;
    this.el.hidden = !v;
    if (v) this.requestFrame(true);
  }

  /** React to a store change: new names → maybe new default charts; data → dirty charts. */
  onChange(change: StoreChange): void {
    const names = this.available();
    const key = names.join("\u0000") + "|" + this.store.defaultCharts.join("\u0000");
    if (key !== this.namesSeen) {
      this.namesSeen = key;
      this.syncCharts();
      this.renderPickerList();
    }
    const timeMode = this.settings.xMode === "time";
    for (const c of this.charts.values()) {
      const sib = bandSibling(c.name);
      if (
        change.all ||
        change.series.has(c.name) ||
        (timeMode && change.series.has("timestamp")) ||
        (sib !== null && change.series.has(sib))
      )
        this.markDirty(c);
    }
  }

  markAllDirty(): void {
    for (const c of this.charts.values()) this.markDirty(c);
  }

  /** Some visible chart became dirty at or before `since`. */
  hasDirty(since: number): boolean {
    if (!this.visible) return false;
    for (const c of this.charts.values()) if (c.dirty && c.dirtyAt <= since && this.widthOf(c) > 0) return true;
    return false;
  }

  /** Plot width from the ResizeObserver; measured once directly before its first report. */
  private widthOf(c: Chart): number {
    if (c.width < 0 && c.box.isConnected) c.width = c.plot.clientWidth;
    return c.width;
  }

  private markDirty(c: Chart): void {
    if (c.dirty) return;
    c.dirty = true;
    c.dirtyAt = performance.now();
  }

  /**
   * Redraw dirty, visible charts while the frame budget lasts (always at least one). Returns true when all
   * are done. `stats` accumulates draws and their cost (for throttling and the benchmarks).
   */
  flush(deadline: number, stats: DrawStats, since = Infinity): boolean {
    if (!this.visible || this.destroyed) return true;
    let drawn = 0;
    for (const name of this.order) {
      const c = this.charts.get(name);
      if (!c || !c.dirty || c.dirtyAt > since) continue;
      if (this.widthOf(c) <= 0) continue; // hidden (width from the ResizeObserver): redraw when it is shown again
      const now = performance.now();
      if (drawn > 0 && now + stats.estimate > deadline) return false;
      this.draw(c);
      const ms = performance.now() - now;
      stats.draws++;
      stats.drawMs += ms;
      stats.maxDrawMs = Math.max(stats.maxDrawMs, ms);
      stats.estimate = stats.estimate * 0.7 + ms * 0.3;
      drawn++;
    }
    return true;
  }

  private buckets(width: number): number {
    const b = Math.round(width / 100) * 100;
    return Math.max(MIN_BUCKETS, Math.min(MAX_BUCKETS, b));
  }

  private draw(c: Chart): void {
    c.dirty = false;
    const theme = this.getTheme();
    const { data, lasts, flat } = this.traces(c);
    this.renderLasts(c, lasts);
    c.revision++;
    const timeMode = this.settings.xMode === "time";
    const focus = this.focusRange(timeMode);
    const axisCommon = {
      gridcolor: theme.grid,
      zerolinecolor: theme.grid,
      linecolor: theme.border,
      tickcolor: theme.border,
      tickfont: { size: 10, color: theme.muted },
      showline: false,
      zeroline: false,
      // "hide past div" (the default) measures every tick label against every other on each redraw
      ticklabeloverflow: "allow",
    };
    const layout: Partial<Layout> = {
      // explicit size: Plotly.react keeps an autosized plot's old size, so a box that shrank (the grid
      // gained a column) would keep a too-wide SVG
      width: this.widthOf(c),
      height: PLOT_HEIGHT,
      datarevision: c.revision,
      uirevision: `${this.settings.xMode}|${this.settings.logY}|${this.settings.focus?.revision ?? 0}`,
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: theme.font, size: 11, color: theme.fg },
      margin: { l: 46, r: 10, t: 4, b: 22, pad: 0 },
      showlegend: false,
      hovermode: "x unified",
      hoverlabel: { bgcolor: theme.bg, bordercolor: theme.border, font: { color: theme.fg, size: 11 } },
      modebar: { bgcolor: "rgba(0,0,0,0)", color: theme.muted, activecolor: theme.fg },
      xaxis: {
        ...axisCommon,
        type: timeMode ? "date" : "linear",
        automargin: false,
        nticks: 6,
        hoverformat: timeMode ? "%H:%M:%S" : ",d",
        ...(focus ? { range: focus.range } : {}),
      },
      shapes: focus
        ? [{ type: "line", xref: "x", yref: "paper", x0: focus.at, x1: focus.at, y0: 0, y1: 1, line: { color: theme.muted, width: 1, dash: "dot" } }]
        : [],
      yaxis: {
        ...axisCommon,
        type: this.settings.logY ? "log" : "linear",
        automargin: false,
        exponentformat: "e",
        nticks: 5,
        hoverformat: ".4~g",
        // a constant series: plotly would centre ±1 on 0, so a learning rate of 1e-5 looked like 0
        ...(flat !== null && !this.settings.logY ? { range: flat === 0 ? [-1, 1] : [flat - Math.abs(flat) * 0.5, flat + Math.abs(flat) * 0.5] } : {}),
      },
    } as Partial<Layout>;
    if (!c.plotted) {
      void Plotly.newPlot(c.plot, data, layout, PLOT_CONFIG).then(() => this.listen(c));
      c.plotted = true;
    } else {
      void Plotly.react(c.plot, data, layout, PLOT_CONFIG);
    }
  }

  /** The focused step and the x range around it, in the axis' units (time mode: the first run's clock). */
  private focusRange(timeMode: boolean): { at: number; range: [number, number] } | null {
    const f = this.settings.focus;
    if (!f) return null;
    if (!timeMode) return { at: f.step, range: [f.step - f.span, f.step + f.span] };
    for (const runId of this.store.orderedRuns()) {
      const ts = this.store.series(runId, "timestamp");
      if (!ts || ts.length === 0) continue;
      const t = stepsToTime(ts, new Float64Array([f.step - f.span, f.step, f.step + f.span]));
      return { at: t[1], range: [t[0], t[2]] };
    }
    return null;
  }

  /** Clicks on a drawn chart: an alert marker, or a point of a run's curve. */
  private listen(c: Chart): void {
    const plot = c.plot as HTMLElement & { on?: (event: string, fn: (e: unknown) => void) => void };
    plot.on?.("plotly_click", (event: unknown) => {
      type Point = { data?: { meta?: unknown; rldkRun?: unknown }; customdata?: unknown; x?: unknown };
      const points = (event as { points?: Point[] }).points ?? [];
      // "x unified" hover reports every trace at the step: an alert marker among them wins
      const marker = points.find((p) => p.data?.meta === "rldk-alert" && typeof p.customdata === "number");
      if (marker) {
        this.onClick({ kind: "alert", index: marker.customdata as number });
        return;
      }
      const p = points.find((q) => typeof q.data?.rldkRun === "string");
      if (!p) return;
      const step = typeof p.customdata === "number" ? p.customdata : this.settings.xMode === "step" ? p.x : NaN;
      if (typeof step === "number" && Number.isFinite(step)) {
        this.onClick({ kind: "point", chart: c.name, runId: p.data!.rldkRun as string, step });
      }
    });
  }

  private renderLasts(c: Chart, lasts: Array<[string, number]>): void {
    const frag = document.createDocumentFragment();
    for (const [color, v] of lasts.slice(0, 3)) {
      const span = el("span", { className: "rldk-chart-lastval" + (isBad(v) ? " rldk-bad" : ""), textContent: formatValue(v) });
      span.style.color = isBad(v) ? "" : color;
      frag.append(span);
    }
    c.lastEl.replaceChildren(frag);
  }

  private traces(c: Chart): { data: Data[]; lasts: Array<[string, number]>; flat: number | null } {
    const store = this.store;
    const w = this.settings.smoothing;
    const timeMode = this.settings.xMode === "time";
    const buckets = this.buckets(c.width > 0 ? c.width : 600);
    const runs = store.orderedRuns();
    const bands: Data[] = [];
    const raws: Data[] = [];
    const smooths: Data[] = [];
    const lasts: Array<[string, number]> = [];
    const sib = bandSibling(c.name);
    let lo = Infinity;
    let hi = -Infinity;
    const hl = this.settings.highlight !== null && runs.includes(this.settings.highlight) ? this.settings.highlight : null;
    const fade = (runId: string) => (hl === null || runId === hl ? 1 : FADED);
    runs.forEach((runId) => {
      const s = store.series(runId, c.name);
      if (!s || s.length === 0) return;
      const color = this.opts.colorOf(runId);
      const f = fade(runId);
      const wide = hl !== null && runId === hl ? 1 : 0;
      const ts = timeMode ? store.series(runId, "timestamp") : undefined;
      if (timeMode && (!ts || ts.length === 0)) return;
      const xs = s.x();
      const ys = s.y();
      lasts.push([color, ys[ys.length - 1]]);
      if (lo === hi || lo === Infinity) {
        for (let i = 0; i < ys.length; i++) {
          const v = ys[i];
          if (v - v !== 0) continue;
          if (v < lo) lo = v;
          if (v > hi) hi = v;
          if (lo !== hi) break; // not flat: nothing more to learn here
        }
      }
      const name = escapeHtml(clipName(store.runName(runId)));
      const mapX = (steps: Float64Array) => (ts ? stepsToTime(ts, steps) : steps);
      const sparse = xs.length <= 60;
      const mode = sparse ? "lines+markers" : "lines";

      // behind a smoothed line the raw envelope is context only: half the resolution is plenty
      const rawIdx = decimate(s, ys, w > 0 ? Math.max(MIN_BUCKETS, buckets >> 1) : buckets);
      const rawSteps = gather(xs, rawIdx);
      const rawX = mapX(rawSteps);
      raws.push({
        type: "scatter",
        mode,
        x: rawX,
        y: gather(ys, rawIdx),
        name: w > 0 ? `${name} (raw)` : name,
        line: { color, width: (w > 0 ? 1 : 1.5) + wide },
        marker: { color, size: 4 },
        opacity: (w > 0 ? 0.3 : 1) * f,
        hovertemplate: "%{y:.4~g}",
        showlegend: false,
        rldkRun: runId,
        rldkOpacity: w > 0 ? 0.3 : 1,
        rldkWidth: w > 0 ? 1 : 1.5,
        customdata: timeMode ? rawSteps : undefined,
      } as Data);

      let selSteps = rawSteps;
      let selX = rawX;
      let meanSel: Float64Array = gather(ys, rawIdx);
      let smoothOwner: Ema | null = null;
      if (w > 0) {
        // smoothed line: EMA over every point, drawn as bucket means (a thin line, no noise envelope)
        smoothOwner = smoother(s, w);
        const sm = smoothOwner.update(ys);
        const dm = decimateMean(smoothOwner, sm, buckets);
        selSteps = dm ? gather(xs, dm.idx) : xs.slice();
        meanSel = dm ? dm.y : sm.slice();
        selX = mapX(selSteps);
        smooths.push({
          type: "scatter",
          mode: sparse ? "lines+markers" : "lines",
          x: selX,
          y: meanSel,
          name,
          line: { color, width: 2 + wide },
          marker: { color, size: 4 },
          opacity: f,
          hovertemplate: "%{y:.4~g}",
          showlegend: false,
          rldkRun: runId,
          rldkOpacity: 1,
          rldkWidth: 2,
          customdata: timeMode ? selSteps : undefined,
        } as Data);
      }

      const std = sib ? store.series(runId, sib) : undefined;
      if (std && std.length > 0) {
        let sd: Float64Array;
        const sameGrid = std.length === xs.length && std.lastX === s.lastX && std.x()[0] === xs[0];
        if (w > 0) {
          const se = smoother(std, w);
          const ssm = se.update(std.y());
          const dm = sameGrid ? decimateMean(se, ssm, buckets) : null;
          sd = sameGrid ? (dm ? dm.y : ssm.slice()) : alignTo(std, selSteps, ssm);
        } else {
          sd = sameGrid ? gather(std.y(), rawIdx) : alignTo(std, selSteps, std.y());
        }
        const lo = new Float64Array(meanSel.length);
        const hi = new Float64Array(meanSel.length);
        for (let i = 0; i < meanSel.length; i++) {
          lo[i] = meanSel[i] - sd[i];
          hi[i] = meanSel[i] + sd[i];
        }
        const fill = withAlpha(color, 0.15);
        const band = { opacity: f, rldkRun: runId, rldkOpacity: 1, rldkWidth: 0 };
        bands.push(
          { type: "scatter", mode: "lines", x: selX, y: lo, line: { width: 0, color: fill }, hoverinfo: "skip", showlegend: false, ...band } as Data,
          {
            type: "scatter",
            mode: "lines",
            x: selX,
            y: hi,
            line: { width: 0, color: fill },
            fill: "tonexty",
            fillcolor: fill,
            hoverinfo: "skip",
            showlegend: false,
            ...band,
          } as Data,
        );
      }
    });
    const mapX = (runId: string, steps: Float64Array): Float64Array | null => {
      if (!timeMode) return steps;
      const ts = store.series(runId, "timestamp");
      return ts && ts.length > 0 ? stepsToTime(ts, steps) : null;
    };
    const markers = markerTraces(store, c.name, runs, mapX);
    const flat = lo === hi && bands.length === 0 ? lo : null;
    return { data: [...bands, ...raws, ...smooths, ...markers], lasts, flat };
  }

  /**
   * The highlight changed (a runs-table row is hovered): restyle what is drawn — opacity and line width only,
   * no new data, so it costs plotly a style pass per chart, not a redraw. Hidden charts get it when next drawn.
   */
  applyHighlight(): void {
    const hl = this.settings.highlight;
    for (const c of this.charts.values()) {
      if (!c.plotted || c.dirty) continue;
      type T = { rldkRun?: unknown; rldkOpacity?: unknown; rldkWidth?: unknown };
      const data = ((c.plot as HTMLElement & { data?: T[] }).data ?? []) as T[];
      const shown = hl !== null && data.some((t) => t.rldkRun === hl);
      const idx: number[] = [];
      const opacity: number[] = [];
      const width: number[] = [];
      data.forEach((t, i) => {
        if (typeof t.rldkRun !== "string" || typeof t.rldkOpacity !== "number" || typeof t.rldkWidth !== "number") return;
        idx.push(i);
        const on = !shown || t.rldkRun === hl;
        opacity.push(t.rldkOpacity * (on ? 1 : FADED));
        width.push(t.rldkWidth === 0 ? 0 : t.rldkWidth + (shown && on ? 1 : 0));
      });
      if (idx.length) void Plotly.restyle(c.plot, { opacity, "line.width": width } as never, idx);
    }
  }

  destroy(): void {
    this.destroyed = true;
    for (const c of this.charts.values()) this.destroyChart(c);
    this.charts.clear();
  }

  /** Number of charts currently drawn (tests). */
  get plottedCount(): number {
    let n = 0;
    for (const c of this.charts.values()) if (c.plotted) n++;
    return n;
  }
}
