// The one colour of a run, for the charts, the header dots, the alert list and the runs table: by run (its slot,
// kept while it stays selected: the `run_colors` trait; the categorical palette) or by a value of the runs table (a configuration key or a metric):
// viridis for numbers (log scale when they span more than two decades, as learning rates do), the palette for
// text. Runs without the value are grey.
import type { Cell, Store } from "./store";

export const PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#9467bd",
  "#d62728",
  "#17becf",
  "#e377c2",
  "#8c564b",
  "#bcbd22",
  "#7f7f7f",
];

export const MISSING_COLOR = "#a8a8a8";

export function runColor(i: number): string {
  return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

/** matplotlib's viridis at nine evenly spaced points */
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];
const VIRIDIS_RGB = VIRIDIS.map((h) => {
  const n = parseInt(h.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
});

/** matplotlib's viridis at t in [0, 1], as #rrggbb */
export function viridis(t: number): string {
  const x = Math.max(0, Math.min(1, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS_RGB[i];
  const b = VIRIDIS_RGB[i + 1];
  const hex = (k: number) => Math.round(a[k] + (b[k] - a[k]) * f).toString(16).padStart(2, "0");
  return `#${hex(0)}${hex(1)}${hex(2)}`;
}

/**
 * The part of viridis a scale uses: on a light page it stops short of the near-white yellow, on a dark one it
 * starts after the near-black purple (a line of either would vanish into the page).
 */
export const SCALE_RANGE = { light: [0, 0.9], dark: [0.22, 1] } as const;

export type Legend =
  | { kind: "run" }
  | { kind: "continuous"; key: string; min: number; max: number; log: boolean; missing: number; gradient: string }
  | { kind: "categorical"; key: string; entries: Array<[string, string]>; more: number; missing: number };

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

function categoryText(v: Cell): string {
  return typeof v === "string" ? v : String(v);
}

/**
 * A view's colours. `colorBy` null: by run; else a column key of the runs table. The mapping is computed for the
 * selected runs (what the charts show) and cached until the selection, the table or the choice changes.
 */
export class RunColors {
  private by: string | null = null;
  private cacheKey = "";
  private map = new Map<string, string>();
  private legendValue: Legend = { kind: "run" };
  /** bumps when the mapping may have changed (views redraw what they coloured) */
  revision = 0;
  private range: readonly [number, number] = SCALE_RANGE.light;

  constructor(private store: Store) {}

  /** The page is dark (or light): the scale uses the part of viridis that shows on it. */
  setDark(dark: boolean): void {
    const range = dark ? SCALE_RANGE.dark : SCALE_RANGE.light;
    if (range === this.range) return;
    this.range = range;
    this.cacheKey = "";
    this.revision++;
  }

  /** The scale at t in [0, 1]. */
  scale(t: number): string {
    const [lo, hi] = this.range;
    return viridis(lo + Math.max(0, Math.min(1, t)) * (hi - lo));
  }

  /** CSS gradient of the scale (the legend's bar). */
  gradient(): string {
    const stops = Array.from({ length: 9 }, (_, i) => this.scale(i / 8));
    return `linear-gradient(to right, ${stops.join(", ")})`;
  }

  get colorBy(): string | null {
    return this.by;
  }

  set colorBy(key: string | null) {
    if (key === this.by) return;
    this.by = key;
    this.cacheKey = "";
    this.revision++;
  }

  /** The colour of a run (charts, header, alerts and table alike). */
  colorOf = (runId: string): string => {
    if (this.by === null) return runColor(this.store.colorIndex(runId));
    this.refresh();
    return this.map.get(runId) ?? MISSING_COLOR;
  };

  legend(): Legend {
    if (this.by === null) return { kind: "run" };
    this.refresh();
    return this.legendValue;
  }

  /** A string that changes when any colour may have changed (so a view knows to redraw). */
  signature(): string {
    if (this.by === null) return `run|${this.store.orderedRuns().join("\u0000")}|${this.store.colorSlotsKey()}`;
    this.refresh();
    return this.cacheKey + "|" + this.revision;
  }

  private refresh(): void {
    const key = this.by;
    if (key === null) return;
    const runs = this.store.orderedRuns();
    const cacheKey = `${key}|${this.range[0]}|${this.store.tableVersion}|${runs.join("\u0000")}`;
    if (cacheKey === this.cacheKey) return;
    this.cacheKey = cacheKey;
    this.revision++;
    this.map = new Map();
    const col = this.store.columnIndex(key);
    const values: Array<[string, Cell]> = [];
    let missing = 0;
    for (const r of runs) {
      const row = this.store.tableRow(r);
      const v = row && col >= 0 ? row[col] : null;
      if (v === null) missing++;
      else values.push([r, v]);
    }
    const numeric = values.length > 0 && values.every(([, v]) => typeof v === "number");
    if (numeric) {
      let min = Infinity;
      let max = -Infinity;
      for (const [, v] of values) {
        min = Math.min(min, v as number);
        max = Math.max(max, v as number);
      }
      const log = min > 0 && max / min > 100;
      const f = (v: number) => (log ? Math.log10(v) : v);
      const lo = f(min);
      const span = f(max) - lo;
      for (const [r, v] of values) this.map.set(r, this.scale(span > 0 ? (f(v as number) - lo) / span : 0.5));
      this.legendValue = { kind: "continuous", key, min, max, log, missing, gradient: this.gradient() };
      return;
    }
    const distinct = Array.from(new Set(values.map(([, v]) => categoryText(v)))).sort(collator.compare);
    const colorOfValue = new Map(distinct.map((v, i) => [v, runColor(i)]));
    for (const [r, v] of values) this.map.set(r, colorOfValue.get(categoryText(v))!);
    const shown = distinct.slice(0, PALETTE.length);
    this.legendValue = {
      kind: "categorical",
      key,
      entries: shown.map((v) => [v, colorOfValue.get(v)!]),
      more: distinct.length - shown.length,
      missing,
    };
  }
}
