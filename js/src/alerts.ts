// Alert panel: newest first, severity colours, filter by severity. Data text via textContent only.
import type { Alert, Severity, Store, StoreChange } from "./store";
import { el, formatClock, formatInt, formatValue } from "./dom";

const STANDARD_KEYS = new Set(["run_id", "type", "message", "step", "severity", "timestamp", "computed"]);
const MAX_ROWS = 500;
const SEVERITY_ORDER: Severity[] = ["critical", "warning", "info"];

/** A link from an alert to the samples of its step (the Samples tab), offered when its run has samples. */
export interface SamplesLink {
  has: (alert: Alert) => boolean;
  open: (alert: Alert) => void;
}

export interface AlertCounts {
  total: number;
  critical: number;
  warning: number;
  info: number;
}

/** Counts by severity of `alerts` plus `older` ones that are counted but not held. */
export function countAlerts(alerts: Alert[], older?: Record<Severity, number>): AlertCounts {
  const c: AlertCounts = { total: alerts.length, critical: 0, warning: 0, info: 0 };
  for (const a of alerts) c[a.severity]++;
  if (older) {
    for (const sev of SEVERITY_ORDER) {
      c[sev] += older[sev];
      c.total += older[sev];
    }
  }
  return c;
}

function extraText(v: unknown): string {
  if (typeof v === "number") return formatValue(v);
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return String(v);
  try {
    const s = JSON.stringify(v);
    return s.length > 80 ? s.slice(0, 77) + "…" : s;
  } catch {
    return "?";
  }
}

export class AlertPanel {
  readonly el: HTMLElement;
  private chips: HTMLElement;
  private list: HTMLElement;
  private more: HTMLElement;
  private filter: Severity | "all" = "all";
  private visible = false;
  private dirty = true;

  constructor(
    private store: Store,
    private colorOf: (runId: string) => string,
    private onOpen: (alert: Alert) => void = () => {},
    private samples: SamplesLink | null = null,
  ) {
    this.chips = el("div", { className: "rldk-alert-filters" });
    this.list = el("div", { className: "rldk-alert-list", role: "list" });
    this.more = el("div", { className: "rldk-muted rldk-alert-more" });
    this.el = el("div", { className: "rldk-alertpanel" }, [this.chips, this.list, this.more]);
    this.chips.addEventListener("click", (e) => {
      const b = (e.target as HTMLElement).closest("button");
      const f = b?.dataset.filter;
      if (!f) return;
      this.filter = f as Severity | "all";
      this.dirty = true;
      this.flush();
    });
  }

  onChange(change: StoreChange): void {
    if (change.alerts || change.all) this.dirty = true;
  }

  setVisible(v: boolean): void {
    this.visible = v;
    this.el.hidden = !v;
    if (v) this.flush();
  }

  flush(): void {
    if (!this.visible || !this.dirty) return;
    this.dirty = false;
    const alerts = this.store.alerts;
    const counts = countAlerts(alerts, this.store.olderAlerts);
    const older = counts.total - alerts.length;
    this.renderChips(counts);
    const rows = document.createDocumentFragment();
    let shown = 0;
    let matching = 0;
    for (let i = alerts.length - 1; i >= 0; i--) {
      const a = alerts[i];
      if (this.filter !== "all" && a.severity !== this.filter) continue;
      matching++;
      if (shown < MAX_ROWS) {
        rows.append(this.row(a));
        shown++;
      }
    }
    if (!matching) {
      rows.append(el("div", { className: "rldk-empty", textContent: alerts.length ? "No alerts of this severity." : "No alerts yet." }));
    }
    this.list.replaceChildren(rows);
    const parts = [];
    if (matching > shown) parts.push(`showing the newest ${shown} of ${formatInt(matching)}`);
    if (older > 0) parts.push(`${formatInt(older)} older alerts are counted above but not listed here (dash.alerts in Python has all)`);
    this.more.textContent = parts.join("; ");
  }

  private renderChips(c: AlertCounts): void {
    const mk = (key: Severity | "all", label: string, n: number) => {
      const b = el("button", {
        type: "button",
        className: `rldk-chip rldk-chip-${key}` + (this.filter === key ? " rldk-chip-on" : ""),
        textContent: `${label} ${formatInt(n)}`,
      });
      b.dataset.filter = key;
      b.setAttribute("aria-pressed", String(this.filter === key));
      return b;
    };
    this.chips.replaceChildren(
      mk("all", "All", c.total),
      ...SEVERITY_ORDER.map((s) => mk(s, s[0].toUpperCase() + s.slice(1), c[s])),
    );
  }

  private row(a: Alert): HTMLElement {
    const sev = el("span", { className: `rldk-sev rldk-sev-${a.severity}`, textContent: a.severity });
    const type = el("span", { className: "rldk-alert-type", textContent: a.type || "alert" });
    const dot = el("span", { className: "rldk-dot" });
    dot.style.background = this.colorOf(a.run_id);
    const run = el("span", { className: "rldk-alert-run", title: a.run_id }, [dot, document.createTextNode(a.run_id)]);
    const step = el("span", { className: "rldk-alert-step", textContent: a.step === null ? "" : `step ${formatInt(a.step)}` });
    const time = el("span", { className: "rldk-alert-time", textContent: formatClock(a.timestamp) });
    const line: Node[] = [sev, type, run, step, time];
    if (a.computed) line.push(el("span", { className: "rldk-alert-computed", textContent: "computed by the viewer", title: "this run has no alerts of its own: the dashboard ran the alert rules on what it read" }));
    if (this.samples?.has(a)) {
      const link = el("button", { type: "button", className: "rldk-linkish rldk-samples-link", textContent: "samples", title: "the completions of this step (Samples tab)" });
      link.addEventListener("click", (e) => {
        e.stopPropagation();
        this.samples?.open(a);
      });
      line.push(link);
    }
    const msg = el("div", { className: "rldk-alert-msg", textContent: a.message });
    const extras: string[] = [];
    for (const [k, v] of Object.entries(a)) {
      if (STANDARD_KEYS.has(k) || v === null || v === undefined) continue;
      extras.push(`${k}=${extraText(v)}`);
    }
    const children: Node[] = [el("div", { className: "rldk-alert-line" }, line), msg];
    if (extras.length) children.push(el("div", { className: "rldk-alert-extra", textContent: extras.join("  ") }));
    const row = el("div", { className: `rldk-alert rldk-alert-${a.severity}`, role: "listitem" }, children);
    if (a.step !== null) {
      row.classList.add("rldk-alert-clickable");
      row.title = "show this step on the charts";
      row.addEventListener("click", () => this.onOpen(a));
    }
    return row;
  }
}
