// One rendered view of a dashboard model. Every view of a model reads the same Store.
import { AlertPanel, countAlerts } from "./alerts";
import { ChartGrid, readTheme, type ChartClick, type DrawStats, type Settings, type Theme } from "./charts";
import { RunColors } from "./colors";
import { el } from "./dom";
import { Header } from "./header";
import { AlertBanner } from "./markers";
import type { Requests } from "./requests";
import { RunsPanel, renderLegend } from "./runs";
import { SamplesPanel, SampleSource, isSampleChart } from "./samples";
import type { Alert, Store, StoreChange } from "./store";
import css from "./style.css";

/** TensorBoard's default: RL metrics are noisy; the raw line stays visible, faint, behind the smoothed one */
const DEFAULT_SMOOTHING = 0.6;
const CORE_DEFAULTS = ["reward_mean", "kl_mean", "loss", "entropy_mean", "grad_norm", "learning_rate"];
/** chart drawing stops for this frame once this much time went by (one chart is always drawn) */
const FRAME_BUDGET_MS = 12;
/**
 * While data streams in, a round of chart redraws (all views of the page) that cost T ms is followed by
 * T × DUTY_FACTOR ms without streaming chart redraws: charts take at most ~10% of the main thread however fast
 * deltas arrive and however many views are open. Tiles and alerts still update every frame, and user actions
 * (tabs, picker, smoothing, resize, a new snapshot) draw at once.
 */
const DUTY_FACTOR = 9;
const MAX_CHART_INTERVAL_MS = 1500;
const PREFIX_DEFAULT_MAX = 12;
/** a folder of more runs than this opens on the Runs tab */
const RUNS_FIRST_ABOVE = 10;

/** One requestAnimationFrame loop for every view on the page. */
class Scheduler {
  private views = new Set<View>();
  private frame = 0;
  private timer: ReturnType<typeof setTimeout> | 0 = 0;
  private nextChartAt = 0;
  private roundMs = 0;
  /** performance.now() when the current streaming round began; 0 = none in progress */
  private roundStart = 0;

  add(v: View): void {
    this.views.add(v);
  }

  remove(v: View): void {
    this.views.delete(v);
    if (!this.views.size) {
      if (this.frame) cancelAnimationFrame(this.frame);
      if (this.timer) clearTimeout(this.timer);
      this.frame = 0;
      this.timer = 0;
    }
  }

  get busy(): boolean {
    return this.frame !== 0 || this.timer !== 0;
  }

  request(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.run();
    });
  }

  private later(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(
      () => {
        this.timer = 0;
        this.request();
      },
      Math.max(0, ms),
    );
  }

  /**
   * One frame: the cheap parts of every view; then charts of views with a user action pending (no throttle);
   * then the streaming round: the charts that were dirty when the round began (charts dirtied meanwhile wait
   * for the next round), at most FRAME_BUDGET_MS per frame, and after the round a pause of DUTY_FACTOR × its
   * cost.
   */
  run(): void {
    const start = performance.now();
    const deadline = start + FRAME_BUDGET_MS;
    for (const v of this.views) v.flushCheap();
    let drew = false;
    for (const v of this.views) {
      if (!v.urgent) continue;
      const n = v.stats.draws;
      const done = v.flushCharts(deadline, Infinity);
      drew ||= v.stats.draws > n;
      if (!done) return this.request();
      v.urgent = false;
    }
    if (this.roundStart === 0) {
      let any = false;
      for (const v of this.views) any ||= v.hasDirtyCharts(Infinity);
      if (!any) return;
      if (start < this.nextChartAt) return this.later(this.nextChartAt - start);
      this.roundStart = start;
    }
    for (const v of this.views) {
      if (!v.hasDirtyCharts(this.roundStart)) continue;
      if (drew && performance.now() > deadline) return this.request();
      const before = v.stats.drawMs;
      const done = v.flushCharts(deadline, this.roundStart);
      this.roundMs += v.stats.drawMs - before;
      drew = true;
      if (!done) return this.request();
    }
    const now = performance.now();
    for (const v of this.views) v.stats.lastRoundMs = this.roundMs;
    this.nextChartAt = now + Math.min(MAX_CHART_INTERVAL_MS, this.roundMs * DUTY_FACTOR);
    this.roundMs = 0;
    this.roundStart = 0;
    let more = false;
    for (const v of this.views) more ||= v.hasDirtyCharts(Infinity);
    if (more) this.later(this.nextChartAt - now);
  }
}

const scheduler = new Scheduler();

type TabId = "charts" | "runs" | "alerts" | "ppo" | "ckpt" | "samples";

const isPrefixed = (n: string) => n.startsWith("ppo:") || n.startsWith("ckpt:");

export class View {
  readonly root: HTMLElement;
  private store: Store;
  private settings: Settings = { xMode: "step", smoothing: DEFAULT_SMOOTHING, logY: false, focus: null, highlight: null };
  /** this view's colours of runs (charts, header, alerts, runs table): by run or by a runs-table column */
  readonly colors: RunColors;
  readonly runsPanel: RunsPanel;
  /** the Charts tab's content (legend + chart grid); shown under the runs table on the Runs tab */
  private chartsWrap: HTMLElement;
  private legendEl: HTMLElement;
  private colorSignature = "";
  /** the colour scale knows whether the page is dark (re-read after a theme change) */
  private themeKnown = false;
  /** the user picked a tab: the view no longer opens the Runs tab by itself */
  private tabChosen = false;
  private header: Header;
  private banner: AlertBanner;
  private focusBtn: HTMLButtonElement;
  private grids: Record<"charts" | "ppo" | "ckpt", ChartGrid>;
  private alerts: AlertPanel;
  private samples: SamplesPanel;
  private tabBtns: Record<TabId, HTMLButtonElement>;
  private alertBadge: HTMLElement;
  private toolbar: HTMLElement;
  private statusEl: HTMLElement;
  private timeBtn: HTMLButtonElement;
  private stepBtn: HTMLButtonElement;
  private active: TabId = "charts";
  /** a user action or a snapshot is waiting: draw charts without waiting for the duty cycle */
  urgent = true;
  readonly stats: DrawStats & { frames: number; lastRoundMs: number } = {
    draws: 0,
    drawMs: 0,
    maxDrawMs: 0,
    estimate: 8,
    frames: 0,
    lastRoundMs: 0,
  };
  private headerDirty = true;
  private theme: Theme | null = null;
  private unsubscribe: () => void;
  private ticker: ReturnType<typeof setInterval>;
  private themeObserver: MutationObserver;
  private destroyed = false;

  constructor(
    store: Store,
    host: HTMLElement,
    readonly requests: Requests,
    select: (runIds: string[]) => void = () => {},
    sampleSource: SampleSource = new SampleSource(),
  ) {
    this.store = store;
    this.colors = new RunColors(store);
    const colorOf = this.colors.colorOf;
    const getTheme = () => (this.theme ??= readTheme(this.root));
    const req = (urgent: boolean) => this.schedule(urgent);
    const click = (c: ChartClick) => this.onChartClick(c);

    this.header = new Header(store, colorOf);
    // the Samples tab (samples.ts): a run's completions, from chart points and alerts too
    const toSamples = (alert: Alert) => alert.step !== null && this.openSamples(alert.run_id, alert.step);
    const hasSamples = (alert: Alert) => alert.step !== null && this.samples.has(alert.run_id);
    this.samples = new SamplesPanel(sampleSource, requests, colorOf, () => store.orderedRuns(), (available) => {
      if (!this.tabBtns) return; // called once while this constructor runs: the tab is set up below
      this.tabBtns.samples.hidden = !available;
      this.alerts.onChange({ kind: "meta", series: new Set(), runs: new Set(), alerts: true, all: false });
      this.headerDirty = true;
      this.schedule();
    });
    this.banner = new AlertBanner(store, (alert) => this.focusAlert(alert), () => this.setTab("alerts"), { has: hasSamples, open: toSamples });
    this.grids = {
      charts: new ChartGrid(
        store,
        this.settings,
        {
          accept: (n) => n !== "timestamp" && !isPrefixed(n),
          title: (n) => n,
          defaults: (s) => (s.defaultCharts.length ? s.defaultCharts : CORE_DEFAULTS),
          emptyText: "Waiting for metrics…",
          colorOf,
        },
        getTheme,
        req,
        click,
      ),
      ppo: new ChartGrid(
        store,
        this.settings,
        {
          accept: (n) => n.startsWith("ppo:"),
          title: (n) => n.slice(4),
          defaults: (s) => s.seriesNames().filter((n) => n.startsWith("ppo:")).slice(0, PREFIX_DEFAULT_MAX),
          emptyText: "No PPO metrics.",
          colorOf,
        },
        getTheme,
        req,
        click,
      ),
      ckpt: new ChartGrid(
        store,
        this.settings,
        {
          accept: (n) => n.startsWith("ckpt:"),
          title: (n) => n.slice(5),
          defaults: (s) => s.seriesNames().filter((n) => n.startsWith("ckpt:")).slice(0, PREFIX_DEFAULT_MAX),
          emptyText: "No checkpoint metrics.",
          colorOf,
        },
        getTheme,
        req,
        click,
      ),
    };
    this.alerts = new AlertPanel(store, colorOf, (alert) => this.focusAlert(alert), { has: hasSamples, open: toSamples });
    this.runsPanel = new RunsPanel(store, requests, this.colors, {
      select,
      hover: (runId) => this.setHighlight(runId),
      colorBy: (key) => this.setColorBy(key),
    });
    this.legendEl = el("div", { className: "rldk-legend", hidden: true });
    this.chartsWrap = el("div", { className: "rldk-chartswrap" }, [this.legendEl, this.grids.charts.el]);

    // tabs
    this.alertBadge = el("span", { className: "rldk-badge" });
    const tab = (id: TabId, label: string, extra?: Node) => {
      const b = el("button", { type: "button", className: "rldk-tab", role: "tab" }, [label]);
      if (extra) b.append(extra);
      b.dataset.tab = id;
      b.addEventListener("click", () => {
        this.tabChosen = true;
        this.setTab(id);
      });
      return b;
    };
    this.tabBtns = {
      charts: tab("charts", "Charts"),
      runs: tab("runs", "Runs"),
      alerts: tab("alerts", "Alerts ", this.alertBadge),
      ppo: tab("ppo", "PPO"),
      ckpt: tab("ckpt", "Checkpoints"),
      samples: tab("samples", "Samples"),
    };
    this.tabBtns.samples.hidden = !this.samples.available;

    // toolbar: x axis, smoothing, log-y (shared by the chart tabs of this view)
    this.stepBtn = el("button", { type: "button", className: "rldk-seg rldk-seg-on", textContent: "step" });
    this.timeBtn = el("button", { type: "button", className: "rldk-seg", textContent: "time" });
    this.stepBtn.addEventListener("click", () => this.setXMode("step"));
    this.timeBtn.addEventListener("click", () => this.setXMode("time"));
    const smoothVal = el("span", { className: "rldk-smooth-val", textContent: DEFAULT_SMOOTHING.toFixed(2) });
    const slider = el("input", {
      type: "range",
      min: "0",
      max: "0.99",
      step: "0.01",
      value: String(DEFAULT_SMOOTHING),
      className: "rldk-slider",
      title: "EMA smoothing (0 = raw)",
    });
    slider.addEventListener("input", () => {
      this.settings.smoothing = Math.min(0.99, Math.max(0, Number(slider.value) || 0));
      smoothVal.textContent = this.settings.smoothing.toFixed(2);
      this.allDirty();
    });
    const logBox = el("input", { type: "checkbox" });
    logBox.addEventListener("change", () => {
      this.settings.logY = logBox.checked;
      this.allDirty();
    });
    this.focusBtn = el("button", { type: "button", className: "rldk-btn rldk-btn-small rldk-focus", hidden: true, title: "show every step again" });
    this.focusBtn.addEventListener("click", () => this.clearFocus());
    this.toolbar = el("div", { className: "rldk-toolbar" }, [
      this.focusBtn,
      el("span", { className: "rldk-ctl" }, [el("span", { className: "rldk-ctl-label", textContent: "x" }), el("span", { className: "rldk-segs" }, [this.stepBtn, this.timeBtn])]),
      el("label", { className: "rldk-ctl" }, [el("span", { className: "rldk-ctl-label", textContent: "smooth" }), slider, smoothVal]),
      el("label", { className: "rldk-ctl" }, [logBox, el("span", { className: "rldk-ctl-label", textContent: "log y" })]),
    ]);

    this.statusEl = el("div", { className: "rldk-status", hidden: true });
    const style = el("style", { textContent: css });
    this.root = el("div", { className: "rldk-root" }, [
      style,
      this.header.el,
      this.banner.el,
      el("div", { className: "rldk-bar" }, [
        el("div", { className: "rldk-tabs", role: "tablist" }, Object.values(this.tabBtns)),
        this.toolbar,
      ]),
      this.chartsWrap,
      this.runsPanel.el,
      this.grids.ppo.el,
      this.grids.ckpt.el,
      this.alerts.el,
      this.samples.el,
      this.statusEl,
    ]);
    host.append(this.root);

    scheduler.add(this);
    this.unsubscribe = store.subscribe((c) => this.onChange(c));
    this.ticker = setInterval(() => this.header.tick(), 1000);
    // JupyterLab switches themes by changing attributes on <body>; re-read colours then
    this.themeObserver = new MutationObserver(() => {
      this.theme = null;
      this.themeKnown = false;
      this.allDirty();
    });
    this.themeObserver.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name", "class", "style"] });

    this.onChange({ kind: "snapshot", series: new Set(), runs: new Set(), alerts: true, all: true });
    this.setTab((store.runsTable?.total ?? 0) > RUNS_FIRST_ABOVE ? "runs" : "charts");
  }

  /** A runs-table row is pointed at: that run stands out on every chart, the others fade (this view only). */
  setHighlight(runId: string | null): void {
    if (this.settings.highlight === runId) return;
    this.settings.highlight = runId;
    this.grids.charts.applyHighlight();
    this.grids.ppo.applyHighlight();
    this.grids.ckpt.applyHighlight();
  }

  /** Colour the runs by a runs-table column (null: by run). */
  setColorBy(key: string | null): void {
    this.colors.colorBy = key;
    this.colorsMaybeChanged();
  }

  /** The one colour function's answers may have changed: redraw what shows colours. */
  private colorsMaybeChanged(): void {
    const sig = this.colors.signature();
    renderLegend(this.legendEl, this.colors.legend(), (k) => k);
    if (sig === this.colorSignature) return;
    this.colorSignature = sig;
    this.headerDirty = true;
    this.alerts.onChange({ kind: "meta", series: new Set(), runs: new Set(), alerts: true, all: true });
    this.runsPanel.colorsChanged();
    this.allDirty();
  }

  private onChange(change: StoreChange): void {
    this.headerDirty = true;
    if (change.kind === "snapshot") this.banner.reset();
    this.grids.charts.onChange(change);
    this.grids.ppo.onChange(change);
    this.grids.ckpt.onChange(change);
    this.alerts.onChange(change);
    this.runsPanel.onChange(change);
    if (change.kind !== "delta") this.colorsMaybeChanged();
    this.updateTabs();
    this.updateStatus();
    this.schedule(change.kind !== "delta" || change.selection === true); // a selection draws at once
  }

  private updateTabs(): void {
    const names = this.store.seriesNames();
    const hasPpo = names.some((n) => n.startsWith("ppo:"));
    const hasCkpt = names.some((n) => n.startsWith("ckpt:"));
    this.tabBtns.ppo.hidden = !hasPpo;
    this.tabBtns.ckpt.hidden = !hasCkpt;
    const runs = this.store.runsTable?.total ?? 0;
    this.tabBtns.runs.hidden = runs <= 1;
    if ((this.active === "ppo" && !hasPpo) || (this.active === "ckpt" && !hasCkpt) || (this.active === "runs" && runs <= 1)) {
      this.setTab("charts");
    } else if (!this.tabChosen && this.active === "charts" && runs > RUNS_FIRST_ABOVE && this.tabBtns) {
      this.setTab("runs"); // the table arrived (or grew past ten runs) before the user picked a tab
    }
    const c = countAlerts(this.store.alerts, this.store.olderAlerts);
    this.alertBadge.textContent = `(${c.total})`;
    this.alertBadge.className = "rldk-badge" + (c.critical ? " rldk-badge-critical" : c.warning ? " rldk-badge-warning" : "");
  }

  private updateStatus(): void {
    const { level, message } = this.store.status;
    this.statusEl.hidden = level === "ok" && !message;
    this.statusEl.className = `rldk-status rldk-status-${level}`;
    this.statusEl.textContent = message || level;
  }

  setTab(id: TabId): void {
    this.active = id;
    for (const [k, b] of Object.entries(this.tabBtns)) {
      b.classList.toggle("rldk-tab-on", k === id);
      b.setAttribute("aria-selected", String(k === id));
    }
    // the charts show under the runs table too: hovering a row highlights its run, a checkbox adds it
    if (id === "runs") this.runsPanel.chartSlot.append(this.chartsWrap);
    else if (this.chartsWrap.parentElement !== this.root) this.runsPanel.el.before(this.chartsWrap);
    this.runsPanel.setVisible(id === "runs");
    this.grids.charts.setVisible(id === "charts" || id === "runs");
    this.chartsWrap.hidden = !(id === "charts" || id === "runs");
    this.grids.ppo.setVisible(id === "ppo");
    this.grids.ckpt.setVisible(id === "ckpt");
    this.alerts.setVisible(id === "alerts");
    this.samples.setVisible(id === "samples");
    this.toolbar.hidden = id === "alerts" || id === "samples";
    this.schedule(true);
  }

  /** Move the charts to an alert's step (the Charts tab, a range around it, a line at it). */
  focusAlert(alert: Alert): void {
    if (alert.step === null || !Number.isFinite(alert.step)) {
      this.setTab("alerts");
      return;
    }
    this.focusStep(alert.step, alert.run_id);
  }

  focusStep(step: number, runId: string): void {
    let last = 0;
    const run = this.store.runs.get(runId);
    if (run) for (const s of run.values()) if (Number.isFinite(s.lastX)) last = Math.max(last, s.lastX);
    const span = Math.max(10, Math.round(Math.max(last, step) * 0.05));
    this.settings.focus = { step, span, revision: (this.settings.focus?.revision ?? 0) + 1 };
    this.focusBtn.textContent = `step ${step.toLocaleString("en-US")} ×`;
    this.focusBtn.hidden = false;
    if (this.active !== "charts" && this.active !== "runs") this.setTab("charts");
    this.allDirty();
  }

  clearFocus(): void {
    this.settings.focus = null;
    this.focusBtn.hidden = true;
    this.allDirty();
  }

  private onChartClick(click: ChartClick): void {
    if (click.kind === "alert") {
      const alert = this.store.alerts[click.index];
      if (alert) this.focusAlert(alert);
    } else if (isSampleChart(click.chart)) {
      this.openSamples(click.runId, click.step);
    }
  }

  /** The Samples tab at `step` of `runId` (the batch logged at or before it); false if the run has none. */
  openSamples(runId: string, step: number): boolean {
    if (!this.samples.has(runId)) return false;
    this.samples.open(runId, step); // before the tab shows: it asks for this step, not the newest
    this.setTab("samples");
    return true;
  }

  private setXMode(mode: "step" | "time"): void {
    this.settings.xMode = mode;
    this.stepBtn.classList.toggle("rldk-seg-on", mode === "step");
    this.timeBtn.classList.toggle("rldk-seg-on", mode === "time");
    this.allDirty();
  }

  private allDirty(): void {
    this.grids.charts.markAllDirty();
    this.grids.ppo.markAllDirty();
    this.grids.ckpt.markAllDirty();
    this.schedule(true);
  }

  /** Coalesce any number of store changes into one redraw per animation frame. */
  schedule(urgent = false): void {
    if (this.destroyed) return;
    if (urgent) this.urgent = true;
    scheduler.request();
  }

  /** Header tiles and the alert list: cheap, every frame something changed. */
  flushCheap(): void {
    if (this.destroyed) return;
    this.stats.frames++;
    if (!this.themeKnown && this.root.isConnected) {
      this.themeKnown = true;
      this.theme ??= readTheme(this.root);
      const [r, g, b] = (this.theme.fg.match(/[\d.]+/g) ?? ["0", "0", "0"]).map(Number);
      this.colors.setDark(0.299 * r + 0.587 * g + 0.114 * b > 140); // light text: a dark page
      this.colorsMaybeChanged();
    }
    if (this.headerDirty) {
      this.headerDirty = false;
      this.header.update();
      this.banner.update();
    }
    if (this.active === "alerts") this.alerts.flush();
    if (this.active === "runs") this.runsPanel.flush();
  }

  /** The chart grid the visible tab shows (the Runs tab shows the Charts tab's), null for none. */
  private chartTab(): "charts" | "ppo" | "ckpt" | null {
    if (this.active === "alerts" || this.active === "samples") return null;
    return this.active === "runs" ? "charts" : this.active;
  }

  /** Charts of the visible tab that became dirty at or before `since` (performance.now()) wait to be drawn. */
  hasDirtyCharts(since: number): boolean {
    const tab = this.chartTab();
    return !this.destroyed && tab !== null && this.grids[tab].hasDirty(since);
  }

  /** Draw the visible tab's charts dirty since `since` until the deadline; true when none is left. */
  flushCharts(deadline: number, since: number): boolean {
    const tab = this.chartTab();
    if (this.destroyed || tab === null) return true;
    return this.grids[tab].flush(deadline, this.stats, since);
  }

  /** Test / benchmark hook: draw everything dirty now, ignoring frame budget and throttle. */
  flushAll(): void {
    this.flushCheap();
    while (!this.flushCharts(0, Infinity)) {
      /* one chart per call */
    }
  }

  /** true while a frame or a throttled redraw is pending for any view (tests wait for this to clear) */
  static get busy(): boolean {
    return scheduler.busy;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    scheduler.remove(this);
    this.unsubscribe();
    clearInterval(this.ticker);
    this.themeObserver.disconnect();
    this.grids.charts.destroy();
    this.grids.ppo.destroy();
    this.grids.ckpt.destroy();
    this.samples.destroy();
    this.root.remove();
  }
}
