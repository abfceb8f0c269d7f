// Alerts where users look: a marker on the chart of the metric an alert is about (at its step, coloured by
// severity, its message, value, threshold and window on hover), and a banner in the header with the newest
// warning or critical alert until it is dismissed or a newer one replaces it. Data text goes through
// textContent, or through escapeHtml where plotly renders HTML (hover text).
import type { Data } from "plotly.js/lib/core";
import type { SamplesLink } from "./alerts";
import type { Alert, Severity, Store } from "./store";
import { el, escapeHtml, formatInt, formatValue } from "./dom";

export const SEVERITY_COLOR: Record<Severity, string> = { info: "#0288d1", warning: "#e07000", critical: "#d32f2f" };
const MAX_MARKERS = 200;
const MAX_HOVER_CHARS = 300;

function clip(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

function numberText(v: unknown): string {
  if (typeof v === "number") return formatValue(v);
  if (typeof v === "string") return clip(v, 40);
  return "–";
}

/** The metric an alert is about (the rules name it; alerts added by hand may not). */
export function alertMetric(a: Alert): string | null {
  return typeof a.metric === "string" && a.metric ? a.metric : null;
}

function hoverText(a: Alert): string {
  const parts = [
    `<b>${escapeHtml(a.severity)}</b> ${escapeHtml(clip(a.type || "alert", 60))}${a.computed ? " (computed by the viewer)" : ""}`,
    escapeHtml(clip(a.message, MAX_HOVER_CHARS)),
    `value ${escapeHtml(numberText(a.value))} · threshold ${escapeHtml(numberText(a.threshold))}` +
      (a.window !== undefined && a.window !== null ? ` · window ${escapeHtml(numberText(a.window))}` : ""),
    `step ${a.step === null ? "–" : formatInt(a.step)} · ${escapeHtml(clip(a.run_id, 60))}`,
  ];
  return parts.join("<br>");
}

/**
 * Marker traces for one chart: one trace per severity, at each alert's step and at the alert's value when it is
 * a finite number, else at the run's value nearest that step (a NaN alert still sits on its curve).
 * `customdata` holds the alert's index in `store.alerts` (for clicks).
 */
export function markerTraces(
  store: Store,
  chart: string,
  runs: string[],
  mapX: (runId: string, steps: Float64Array) => Float64Array | null,
): Data[] {
  const shown = new Set(runs);
  const bySeverity = new Map<Severity, { x: number[]; y: number[]; text: string[]; index: number[]; runs: string[] }>();
  let count = 0;
  const alerts = store.alerts;
  for (let i = alerts.length - 1; i >= 0 && count < MAX_MARKERS; i--) {
    const a = alerts[i];
    if (a.step === null || !Number.isFinite(a.step) || alertMetric(a) !== chart || !shown.has(a.run_id)) continue;
    const y = typeof a.value === "number" && Number.isFinite(a.value) ? a.value : nearestValue(store, a.run_id, chart, a.step);
    if (y === null) continue;
    let group = bySeverity.get(a.severity);
    if (!group) bySeverity.set(a.severity, (group = { x: [], y: [], text: [], index: [], runs: [] }));
    group.x.push(a.step);
    group.y.push(y);
    group.text.push(hoverText(a));
    group.index.push(i);
    group.runs.push(a.run_id);
    count++;
  }
  const traces: Data[] = [];
  for (const [severity, g] of bySeverity) {
    const xs = new Float64Array(g.x);
    let x: Float64Array = xs;
    if (g.runs.length) {
      // time mode: each alert's step on its own run's clock
      const mapped = new Float64Array(xs.length);
      let ok = true;
      g.runs.forEach((runId, k) => {
        const m = mapX(runId, xs.subarray(k, k + 1));
        if (!m) ok = false;
        else mapped[k] = m[0];
      });
      if (!ok) continue;
      x = mapped;
    }
    traces.push({
      type: "scatter",
      mode: "markers",
      x,
      y: g.y,
      customdata: g.index,
      text: g.text,
      hovertemplate: "%{text}<extra></extra>",
      marker: {
        symbol: severity === "critical" ? "x" : "triangle-up",
        size: severity === "critical" ? 11 : 10,
        color: SEVERITY_COLOR[severity],
        line: { width: 1.5, color: SEVERITY_COLOR[severity] },
      },
      meta: "rldk-alert",
      name: `${severity} alerts`,
      showlegend: false,
    } as unknown as Data);
  }
  return traces;
}

function nearestValue(store: Store, runId: string, chart: string, step: number): number | null {
  const s = store.series(runId, chart);
  if (!s || s.length === 0) return null;
  const xs = s.x();
  const ys = s.y();
  const j = Math.max(0, Math.min(xs.length - 1, s.floorIndex(step)));
  for (let d = 0; d < xs.length; d++) {
    for (const k of [j - d, j + d]) if (k >= 0 && k < ys.length && Number.isFinite(ys[k])) return ys[k];
    if (j - d < 0 && j + d >= ys.length) break;
  }
  return null;
}

/** The header's banner: the newest warning or critical alert, with the count of the others, until dismissed. */
export class AlertBanner {
  readonly el: HTMLElement;
  private sev: HTMLElement;
  private text: HTMLElement;
  private step: HTMLElement;
  private others: HTMLElement;
  private samplesBtn: HTMLButtonElement;
  /** the alert index the user dismissed (banners for older alerts stay hidden) */
  private dismissedUpTo = -1;
  private shownIndex = -1;

  constructor(
    private store: Store,
    onOpen: (alert: Alert, index: number) => void,
    onShowAll: () => void,
    private samples: SamplesLink | null = null,
  ) {
    this.sev = el("span", { className: "rldk-sev" });
    this.text = el("span", { className: "rldk-banner-msg" });
    this.step = el("span", { className: "rldk-banner-step" });
    this.others = el("button", { type: "button", className: "rldk-banner-others rldk-linkish" });
    const close = el("button", { type: "button", className: "rldk-banner-close", textContent: "×", title: "dismiss" });
    this.samplesBtn = el("button", { type: "button", className: "rldk-linkish rldk-samples-link", textContent: "samples", title: "the completions of this step (Samples tab)", hidden: true });
    this.el = el("div", { className: "rldk-banner", role: "alert", hidden: true }, [this.sev, this.text, this.step, this.samplesBtn, this.others, close]);
    this.samplesBtn.addEventListener("click", (e) => {
      e.stopPropagation();
      const i = this.shownIndex;
      if (i >= 0 && i < this.store.alerts.length) this.samples?.open(this.store.alerts[i]);
    });
    this.others.addEventListener("click", (e) => {
      e.stopPropagation();
      onShowAll();
    });
    close.addEventListener("click", (e) => {
      e.stopPropagation();
      this.dismissedUpTo = this.shownIndex;
      this.update();
    });
    this.el.addEventListener("click", () => {
      const i = this.shownIndex;
      if (i >= 0 && i < this.store.alerts.length) onOpen(this.store.alerts[i], i);
    });
  }

  update(): void {
    const alerts = this.store.alerts;
    let index = -1;
    let serious = 0;
    for (let i = alerts.length - 1; i >= 0; i--) {
      if (alerts[i].severity === "info") continue;
      serious++;
      if (index < 0) index = i;
    }
    if (index < 0 || index <= this.dismissedUpTo) {
      this.el.hidden = true;
      this.shownIndex = -1;
      return;
    }
    const a = alerts[index];
    this.shownIndex = index;
    this.el.hidden = false;
    this.el.className = `rldk-banner rldk-banner-${a.severity}`;
    this.sev.className = `rldk-sev rldk-sev-${a.severity}`;
    this.sev.textContent = a.severity;
    this.text.textContent = clip(a.message, 400);
    this.text.title = clip(a.message, 4000);
    this.step.textContent = a.step === null ? "" : `step ${formatInt(a.step)}`;
    this.others.textContent = serious > 1 ? `+${formatInt(serious - 1)} more` : "";
    this.others.hidden = serious <= 1;
    this.samplesBtn.hidden = !this.samples?.has(a);
  }

  /** A snapshot replaced the alerts: indices changed, so a dismissal applies to what is there now. */
  reset(): void {
    this.dismissedUpTo = Math.min(this.dismissedUpTo, this.store.alerts.length - 1);
  }
}
