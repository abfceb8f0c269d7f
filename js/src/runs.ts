// The Runs tab (issue 17 §3): one row per run of a sweep (the `runs_table` trait), sortable by any column,
// filtered by text over id, name and configuration, a checkbox per row for the runs the charts show (the widget's
// `selected` trait), a hovered row highlights its run on every chart, colour by a column (colors.ts), and the
// configuration keys that differ between the selected runs. Rows are virtualised: a fixed row height, a body as
// tall as every row, and a small pool of row elements re-bound to the rows in view. A table of more rows than the
// trait holds (a sweep of more than a thousand runs) is paged through "runs.page" requests (requests.ts).
// Data text (ids, names, configuration keys and values, status) goes through textContent only.
import type { Legend, RunColors } from "./colors";
import { el, formatAgo, formatDuration, formatInt, formatValue } from "./dom";
import type { Requests } from "./requests";
import { normalizeColumns, normalizeRows, type Cell, type ColumnGroup, type RunsTable, type Store, type StoreChange } from "./store";

export const ROW_HEIGHT = 24;
/** rows the table shows at once before it scrolls */
const VIEW_ROWS = 14;
/** rows bound above and below the visible ones (a fast wheel stays filled) */
const OVERSCAN = 8;
/** runs the charts show at most (their series share one snapshot budget; a plot of 50 lines is already dense) */
export const MAX_SELECTED = 50;
/** rows of one "runs.page" request (paged mode) */
const PAGE_ROWS = 300;
const MAX_DIFF_KEYS = 30;
const MAX_TITLE = 1000;
const SEL_KEY = "__selected";
/** configuration keys that name a run rather than configure it (run_config.py IDENTITY_KEYS) */
const NAMING_KEYS = new Set([
  "output_path",
  "args.output_dir",
  "args.logging_dir",
  "args.run_name",
  "args.hub_model_id",
  "state.best_model_checkpoint",
  "state.trial_name",
]);
/** columns not shown: the run id is in the name's tooltip and the filter, max steps is in the step column */
const NOT_SHOWN = new Set(["run_id", "source", "folder", "started", "max_steps"]);
const GROUP_LABELS: Array<[ColumnGroup, string]> = [
  ["progress", "progress"],
  ["metrics", "metrics"],
  ["alerts", "alerts"],
  ["config", "config"],
];
const WIDTHS: Record<string, number> = { trainer: 64, status: 74, step: 96, duration_s: 72, last_activity: 88, duplicate_of: 140 };
const SEVERITY_LABEL: Record<string, string> = { "alerts.critical": "crit", "alerts.warning": "warn", "alerts.info": "info" };
const SEVERITY_TITLE: Record<string, string> = { "alerts.critical": "critical alerts", "alerts.warning": "warning alerts", "alerts.info": "info alerts" };

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

interface Col {
  key: string;
  /** index in the table's rows */
  index: number;
  kind: string;
  group: ColumnGroup;
  label: string;
  /** a small prefix line over the label ("last", "best", "args") */
  sub: string;
  width: number;
}

export interface RunsHooks {
  select(runIds: string[]): void;
  /** a row is pointed at (null: none) */
  hover(runId: string | null): void;
  /** colour the runs by this column (null: by run) */
  colorBy(key: string | null): void;
}

export interface RunsStats {
  sorts: number;
  lastSortMs: number;
  maxSortMs: number;
  renders: number;
  lastRenderMs: number;
  maxRenderMs: number;
  requests: number;
}

interface RowNodes {
  row: HTMLElement;
  box: HTMLInputElement;
  dot: HTMLElement;
  cells: HTMLElement[];
  texts: string[];
  bound: number;
  boundVersion: number;
}

interface Window {
  key: string;
  offset: number;
  rows: Cell[][];
  total: number;
}

/** A configuration number as people write it: 1e-5, 0.04, 3. */
export function formatConfig(v: number): string {
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return Number(v.toPrecision(4)).toExponential().replace("e+", "e");
  return String(Number(v.toPrecision(6)));
}

function cellText(v: Cell): string {
  if (v === null) return "";
  if (typeof v === "number") return formatConfig(v);
  return String(v);
}

/** A column wide enough for its (bold) label, within reason. */
function labelWidth(label: string, min: number): number {
  return Math.round(Math.max(min, Math.min(170, label.length * 7.6 + 34))); // + padding and the sort arrow
}

function clip(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

/** The text a filter term is looked for in: raw and shown forms of the id, name and configuration values. */
function haystack(row: Cell[], indexes: number[]): string {
  let out = "";
  for (const i of indexes) {
    const v = row[i];
    if (v === null) continue;
    const shown = cellText(v);
    out += "\u0000" + shown.toLowerCase();
    if (typeof v === "number") {
      if (String(v) !== shown) out += "\u0000" + String(v).toLowerCase();
      // as Python writes it (folder names, configs): 1e-05
      if (/e[-+]?\d$/.test(shown)) out += "\u0000" + shown.replace(/e([-+]?)(\d)$/, "e$10$2");
    }
  }
  return out;
}

function terms(text: string): string[] {
  return text.slice(0, 200).toLowerCase().split(/\s+/).filter(Boolean).slice(0, 8);
}

export function renderLegend(container: HTMLElement, legend: Legend, label: (key: string) => string): void {
  container.hidden = legend.kind === "run";
  if (legend.kind === "run") {
    container.replaceChildren();
    return;
  }
  const parts: Node[] = [el("span", { className: "rldk-legend-key", textContent: clip(label(legend.key), 60), title: legend.key.slice(0, MAX_TITLE) })];
  if (legend.kind === "continuous") {
    const bar = el("span", { className: "rldk-legend-bar" });
    bar.style.background = legend.gradient;
    parts.push(
      el("span", { className: "rldk-legend-min", textContent: formatConfig(legend.min) }),
      bar,
      el("span", { className: "rldk-legend-max", textContent: formatConfig(legend.max) }),
    );
    if (legend.log) parts.push(el("span", { className: "rldk-muted", textContent: "log scale" }));
  } else {
    for (const [value, color] of legend.entries) {
      const dot = el("span", { className: "rldk-dot" });
      dot.style.background = color;
      parts.push(el("span", { className: "rldk-legend-cat", title: value.slice(0, MAX_TITLE) }, [dot, el("span", { className: "rldk-legend-val", textContent: clip(value, 40) })]));
    }
    if (legend.more > 0) parts.push(el("span", { className: "rldk-muted", textContent: `+${legend.more} more (colours repeat)` }));
  }
  if (legend.missing > 0) {
    const dot = el("span", { className: "rldk-dot rldk-dot-missing" });
    parts.push(el("span", { className: "rldk-legend-cat rldk-muted" }, [dot, `no value (${legend.missing})`]));
  }
  container.replaceChildren(...parts);
}

export class RunsPanel {
  readonly el: HTMLElement;
  /** where the view puts the charts while this tab is shown */
  readonly chartSlot: HTMLElement;
  readonly stats: RunsStats = { sorts: 0, lastSortMs: 0, maxSortMs: 0, renders: 0, lastRenderMs: 0, maxRenderMs: 0, requests: 0 };
  private filterInput: HTMLInputElement;
  private countEl: HTMLElement;
  private noteEl: HTMLElement;
  private groupsEl: HTMLElement;
  private colorSelect: HTMLSelectElement;
  private scroll: HTMLElement;
  private head: HTMLElement;
  private body: HTMLElement;
  private emptyEl: HTMLElement;
  private diffEl: HTMLElement;

  private table: RunsTable | null = null;
  private cols: Col[] = [];
  private hiddenGroups = new Set<ColumnGroup>();
  private sort: { key: string; desc: boolean } | null = null;
  private filterText = "";
  /** local mode: the rows' filter text, and the shown rows (indices into table.rows) in display order */
  private hay: string[] = [];
  private order: number[] = [];
  /** paged mode: the rows of the last page asked for */
  private window: Window | null = null;
  private pending: { key: string; offset: number } | null = null;
  private pool: RowNodes[] = [];
  private poolShape = "";
  private idIdx = -1;
  private nameIdx = -1;
  private folderIdx = -1;
  private maxStepsIdx = -1;
  private nameCol = -1;
  private layoutShape = "";
  private optionsShape = "";
  private visible = false;
  private tableDirty = true;
  private rowsDirty = true;
  private diffDirty = true;
  private bindVersion = 0;
  private hovered: string | null = null;
  private askedRows = "";
  /** the horizontal scroll the sticky cells (checkbox, name) follow; -1: to apply */
  private stuckAt = -1;

  constructor(
    private store: Store,
    private requests: Requests,
    private colors: RunColors,
    private hooks: RunsHooks,
  ) {
    this.filterInput = el("input", { className: "rldk-input rldk-runs-filter", type: "search", placeholder: "filter runs: name, id, config value…" });
    this.countEl = el("span", { className: "rldk-muted rldk-runs-count" });
    const selectShown = el("button", { type: "button", className: "rldk-btn rldk-btn-small", textContent: "select shown", title: `show the runs the filter keeps on the charts (at most ${MAX_SELECTED})` });
    const clear = el("button", { type: "button", className: "rldk-btn rldk-btn-small", textContent: "clear", title: "take the runs the filter keeps off the charts" });
    this.groupsEl = el("span", { className: "rldk-runs-groups" });
    this.colorSelect = el("select", { className: "rldk-select", title: "colour of the runs on the charts, in the header and here" });
    this.noteEl = el("div", { className: "rldk-runs-note", hidden: true });
    this.head = el("div", { className: "rldk-runs-head", role: "row" });
    this.body = el("div", { className: "rldk-runs-body", role: "rowgroup" });
    this.emptyEl = el("div", { className: "rldk-runs-empty rldk-muted", hidden: true });
    this.scroll = el("div", { className: "rldk-runs-scroll", role: "table" }, [this.head, this.body, this.emptyEl]);
    this.scroll.style.maxHeight = `${(VIEW_ROWS + 0.5) * ROW_HEIGHT + 40}px`;
    this.diffEl = el("div", { className: "rldk-runs-diff", hidden: true });
    this.chartSlot = el("div", { className: "rldk-runs-charts" });
    this.el = el("div", { className: "rldk-runspanel", hidden: true }, [
      el("div", { className: "rldk-runs-tools" }, [
        this.filterInput,
        this.countEl,
        selectShown,
        clear,
        el("label", { className: "rldk-ctl" }, [el("span", { className: "rldk-ctl-label", textContent: "colour" }), this.colorSelect]),
        this.groupsEl,
      ]),
      this.noteEl,
      this.scroll,
      this.diffEl,
      this.chartSlot,
    ]);

    this.filterInput.addEventListener("input", () => {
      this.filterText = this.filterInput.value;
      this.reorder();
    });
    this.filterInput.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        this.filterInput.value = "";
        this.filterText = "";
        this.reorder();
      }
    });
    selectShown.addEventListener("click", () => this.selectShown());
    clear.addEventListener("click", () => this.clearShown());
    this.colorSelect.addEventListener("change", () => this.hooks.colorBy(this.colorSelect.value || null));
    this.groupsEl.addEventListener("click", (e) => {
      const b = (e.target as HTMLElement).closest("button");
      const g = b?.dataset.group as ColumnGroup | undefined;
      if (!g) return;
      if (this.hiddenGroups.has(g)) this.hiddenGroups.delete(g);
      else this.hiddenGroups.add(g);
      this.layout();
      this.render();
    });
    this.head.addEventListener("click", (e) => {
      const cell = (e.target as HTMLElement).closest<HTMLElement>(".rldk-runs-hcell");
      const key = cell?.dataset.key;
      if (key === undefined) return;
      this.toggleSort(key);
    });
    this.scroll.addEventListener("scroll", () => this.render(), { passive: true });
    this.body.addEventListener("click", (e) => {
      const row = (e.target as HTMLElement).closest<HTMLElement>(".rldk-runs-row");
      const runId = row?.dataset.run;
      if (runId) this.toggle(runId);
    });
    this.body.addEventListener("mouseover", (e) => {
      const row = (e.target as HTMLElement).closest<HTMLElement>(".rldk-runs-row");
      this.setHover(row?.dataset.run || null);
    });
    this.body.addEventListener("mouseleave", () => this.setHover(null));
  }

  // ---- store, visibility, drawing -----------------------------------------------------------------------------
  onChange(change: StoreChange): void {
    if (change.kind === "table") {
      if (this.store.runsTable !== this.table) this.tableDirty = true;
      this.diffDirty = true;
      this.rowsDirty = true;
    } else if (change.kind !== "delta") {
      this.rowsDirty = true;
      this.diffDirty = true;
    }
  }

  /** The colours changed (colour by, selection): re-bind the dots. */
  colorsChanged(): void {
    this.rowsDirty = true;
    this.diffDirty = true;
  }

  setVisible(v: boolean): void {
    this.visible = v;
    this.el.hidden = !v;
    if (v) this.flush();
  }

  flush(): void {
    if (!this.visible) return;
    if (this.tableDirty) this.rebuild();
    if (this.rowsDirty) {
      this.rowsDirty = false;
      this.bindVersion++;
      this.updateCount();
      this.render();
    }
    if (this.diffDirty) {
      this.diffDirty = false;
      this.renderDiff();
    }
  }

  get paged(): boolean {
    return this.table !== null && this.table.total > this.table.rows.length;
  }

  /** Rows the table shows now (after the filter). */
  get count(): number {
    if (!this.table) return 0;
    if (!this.paged) return this.order.length;
    if (this.window && this.window.key === this.viewKey()) return this.window.total;
    return this.viewKey() === this.defaultKey() ? this.table.total : (this.window?.total ?? 0);
  }

  /** The run ids of the rows shown, in display order (local mode: all of them; paged: the page held). */
  shownRunIds(): string[] {
    const out: string[] = [];
    if (!this.table) return out;
    if (!this.paged) for (const i of this.order) out.push(this.table.rows[i][this.idIdx] as string);
    else for (const row of this.windowRows()) out.push(row[this.idIdx] as string);
    return out;
  }

  private rebuild(): void {
    this.tableDirty = false;
    this.table = this.store.runsTable;
    const t = this.table;
    this.idIdx = t ? t.columns.findIndex((c) => c.key === "run_id") : -1;
    this.nameIdx = t ? t.columns.findIndex((c) => c.key === "name") : -1;
    this.folderIdx = t ? t.columns.findIndex((c) => c.key === "folder") : -1;
    this.maxStepsIdx = t ? t.columns.findIndex((c) => c.key === "max_steps") : -1;
    if (t) {
      const searched: number[] = [];
      t.columns.forEach((c, i) => {
        if (c.key === "run_id" || c.key === "name" || c.group === "config") searched.push(i);
      });
      this.hay = this.paged ? [] : t.rows.map((r) => haystack(r, searched));
    }
    this.layout();
    this.renderColorOptions();
    if (this.paged && this.window) this.requestWindow(this.window.offset, true); // the table changed: refresh
    this.reorder();
  }

  /** Columns shown: not empty for every row, of groups not hidden; widths fixed per kind. */
  private layout(): void {
    const t = this.table;
    const cols: Col[] = [];
    if (t) {
      const filled = t.columns.map((_, i) => t.rows.some((r) => r[i] !== null && r[i] !== ""));
      let nameChars = 12;
      for (const r of t.rows) nameChars = Math.max(nameChars, Math.min(48, cellText(r[this.nameIdx] ?? r[this.idIdx]).length));
      t.columns.forEach((c, index) => {
        if (NOT_SHOWN.has(c.key) || !filled[index] && c.key !== "name") return;
        if (c.group !== "identity" && this.hiddenGroups.has(c.group)) return;
        let sub = "";
        let label = c.label;
        let width = WIDTHS[c.key] ?? 92;
        if (c.key === "name") width = Math.round(Math.max(140, Math.min(320, nameChars * 6.6 + 24)));
        if (c.group === "metrics") {
          const dot = c.key.indexOf(".");
          sub = c.key.slice(0, dot);
          label = c.key.slice(dot + 1);
          width = labelWidth(label, 90);
        } else if (c.group === "alerts") {
          label = SEVERITY_LABEL[c.key] ?? c.label;
          width = 48;
        } else if (c.group === "config") {
          const dot = c.key.indexOf(".");
          if (dot > 0) {
            sub = c.key.slice(0, dot);
            label = c.key.slice(dot + 1);
          }
          width = Math.max(c.kind === "number" ? 80 : 120, labelWidth(label, 0));
        }
        cols.push({ key: c.key, index, kind: c.kind, group: c.group, label, sub, width });
      });
    }
    // a table update every few seconds while runs train changes values, rarely columns: keep the DOM then
    const counts = new Map<ColumnGroup, number>();
    if (t) for (const [i, c] of t.columns.entries()) if (!NOT_SHOWN.has(c.key) && t.rows.some((r) => r[i] !== null)) counts.set(c.group, (counts.get(c.group) ?? 0) + 1);
    const shape = JSON.stringify([
      cols.map((c) => [c.key, c.index, c.label, c.sub, c.width]),
      GROUP_LABELS.map(([g]) => [this.hiddenGroups.has(g), counts.get(g) ?? 0]),
    ]);
    this.cols = cols;
    this.nameCol = cols.findIndex((c) => c.key === "name");
    if (shape === this.layoutShape) return;
    this.layoutShape = shape;
    this.stuckAt = -1;
    const template = ["34px", ...cols.map((c) => `${c.width}px`)].join(" ");
    const total = 34 + cols.reduce((a, c) => a + c.width, 0);
    this.scroll.style.setProperty("--rldk-runs-cols", template);
    this.head.style.width = this.body.style.width = `${total}px`;
    // header cells
    const cells: HTMLElement[] = [this.headCell(SEL_KEY, "", "✓", "selected runs first", "rldk-runs-hsel rldk-runs-stick")];
    for (const c of cols) {
      const title = `${SEVERITY_TITLE[c.key] ?? c.key} — click to sort`;
      const cls =
        c.key === "name"
          ? "rldk-runs-stick rldk-runs-stick-name"
          : c.group === "alerts"
            ? `rldk-runs-num rldk-runs-h-${c.key.slice(7)}`
            : c.kind === "text" || c.kind === "status"
              ? ""
              : "rldk-runs-num";
      cells.push(this.headCell(c.key, c.sub, c.label, title, cls));
    }
    this.head.replaceChildren(...cells);
    this.updateSortMarks();
    // group toggles
    this.groupsEl.replaceChildren(
      ...GROUP_LABELS.filter(([g]) => counts.get(g)).map(([g, label]) => {
        const on = !this.hiddenGroups.has(g);
        const b = el("button", { type: "button", className: "rldk-chip" + (on ? " rldk-chip-on" : ""), textContent: `${label} ${counts.get(g)}`, title: on ? `hide the ${label} columns` : `show the ${label} columns` });
        b.dataset.group = g;
        b.setAttribute("aria-pressed", String(on));
        return b;
      }),
    );
    this.bindVersion++;
  }

  private headCell(key: string, sub: string, label: string, title: string, cls: string): HTMLElement {
    const cell = el("div", { className: `rldk-runs-hcell ${cls}`.trim(), title: title.slice(0, MAX_TITLE), role: "columnheader" }, [
      el("span", { className: "rldk-runs-hsub", textContent: sub }),
      el("span", { className: "rldk-runs-hlabel" }, [el("span", { className: "rldk-runs-htext", textContent: label }), el("span", { className: "rldk-runs-arrow" })]),
    ]);
    cell.dataset.key = key;
    return cell;
  }

  private renderColorOptions(): void {
    const t = this.table;
    const current = this.colors.colorBy;
    const usable = (t?.columns ?? []).filter((c, i) => (c.group === "config" || c.group === "metrics") && !NAMING_KEYS.has(c.key) && t!.rows.some((r) => r[i] !== null));
    const shape = JSON.stringify([usable.map((c) => c.key), current]);
    if (shape === this.optionsShape) return; // an open list stays open while the table updates
    this.optionsShape = shape;
    const opts: Node[] = [el("option", { value: "", textContent: "by run" })];
    let found = current === null;
    if (t) {
      for (const [group, label] of [["config", "configuration"], ["metrics", "metrics"]] as const) {
        const g = el("optgroup", { label });
        t.columns.forEach((c, i) => {
          if (c.group !== group || NAMING_KEYS.has(c.key) || !t.rows.some((r) => r[i] !== null)) return;
          g.append(el("option", { value: c.key, textContent: clip(c.key, 60) }));
          if (c.key === current) found = true;
        });
        if (g.childElementCount) opts.push(g);
      }
    }
    this.colorSelect.replaceChildren(...opts);
    this.colorSelect.value = found ? (current ?? "") : "";
    if (!found) this.hooks.colorBy(null);
  }

  // ---- filter and sort -----------------------------------------------------------------------------------------
  private viewKey(): string {
    return JSON.stringify([this.sort, terms(this.filterText)]);
  }

  private defaultKey(): string {
    return JSON.stringify([null, []]);
  }

  /** Filter, then sort (local mode), or ask for the first page of the new order (paged mode). */
  private reorder(): void {
    const t = this.table;
    if (!t) {
      this.order = [];
    } else if (!this.paged) {
      const ts = terms(this.filterText);
      const order: number[] = [];
      for (let i = 0; i < t.rows.length; i++) {
        const h = this.hay[i];
        if (ts.every((term) => h.includes(term))) order.push(i);
      }
      this.order = order;
      if (this.sort) this.sortLocal();
    } else if (this.viewKey() !== (this.window?.key ?? this.defaultKey())) {
      this.scroll.scrollTop = 0;
      if (this.viewKey() === this.defaultKey()) this.window = null;
      else this.requestWindow(0);
    }
    this.bindVersion++;
    this.updateCount();
    this.render();
  }

  private toggleSort(key: string): void {
    if (this.paged && key === SEL_KEY) return;
    const s = this.sort;
    // numbers and counts first descending (the best reward, the most alerts); text ascending; third click: run order
    const col = this.table?.columns.find((c) => c.key === key);
    const firstDesc = key === SEL_KEY ? false : col !== undefined && col.kind !== "text" && col.kind !== "status" && col.key !== "name";
    if (!s || s.key !== key) this.sort = { key, desc: firstDesc };
    else if (s.desc === firstDesc) this.sort = { key, desc: !firstDesc };
    else this.sort = null;
    this.updateSortMarks();
    this.reorder();
  }

  private updateSortMarks(): void {
    for (const cell of Array.from(this.head.children) as HTMLElement[]) {
      const on = this.sort !== null && cell.dataset.key === this.sort.key;
      cell.classList.toggle("rldk-runs-sorted", on);
      cell.setAttribute("aria-sort", on ? (this.sort!.desc ? "descending" : "ascending") : "none");
      const arrow = cell.querySelector(".rldk-runs-arrow");
      if (arrow) arrow.textContent = on ? (this.sort!.desc ? "▼" : "▲") : "";
    }
  }

  /** Sort `order` by the sort column: numbers numerically and before text, missing values last both ways, ties in
   * run order (Array.prototype.sort is stable; the filtered order is the run order). */
  private sortLocal(): void {
    const t = this.table!;
    const s = this.sort!;
    const start = performance.now();
    const n = this.order.length;
    const rank = new Int8Array(n);
    const num = new Float64Array(n);
    const str: string[] = new Array(n);
    const sel = new Set(this.store.selected);
    const col = s.key === SEL_KEY ? -1 : t.columns.findIndex((c) => c.key === s.key);
    for (let k = 0; k < n; k++) {
      const row = t.rows[this.order[k]];
      if (col < 0) {
        rank[k] = 0;
        num[k] = sel.has(row[this.idIdx] as string) ? 0 : 1;
        continue;
      }
      const v = row[col];
      if (v === null || v === "") rank[k] = 2;
      else if (typeof v === "number") {
        rank[k] = 0;
        num[k] = v;
      } else {
        rank[k] = 1;
        str[k] = String(v);
      }
    }
    const sign = s.desc ? -1 : 1;
    const pos = Array.from({ length: n }, (_, k) => k);
    pos.sort((a, b) => {
      const ra = rank[a];
      const rb = rank[b];
      if (ra === 2 || rb === 2) return ra === rb ? 0 : ra === 2 ? 1 : -1;
      if (ra !== rb) return (ra - rb) * sign;
      if (ra === 0) return num[a] === num[b] ? 0 : (num[a] < num[b] ? -1 : 1) * sign;
      return collator.compare(str[a], str[b]) * sign;
    });
    this.order = pos.map((k) => this.order[k]);
    const ms = performance.now() - start;
    this.stats.sorts++;
    this.stats.lastSortMs = ms;
    this.stats.maxSortMs = Math.max(this.stats.maxSortMs, ms);
  }

  // ---- paged mode ----------------------------------------------------------------------------------------------
  private windowRows(): Cell[][] {
    if (!this.table) return [];
    if (this.window && this.window.key === this.viewKey()) return this.window.rows;
    return this.viewKey() === this.defaultKey() ? this.table.rows : [];
  }

  private windowOffset(): number {
    if (this.window && this.window.key === this.viewKey()) return this.window.offset;
    return this.table?.offset ?? 0;
  }

  private requestWindow(first: number, refresh = false): void {
    const key = this.viewKey();
    const offset = Math.max(0, first - Math.floor(PAGE_ROWS / 3));
    if (!refresh && this.pending && this.pending.key === key && this.pending.offset === offset) return;
    this.pending = { key, offset };
    this.stats.requests++;
    const params = { offset, limit: PAGE_ROWS, sort: this.sort, filter: this.filterText.slice(0, 200) };
    void this.requests.request<unknown>("runs.page", params, "runs.page").then((out) => {
      if (this.pending?.key === key && this.pending.offset === offset) this.pending = null;
      if (!out.ok) {
        if (!out.stale) this.setNote(`Could not get the runs: ${clip(out.error, 200)}`);
        return;
      }
      const rows = this.pageRows(out.data);
      if (!rows) return;
      const d = out.data as { offset?: unknown; total?: unknown };
      const total = typeof d.total === "number" ? d.total : rows.length;
      this.window = { key, offset: typeof d.offset === "number" ? d.offset : offset, rows, total };
      this.store.addTableRows(rows);
      this.bindVersion++;
      this.updateCount();
      this.render();
    });
  }

  /** A page's rows in the table's column order (the page names its columns). */
  private pageRows(data: unknown): Cell[][] | null {
    const t = this.table;
    if (!t || typeof data !== "object" || data === null) return null;
    const d = data as { columns?: unknown; rows?: unknown };
    const cols = normalizeColumns(d.columns);
    const rows = normalizeRows(d.rows, cols.length);
    const map = t.columns.map((c) => cols.findIndex((p) => p.key === c.key));
    return rows.map((r) => map.map((j) => (j < 0 ? null : r[j])));
  }

  // ---- rows ----------------------------------------------------------------------------------------------------
  private rowAt(i: number): Cell[] | null {
    const t = this.table;
    if (!t) return null;
    if (!this.paged) return i < this.order.length ? t.rows[this.order[i]] : null;
    const rows = this.windowRows();
    const j = i - this.windowOffset();
    return j >= 0 && j < rows.length ? rows[j] : null;
  }

  private updateCount(): void {
    const t = this.table;
    const n = this.count;
    const total = t?.total ?? 0;
    const sel = this.store.selected.length;
    const shown = n === total ? `${formatInt(total)} runs` : `${formatInt(n)} of ${formatInt(total)} runs`;
    this.countEl.textContent = `${shown} · ${sel} on the charts`;
    this.body.style.height = `${n * ROW_HEIGHT}px`;
    this.emptyEl.hidden = n > 0 || !t;
    this.emptyEl.textContent = total ? "No run matches the filter." : "No runs yet.";
  }

  /** Bind the pool's rows to the rows in view (and a few around); costs a few text updates per scroll frame. */
  render(): void {
    if (!this.visible || !this.table) return;
    const start = performance.now();
    const n = this.count;
    // every read of the layout before any write (a read after a write lays out the whole page: JupyterLab's)
    const top = this.scroll.scrollTop;
    const left = this.scroll.scrollLeft;
    const height = this.scroll.clientHeight || VIEW_ROWS * ROW_HEIGHT;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(n, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const need = Math.max(0, last - first);
    // the pool never shrinks: row i always lives in element i % size, so a scroll re-binds only the rows that came
    // into view, not every row
    this.ensurePool(Math.max(need, Math.min(n, VIEW_ROWS + 2 * OVERSCAN + 2)));
    const size = this.pool.length;
    const colorSel = new Set(this.store.selected);
    let missing = -1;
    const used = new Uint8Array(size);
    for (let i = first; i < last; i++) {
      const k = i % size;
      used[k] = 1;
      const nodes = this.pool[k];
      if (nodes.row.hidden) nodes.row.hidden = false;
      const row = this.rowAt(i);
      if (!row && missing < 0) missing = i;
      if (nodes.bound === i && nodes.boundVersion === this.bindVersion && row) continue;
      this.bind(nodes, i, row, colorSel);
    }
    for (let k = 0; k < size; k++) {
      const nodes = this.pool[k];
      if (used[k] || nodes.row.hidden) continue;
      nodes.row.hidden = true;
      nodes.row.dataset.run = "";
      nodes.bound = -1;
    }
    if (missing >= 0 && this.paged) this.requestWindow(missing);
    this.stick(left);
    const ms = performance.now() - start;
    this.stats.renders++;
    this.stats.lastRenderMs = ms;
    this.stats.maxRenderMs = Math.max(this.stats.maxRenderMs, ms);
  }

  /**
   * Keep the checkbox and name columns in view while the table scrolls sideways: a translateX by the scroll
   * offset, on the cells of the rows in the pool (CSS `position: sticky` in every row made each scroll frame cost
   * two frames of compositing).
   */
  private stick(left: number): void {
    if (left === this.stuckAt) return;
    this.stuckAt = left;
    const t = left ? `translateX(${left}px)` : "";
    for (const cell of Array.from(this.head.querySelectorAll<HTMLElement>(".rldk-runs-stick"))) cell.style.transform = t;
    for (const p of this.pool) {
      (p.row.firstElementChild as HTMLElement).style.transform = t;
      if (this.nameCol >= 0) p.cells[this.nameCol].style.transform = t;
    }
  }

  private ensurePool(size: number): void {
    const shape = this.cols.map((c) => c.key).join("\u0000");
    if (shape !== this.poolShape) {
      this.poolShape = shape;
      for (const p of this.pool) p.row.remove();
      this.pool = [];
    }
    while (this.pool.length < size) {
      const box = el("input", { type: "checkbox", tabIndex: -1 });
      const dot = el("span", { className: "rldk-dot" });
      const cells = this.cols.map((c) => {
        const cls = c.key === "name" ? "rldk-runs-name rldk-runs-stick rldk-runs-stick-name" : c.kind === "text" || c.kind === "status" ? "" : "rldk-runs-num";
        return el("span", { className: `rldk-runs-cell ${cls}`.trim(), role: "cell" });
      });
      const row = el("div", { className: "rldk-runs-row", role: "row" }, [el("span", { className: "rldk-runs-sel rldk-runs-stick" }, [box, dot]), ...cells]);
      this.body.append(row);
      this.pool.push({ row, box, dot, cells, texts: cells.map(() => ""), bound: -1, boundVersion: -1 });
      this.stuckAt = -1;
    }
  }

  private bind(nodes: RowNodes, i: number, row: Cell[] | null, selected: Set<string>): void {
    nodes.bound = i;
    nodes.boundVersion = this.bindVersion;
    nodes.row.style.transform = `translateY(${i * ROW_HEIGHT}px)`;
    const runId = row ? (row[this.idIdx] as string) : "";
    nodes.row.dataset.run = runId;
    const on = row !== null && selected.has(runId);
    nodes.box.checked = on;
    nodes.box.disabled = row === null;
    nodes.row.className =
      "rldk-runs-row" + (on ? " rldk-runs-on" : "") + (row !== null && runId === this.hovered ? " rldk-runs-hot" : "") + (row === null ? " rldk-runs-placeholder" : "");
    nodes.dot.style.background = on ? this.colors.colorOf(runId) : "";
    const cols = this.cols;
    for (let k = 0; k < cols.length; k++) {
      const c = cols[k];
      const cell = nodes.cells[k];
      const text = row ? this.cellDisplay(c, row) : c.key === "name" ? "…" : "";
      if (nodes.texts[k] === text && c.key !== "name") continue;
      nodes.texts[k] = text;
      cell.textContent = text;
      if (c.key === "name") {
        const name = row ? cellText(row[this.nameIdx]) || runId : "";
        const where = row && this.folderIdx >= 0 ? cellText(row[this.folderIdx]) : "";
        cell.title = row ? [name, name === runId ? "" : `id: ${runId}`, where].filter(Boolean).join("\n").slice(0, MAX_TITLE) : "";
      } else if (c.kind === "status") {
        cell.className = `rldk-runs-cell rldk-runs-status rldk-runs-status-${text.replace(/[^a-z]/g, "")}`;
      } else if (c.group === "alerts") {
        cell.className = "rldk-runs-cell rldk-runs-num rldk-runs-alert" + (text !== "" && text !== "0" ? ` rldk-runs-alert-${c.key.slice(7)}` : "");
      } else if (c.group === "config" && c.kind === "text") {
        cell.title = text.length > 14 ? text.slice(0, MAX_TITLE) : "";
      }
    }
  }

  private cellDisplay(c: Col, row: Cell[]): string {
    const v = row[c.index];
    if (c.key === "name") return cellText(v) || cellText(row[this.idIdx]);
    if (v === null) return c.group === "alerts" ? "" : "–";
    switch (c.kind) {
      case "duration":
        return typeof v === "number" ? formatDuration(v) : cellText(v);
      case "time":
        return typeof v === "number" ? formatAgo(Math.max(0, Date.now() / 1000 - v)) : cellText(v);
      case "number":
        if (typeof v !== "number") return cellText(v);
        if (c.key === "step") {
          const max = this.maxStepsIdx >= 0 ? row[this.maxStepsIdx] : null;
          return typeof max === "number" ? `${formatInt(v)} / ${formatInt(max)}` : formatInt(v);
        }
        return c.group === "config" ? formatConfig(v) : formatValue(v);
      default:
        return cellText(v);
    }
  }

  // ---- selection and hover -------------------------------------------------------------------------------------
  private setNote(text: string): void {
    this.noteEl.textContent = text;
    this.noteEl.hidden = !text;
  }

  private toggle(runId: string): void {
    const sel = this.store.selected;
    if (sel.includes(runId)) {
      this.setNote("");
      this.hooks.select(sel.filter((r) => r !== runId));
    } else if (sel.length >= MAX_SELECTED) {
      this.setNote(`At most ${MAX_SELECTED} runs are shown on the charts: take one off first.`);
    } else {
      this.setNote("");
      this.hooks.select([...sel, runId]);
    }
    this.rowsDirty = true;
    this.flush();
  }

  private selectShown(): void {
    const add = (ids: string[]) => {
      const sel = this.store.selected.slice();
      const have = new Set(sel);
      const fresh = ids.filter((r) => !have.has(r));
      const room = Math.max(0, MAX_SELECTED - sel.length);
      const taken = fresh.slice(0, room);
      this.setNote(
        taken.length < fresh.length
          ? `${taken.length ? `Added ${taken.length} runs; ` : ""}at most ${MAX_SELECTED} runs are shown on the charts (${fresh.length - taken.length} of the shown runs left out).`
          : "",
      );
      if (taken.length) this.hooks.select([...sel, ...taken]);
    };
    if (!this.paged) {
      add(this.shownRunIds());
      return;
    }
    const params = { offset: 0, limit: MAX_SELECTED, sort: this.sort, filter: this.filterText.slice(0, 200) };
    void this.requests.request<unknown>("runs.page", params, "runs.select").then((out) => {
      if (!out.ok) return;
      const rows = this.pageRows(out.data) ?? [];
      this.store.addTableRows(rows);
      add(rows.map((r) => r[this.idIdx] as string));
    });
  }

  /** Take the runs the filter keeps off the charts (no filter: every run). */
  private clearShown(): void {
    this.setNote("");
    const ts = terms(this.filterText);
    if (!ts.length) {
      this.hooks.select([]);
      return;
    }
    const t = this.table;
    if (!t) return;
    const searched = t.columns.flatMap((c, i) => (c.key === "run_id" || c.key === "name" || c.group === "config" ? [i] : []));
    this.hooks.select(
      this.store.selected.filter((r) => {
        const row = this.store.tableRow(r);
        if (!row) return true;
        const h = haystack(row, searched);
        return !ts.every((term) => h.includes(term));
      }),
    );
  }

  private setHover(runId: string | null): void {
    const on = runId !== null && this.store.selected.includes(runId) ? runId : null;
    if (runId === this.hovered) return;
    this.hovered = runId;
    for (const p of this.pool) p.row.classList.toggle("rldk-runs-hot", runId !== null && p.row.dataset.run === runId);
    this.hooks.hover(on);
  }

  // ---- differing configuration --------------------------------------------------------------------------------
  private renderDiff(): void {
    const t = this.table;
    const sel = this.store.selected;
    if (!t || sel.length < 2) {
      this.diffEl.hidden = true;
      this.diffEl.replaceChildren();
      return;
    }
    const known = sel.filter((r) => this.store.tableRow(r));
    const missing = sel.filter((r) => !this.store.tableRow(r));
    if (missing.length && this.paged) this.askRows(missing);
    const keys: number[] = [];
    t.columns.forEach((c, i) => {
      if (c.group !== "config" || NAMING_KEYS.has(c.key)) return;
      const values = known.map((r) => this.store.tableRow(r)![i]);
      if (values.some((v) => v !== values[0])) keys.push(i);
    });
    this.diffEl.hidden = false;
    const title = el("div", { className: "rldk-runs-diff-title" });
    if (!keys.length) {
      title.textContent = known.length < 2 ? "Configuration of the selected runs: loading…" : `The ${known.length} selected runs have the same configuration.`;
      this.diffEl.replaceChildren(title);
      return;
    }
    title.textContent = `Configuration that differs between the ${known.length} selected runs`;
    const shownKeys = keys.slice(0, MAX_DIFF_KEYS);
    const grid = el("div", { className: "rldk-runs-diff-grid", role: "table" });
    grid.style.gridTemplateColumns = `minmax(120px, 260px) repeat(${shownKeys.length}, minmax(64px, max-content))`;
    grid.append(el("span", { className: "rldk-runs-diff-h", textContent: "run" }));
    for (const i of shownKeys) grid.append(el("span", { className: "rldk-runs-diff-h", textContent: clip(t.columns[i].key, 40), title: t.columns[i].key.slice(0, MAX_TITLE) }));
    for (const r of known) {
      const row = this.store.tableRow(r)!;
      const dot = el("span", { className: "rldk-dot" });
      dot.style.background = this.colors.colorOf(r);
      const name = cellText(row[this.nameIdx]) || r;
      grid.append(el("span", { className: "rldk-runs-diff-run", title: name.slice(0, MAX_TITLE) }, [dot, el("span", { className: "rldk-runs-diff-name", textContent: name })]));
      for (const i of shownKeys) {
        const v = row[i];
        const text = v === null ? "–" : cellText(v);
        grid.append(el("span", { className: "rldk-runs-diff-v" + (v === null ? " rldk-muted" : ""), textContent: clip(text, 60), title: text.slice(0, MAX_TITLE) }));
      }
    }
    const extra: Node[] = [];
    if (keys.length > shownKeys.length) extra.push(el("div", { className: "rldk-muted", textContent: `+${keys.length - shownKeys.length} more keys` }));
    if (missing.length) extra.push(el("div", { className: "rldk-muted", textContent: `${missing.length} selected runs not loaded yet` }));
    this.diffEl.replaceChildren(title, grid, ...extra);
  }

  private askRows(runIds: string[]): void {
    const key = runIds.join("\u0000");
    if (key === this.askedRows) return;
    this.askedRows = key;
    void this.requests.request<unknown>("runs.page", { run_ids: runIds, limit: runIds.length }, "runs.rows").then((out) => {
      if (out.ok) this.store.addTableRows(this.pageRows(out.data) ?? []);
    });
  }
}
