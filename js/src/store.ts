// Columnar client-side store: per run, per series, growable Float64Array columns.
// Applies the `metrics` / `alerts` snapshot traits and numbered `delta` messages (docs/protocol.md).

export type Severity = "info" | "warning" | "critical";

export interface Alert {
  run_id: string;
  type: string;
  message: string;
  step: number | null;
  severity: Severity;
  timestamp: number;
  [key: string]: unknown;
}

export interface EncodedSeries {
  x: string;
  y: string;
}

export type Level = "ok" | "info" | "warning" | "error";

export interface Status {
  level: Level;
  message: string;
}

export interface RunInfo {
  max_steps: number | null;
  trainer: string | null;
  started: number | null;
  /** display name (a nested run's relative path); the run id when absent */
  name?: string;
}

export type ColumnKind = "text" | "number" | "status" | "time" | "duration";
export type ColumnGroup = "identity" | "progress" | "metrics" | "alerts" | "config";
export type Cell = string | number | boolean | null;

export interface RunsColumn {
  key: string;
  label: string;
  kind: ColumnKind;
  group: ColumnGroup;
}

/** The `runs_table` trait (folder mode): one row per run, in `run_ids` order, at most a page of them. */
export interface RunsTable {
  columns: RunsColumn[];
  rows: Cell[][];
  /** runs in the table; more than `rows.length`: the view pages it ("runs.page" requests) */
  total: number;
  offset: number;
}

const KINDS = new Set<string>(["text", "number", "status", "time", "duration"]);
const GROUPS = new Set<string>(["identity", "progress", "metrics", "alerts", "config"]);
/** Text cells are cut here (the kernel sends at most 500 characters; a hostile page cannot cost more). */
const MAX_CELL_CHARS = 2000;

export function normalizeCell(v: unknown): Cell {
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v === "string") return v.length > MAX_CELL_CHARS ? v.slice(0, MAX_CELL_CHARS) : v;
  if (typeof v === "boolean") return v;
  return null;
}

/** Rows of a table payload (trait or page reply), each as long as `width`. */
export function normalizeRows(v: unknown, width: number): Cell[][] {
  if (!Array.isArray(v)) return [];
  const out: Cell[][] = [];
  for (const r of v) {
    if (!Array.isArray(r)) continue;
    const row: Cell[] = new Array(width);
    for (let i = 0; i < width; i++) row[i] = normalizeCell(r[i]);
    out.push(row);
  }
  return out;
}

export function normalizeColumns(v: unknown): RunsColumn[] {
  if (!Array.isArray(v)) return [];
  const out: RunsColumn[] = [];
  for (const c of v) {
    if (!isObject(c) || typeof c.key !== "string") continue;
    out.push({
      key: c.key,
      label: typeof c.label === "string" ? c.label : c.key,
      kind: typeof c.kind === "string" && KINDS.has(c.kind) ? (c.kind as ColumnKind) : "text",
      group: typeof c.group === "string" && GROUPS.has(c.group) ? (c.group as ColumnGroup) : "config",
    });
  }
  return out;
}

export function normalizeTable(v: unknown): RunsTable | null {
  if (!isObject(v) || !Array.isArray(v.columns)) return null;
  const columns = normalizeColumns(v.columns);
  if (!columns.some((c) => c.key === "run_id")) return null;
  const rows = normalizeRows(v.rows, columns.length);
  const total = typeof v.total === "number" && Number.isFinite(v.total) ? Math.max(rows.length, Math.floor(v.total)) : rows.length;
  const offset = typeof v.offset === "number" && Number.isFinite(v.offset) ? Math.max(0, Math.floor(v.offset)) : 0;
  return { columns, rows, total, offset };
}

/** What one applied message changed; listeners get exactly one per applied message. */
export interface StoreChange {
  kind: "snapshot" | "delta" | "meta" | "table";
  /** series names (across runs) that got new points; ignored when `all` */
  series: Set<string>;
  runs: Set<string>;
  alerts: boolean;
  /** everything may have changed (snapshot, run list, settings from the kernel) */
  all: boolean;
  /** a delta brought runs that became selected or dropped runs that were not (a user's choice: draw at once) */
  selection?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// base64 <-> float64

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
type FromBase64 = (s: string) => Uint8Array;
const nativeFromBase64: FromBase64 | undefined = (Uint8Array as unknown as { fromBase64?: FromBase64 }).fromBase64;

function base64ToBytes(s: string): Uint8Array {
  if (nativeFromBase64) return nativeFromBase64(s);
  const bin = atob(s);
  const n = bin.length;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesToF64(bytes: Uint8Array): Float64Array {
  const n = bytes.byteLength >>> 3;
  if (LITTLE_ENDIAN) {
    if (bytes.byteOffset % 8 === 0) return new Float64Array(bytes.buffer, bytes.byteOffset, n);
    return new Float64Array(bytes.slice(0, n * 8).buffer, 0, n);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
  return out;
}

/** Little-endian float64 array encoded as base64 → Float64Array (NaN / ±Inf preserved). */
export function decodeF64(s: unknown): Float64Array {
  if (typeof s !== "string" || s.length === 0) return new Float64Array(0);
  return bytesToF64(base64ToBytes(s));
}

/** The last float64 of a base64 column without decoding all of it (NaN when empty or malformed). */
export function decodeLastF64(s: string): number {
  if (s.length < 12 || s.length % 4 !== 0) {
    const all = decodeF64(s);
    return all.length ? all[all.length - 1] : NaN;
  }
  const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
  const nBytes = (s.length / 4) * 3 - pad;
  if (nBytes < 8) return NaN;
  const group = Math.floor((nBytes - 8) / 3);
  const tail = base64ToBytes(s.slice(group * 4));
  const off = nBytes - 8 - group * 3;
  return bytesToF64(tail.slice(off, off + 8))[0];
}

/** Float64Array → base64 (used by tests and the harness). */
export function encodeF64(a: ArrayLike<number>): string {
  const f = Float64Array.from(a);
  const bytes = new Uint8Array(f.buffer);
  let bin = "";
  const CH = 0x8000;
  for (let i = 0; i < bytes.length; i += CH) bin += String.fromCharCode.apply(null, Array.from(bytes.subarray(i, i + CH)));
  return btoa(bin);
}

// ---------------------------------------------------------------------------------------------------------
// Series

type Column = string | Float64Array;

/**
 * One (x, y) column pair with amortised-doubling growth. Base64 chunks are kept encoded until the series is
 * first read (many logged metrics are never charted), so a snapshot with dozens of series stays cheap.
 */
export class Series {
  private xs: Float64Array = new Float64Array(0);
  private ys: Float64Array = new Float64Array(0);
  private n = 0;
  private pending: Array<[Column, Column]> = [];
  /** bumps on every append; caches key on (series object, version) */
  version = 0;
  /** x never decreased so far (binary search allowed) */
  sorted = true;
  private _lastX = NaN;
  private _lastY = NaN;
  private tailKnown = true;

  get length(): number {
    this.materialize();
    return this.n;
  }

  /** A view of the x column (valid until the next append; copy it if you keep it across appends). */
  x(): Float64Array {
    this.materialize();
    return this.xs.subarray(0, this.n);
  }

  y(): Float64Array {
    this.materialize();
    return this.ys.subarray(0, this.n);
  }

  get lastX(): number {
    this.resolveTail();
    return this._lastX;
  }

  get lastY(): number {
    this.resolveTail();
    return this._lastY;
  }

  appendEncoded(x: string, y: string): void {
    if (!x || !y) return;
    this.pending.push([x, y]);
    this.version++;
    this.tailKnown = false;
    if (this.pending.length > 64) this.materialize();
  }

  append(x: Float64Array, y: Float64Array): void {
    const m = Math.min(x.length, y.length);
    if (m === 0) return;
    if (this.pending.length) {
      this.pending.push([x, y]);
      this.version++;
      this.tailKnown = false;
      return;
    }
    this.pushArrays(x, y, m);
    this.version++;
  }

  /** Make room for `need` points, doubling the capacity (amortised O(1) appends). */
  private reserve(need: number): void {
    if (need <= this.xs.length) return;
    let cap = Math.max(16, this.xs.length);
    while (cap < need) cap *= 2;
    const nx = new Float64Array(cap);
    nx.set(this.xs.subarray(0, this.n));
    const ny = new Float64Array(cap);
    ny.set(this.ys.subarray(0, this.n));
    this.xs = nx;
    this.ys = ny;
  }

  private pushArrays(x: Float64Array, y: Float64Array, m: number): void {
    const need = this.n + m;
    this.reserve(need);
    if (this.sorted) {
      let prev = this.n ? this.xs[this.n - 1] : -Infinity;
      for (let i = 0; i < m; i++) {
        const v = x[i];
        if (v < prev) {
          this.sorted = false;
          break;
        }
        prev = v;
      }
    }
    this.xs.set(m === x.length ? x : x.subarray(0, m), this.n);
    this.ys.set(m === y.length ? y : y.subarray(0, m), this.n);
    this.n = need;
    this._lastX = this.xs[need - 1];
    this._lastY = this.ys[need - 1];
    this.tailKnown = true;
  }

  private materialize(): void {
    if (!this.pending.length) return;
    const chunks = this.pending;
    this.pending = [];
    const decoded: Array<[Float64Array, Float64Array]> = [];
    let total = this.n;
    for (const [cx, cy] of chunks) {
      const x = typeof cx === "string" ? decodeF64(cx) : cx;
      const y = typeof cy === "string" ? decodeF64(cy) : cy;
      decoded.push([x, y]);
      total += Math.min(x.length, y.length);
    }
    if (this.n === 0 && decoded.length === 1) {
      // common case (one snapshot chunk): adopt the decoded arrays without copying
      const [x, y] = decoded[0];
      const m = Math.min(x.length, y.length);
      this.xs = x.length === m ? x : x.slice(0, m);
      this.ys = y.length === m ? y : y.slice(0, m);
      this.n = m;
      for (let i = 1; i < m; i++) {
        if (this.xs[i] < this.xs[i - 1]) {
          this.sorted = false;
          break;
        }
      }
      this._lastX = m ? this.xs[m - 1] : NaN;
      this._lastY = m ? this.ys[m - 1] : NaN;
      this.tailKnown = true;
      return;
    }
    this.reserve(total); // grow once for all chunks
    for (const [x, y] of decoded) {
      const m = Math.min(x.length, y.length);
      if (m) this.pushArrays(x, y, m);
    }
    this.tailKnown = true;
  }

  private resolveTail(): void {
    if (this.tailKnown) return;
    const last = this.pending[this.pending.length - 1];
    if (!last) {
      this.tailKnown = true;
      return;
    }
    const [cx, cy] = last;
    this._lastX = typeof cx === "string" ? decodeLastF64(cx) : cx[cx.length - 1];
    this._lastY = typeof cy === "string" ? decodeLastF64(cy) : cy[cy.length - 1];
    this.tailKnown = true;
  }

  /** Index of the last point with x <= v (sorted series), -1 if none. */
  floorIndex(v: number): number {
    const xs = this.x();
    let lo = 0;
    let hi = xs.length - 1;
    if (hi < 0 || xs[0] > v) return -1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (xs[mid] <= v) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

export type Run = Map<string, Series>;

// ---------------------------------------------------------------------------------------------------------
// validation of untrusted trait / message payloads

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const SEVERITIES = new Set<string>(["info", "warning", "critical"]);

export function normalizeAlert(a: unknown): Alert | null {
  if (!isObject(a)) return null;
  const sev = typeof a.severity === "string" && SEVERITIES.has(a.severity) ? (a.severity as Severity) : "warning";
  const step = typeof a.step === "number" && Number.isFinite(a.step) ? a.step : null;
  return {
    ...a,
    run_id: a.run_id == null ? "" : String(a.run_id),
    type: a.type == null ? "" : String(a.type),
    message: a.message == null ? "" : String(a.message),
    step,
    severity: sev,
    timestamp: typeof a.timestamp === "number" ? a.timestamp : NaN,
  };
}

function normalizeAlerts(v: unknown): Alert[] {
  if (!Array.isArray(v)) return [];
  const out: Alert[] = [];
  for (const a of v) {
    const n = normalizeAlert(a);
    if (n) out.push(n);
  }
  return out;
}

function applyRunData(run: Run, data: unknown, touched: Set<string>): void {
  if (!isObject(data)) return;
  for (const [name, col] of Object.entries(data)) {
    if (!isObject(col) || typeof col.x !== "string" || typeof col.y !== "string") continue;
    if (!col.x || !col.y) continue;
    let s = run.get(name);
    if (!s) {
      s = new Series();
      run.set(name, s);
    }
    s.appendEncoded(col.x, col.y);
    touched.add(name);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Store

export type Listener = (change: StoreChange) => void;

/** Alerts a view holds at most (the newest); older ones are counted in `olderAlerts`. */
const MAX_ALERTS = 2000;

export class Store {
  runs = new Map<string, Run>();
  alerts: Alert[] = [];
  /** counts by severity of alerts the kernel or this store left out of `alerts` (only the newest travel) */
  olderAlerts: Record<Severity, number> = { info: 0, warning: 0, critical: 0 };
  /** seq of the last applied snapshot or delta */
  lastSeq = 0;
  runIds: string[] = [];
  /** the runs the charts show, in colour order (the `selected` trait); empty: every run */
  selected: string[] = [];
  /** selected run → its palette slot (the `run_colors` trait) */
  private colorSlots = new Map<string, number>();
  status: Status = { level: "ok", message: "" };
  info: Record<string, RunInfo> = {};
  defaultCharts: string[] = [];
  /** the runs table (folder mode), null when the kernel sends none */
  runsTable: RunsTable | null = null;
  /** bumps when the table or a page of its rows arrives */
  tableVersion = 0;
  /** rows by run id: the trait's and those of pages the views asked for (their newest values) */
  private rowsById = new Map<string, Cell[]>();
  private columnIndexes = new Map<string, number>();
  /** bumps on every applied message */
  version = 0;
  /** browser clock (ms) when data for a run last arrived */
  receivedAt = new Map<string, number>();
  private listeners = new Set<Listener>();
  private namesCache: { version: number; names: string[] } | null = null;
  private namesVersion = 0;

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => {
      this.listeners.delete(fn);
    };
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  private emit(change: StoreChange): void {
    this.version++;
    for (const fn of Array.from(this.listeners)) {
      try {
        fn(change);
      } catch (err) {
        console.error("rldk_widget: store listener failed", err);
      }
    }
  }

  /** Replace all data with the `metrics` trait value (and the `alerts` trait, same seq). */
  applySnapshot(metrics: unknown, alerts: unknown): void {
    const m = isObject(metrics) ? metrics : {};
    this.lastSeq = typeof m.seq === "number" && Number.isFinite(m.seq) ? m.seq : 0;
    this.runs = new Map();
    const touched = new Set<string>();
    const now = Date.now();
    if (isObject(m.runs)) {
      for (const [runId, data] of Object.entries(m.runs)) {
        const run: Run = new Map();
        this.runs.set(runId, run);
        applyRunData(run, data, touched);
        this.receivedAt.set(runId, now);
      }
    }
    this.alerts = normalizeAlerts(alerts);
    const older = isObject(m.alert_counts) ? m.alert_counts : {};
    for (const sev of ["info", "warning", "critical"] as const) {
      const n = older[sev];
      this.olderAlerts[sev] = typeof n === "number" && n > 0 ? n : 0;
    }
    this.trimAlerts();
    this.namesVersion++;
    this.emit({ kind: "snapshot", series: touched, runs: new Set(this.runs.keys()), alerts: true, all: true });
  }

  /** Replace the alert list only (a `change:alerts` that arrives without a metrics change). */
  setAlerts(alerts: unknown): void {
    this.alerts = normalizeAlerts(alerts);
    this.emit({ kind: "meta", series: new Set(), runs: new Set(), alerts: true, all: false });
  }

  /**
   * Apply one delta message's payload (the caller has checked seq): runs replaced whole (newly selected) and runs
   * dropped (no longer selected) first, then the appended points.
   */
  applyDelta(seq: number, metrics: unknown, alerts: unknown, replaced?: unknown, dropped?: unknown): void {
    this.lastSeq = seq;
    const touched = new Set<string>();
    const runs = new Set<string>();
    const now = Date.now();
    let newNames = false;
    if (Array.isArray(dropped)) {
      for (const runId of dropped) if (typeof runId === "string" && this.runs.delete(runId)) newNames = true;
    }
    if (isObject(replaced)) {
      for (const [runId, data] of Object.entries(replaced)) {
        const run: Run = new Map();
        this.runs.set(runId, run);
        applyRunData(run, data, touched);
        runs.add(runId);
        this.receivedAt.set(runId, now);
        newNames = true;
      }
    }
    if (isObject(metrics)) {
      for (const [runId, data] of Object.entries(metrics)) {
        let run = this.runs.get(runId);
        if (!run) {
          run = new Map();
          this.runs.set(runId, run);
          newNames = true;
        }
        const before = run.size;
        applyRunData(run, data, touched);
        if (run.size !== before) newNames = true;
        runs.add(runId);
        this.receivedAt.set(runId, now);
      }
    }
    if (newNames) this.namesVersion++;
    const newAlerts = normalizeAlerts(alerts);
    if (newAlerts.length) {
      this.alerts.push(...newAlerts);
      this.trimAlerts();
    }
    const selection = (Array.isArray(dropped) && dropped.length > 0) || (isObject(replaced) && Object.keys(replaced).length > 0);
    this.emit({ kind: "delta", series: touched, runs, alerts: newAlerts.length > 0, all: newNames, selection });
  }

  private trimAlerts(): void {
    const extra = this.alerts.length - MAX_ALERTS;
    if (extra <= 0) return;
    for (const a of this.alerts.slice(0, extra)) this.olderAlerts[a.severity]++;
    this.alerts = this.alerts.slice(extra);
  }

  /** How many alerts there are (the newest in `alerts`, the older ones counted). */
  get alertTotal(): number {
    return this.alerts.length + this.olderAlerts.info + this.olderAlerts.warning + this.olderAlerts.critical;
  }

  /** The `runs_table` trait: replaces the table (rows that pages brought stay known until the columns change). */
  setRunsTable(v: unknown): void {
    const table = normalizeTable(v);
    const before = this.runsTable?.columns.map((c) => c.key).join("\u0000");
    this.runsTable = table;
    this.columnIndexes = new Map((table?.columns ?? []).map((c, i) => [c.key, i]));
    if (!table || before !== table.columns.map((c) => c.key).join("\u0000")) this.rowsById = new Map();
    if (table) this.rememberRows(table.rows);
    this.tableVersion++;
    this.emit({ kind: "table", series: new Set(), runs: new Set(), alerts: false, all: false });
  }

  /** Rows of a page a view asked for ("runs.page"), with the table's columns: remembered by run id. */
  addTableRows(rows: Cell[][]): void {
    if (!rows.length) return;
    this.rememberRows(rows);
    this.tableVersion++;
    this.emit({ kind: "table", series: new Set(), runs: new Set(), alerts: false, all: false });
  }

  private rememberRows(rows: Cell[][]): void {
    const id = this.columnIndexes.get("run_id");
    if (id === undefined) return;
    for (const row of rows) if (typeof row[id] === "string") this.rowsById.set(row[id] as string, row);
  }

  /** Index of a table column in the rows, -1 if none. */
  columnIndex(key: string): number {
    return this.columnIndexes.get(key) ?? -1;
  }

  /** A run's row of the runs table, when this view has it. */
  tableRow(runId: string): Cell[] | undefined {
    return this.rowsById.get(runId);
  }

  /** What a run is called on screen: its display name (a nested run's path), else its id. */
  runName(runId: string): string {
    return this.info[runId]?.name ?? runId;
  }

  setMeta(meta: {
    runIds?: unknown;
    selected?: unknown;
    runColors?: unknown;
    status?: unknown;
    info?: unknown;
    defaultCharts?: unknown;
  }): void {
    if (meta.runIds !== undefined)
      this.runIds = Array.isArray(meta.runIds) ? meta.runIds.filter((r): r is string => typeof r === "string") : [];
    if (meta.selected !== undefined)
      this.selected = Array.isArray(meta.selected) ? meta.selected.filter((r): r is string => typeof r === "string") : [];
    if (meta.runColors !== undefined) {
      this.colorSlots = new Map();
      if (isObject(meta.runColors))
        for (const [runId, slot] of Object.entries(meta.runColors))
          if (Number.isInteger(slot) && (slot as number) >= 0) this.colorSlots.set(runId, slot as number);
    }
    if (meta.status !== undefined) {
      const s = isObject(meta.status) ? meta.status : {};
      const level = s.level === "info" || s.level === "warning" || s.level === "error" ? s.level : "ok";
      this.status = { level, message: typeof s.message === "string" ? s.message : "" };
    }
    if (meta.info !== undefined) {
      const info: Record<string, RunInfo> = {};
      if (isObject(meta.info)) {
        for (const [k, v] of Object.entries(meta.info)) {
          if (!isObject(v)) continue;
          info[k] = {
            max_steps: typeof v.max_steps === "number" && v.max_steps > 0 ? v.max_steps : null,
            trainer: typeof v.trainer === "string" ? v.trainer : null,
            started: typeof v.started === "number" ? v.started : null,
          };
          if (typeof v.name === "string" && v.name) info[k].name = v.name.slice(0, MAX_CELL_CHARS);
        }
      }
      this.info = info;
    }
    if (meta.defaultCharts !== undefined)
      this.defaultCharts = Array.isArray(meta.defaultCharts)
        ? meta.defaultCharts.filter((r): r is string => typeof r === "string")
        : [];
    this.namesVersion++;
    this.emit({ kind: "meta", series: new Set(), runs: new Set(), alerts: false, all: true });
  }

  /** The runs the charts show, in colour order: the selection (or every run in `run_ids` order when there is
   * none, except in folder mode, where an empty selection is the user's), then runs only seen in data (a page
   * saved without the selection). */
  orderedRuns(): string[] {
    const all = !this.selected.length && !(this.runsTable && this.runsTable.total > 0);
    const out = (all ? this.runIds : this.selected).slice();
    const seen = new Set(out);
    for (const r of this.runs.keys()) if (!seen.has(r)) out.push(r);
    return out;
  }

  /** A run's palette slot: the kernel's (`run_colors`: kept while the run stays selected), else the lowest slot
   * no other shown run has, in `orderedRuns` order. */
  colorIndex(runId: string): number {
    const kept = this.colorSlots.get(runId);
    if (kept !== undefined) return kept;
    const used = new Set<number>();
    const runs = this.orderedRuns();
    for (const r of runs) {
      const slot = this.colorSlots.get(r);
      if (slot !== undefined) used.add(slot);
    }
    let free = 0;
    for (const r of runs) {
      if (this.colorSlots.has(r)) continue;
      while (used.has(free)) free++;
      if (r === runId) return free;
      used.add(free);
    }
    return 0;
  }

  /** The kernel's palette slots, as a string that changes when they do. */
  colorSlotsKey(): string {
    return [...this.colorSlots].map(([r, slot]) => `${r}\u0000${slot}`).join("\u0001");
  }

  series(runId: string, name: string): Series | undefined {
    return this.runs.get(runId)?.get(name);
  }

  /** All series names over all runs, sorted. */
  seriesNames(): string[] {
    if (this.namesCache && this.namesCache.version === this.namesVersion) return this.namesCache.names;
    const set = new Set<string>();
    for (const run of this.runs.values()) for (const name of run.keys()) set.add(name);
    const names = Array.from(set).sort((a, b) => a.localeCompare(b));
    this.namesCache = { version: this.namesVersion, names };
    return names;
  }

  hasSeries(name: string): boolean {
    for (const run of this.runs.values()) if (run.has(name)) return true;
    return false;
  }
}
