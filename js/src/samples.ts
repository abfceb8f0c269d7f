// The Samples tab (issue 15): the completions behind the rewards, a step at a time, grouped by prompt.
//
// What exists comes from the `samples` trait (a small summary per run, SampleSource); the pages travel on request
// (requests.ts, docs/samples.md "page formats"): `samples.steps`, `samples.step`, `samples.sample`,
// `samples.search` (partial pages with progress) and `samples.prompt`. Each kind of page has one slot per panel, so
// a slider's burst is answered for its newest position only and a newer search replaces the older one. Where no
// kernel answers (save_html, a notebook reopened from its saved widget state) the panel shows the `samples_recent`
// pages: the newest steps only, sorted, filtered and searched here.
//
// Every text of a sample is untrusted model output: it goes through text.ts (text nodes, visible controls).
import { el, formatInt, formatValue } from "./dom";
import type { Requests } from "./requests";
import { markedBlock, plainText, textBlock } from "./text";

// ---- page formats (docs/samples.md) -------------------------------------------------------------------------
export interface RunSummary {
  steps: number;
  first_step: number | null;
  last_step: number | null;
  samples: number;
  reward_names: string[];
  sort_columns: string[];
  flags: string[];
}

interface Row {
  id: string;
  step: number;
  index: number;
  prompt_id: string;
  source?: string;
  prompt?: string;
  prompt_more?: boolean;
  completion: string;
  completion_more?: boolean;
  reward: unknown;
  rewards: Record<string, unknown>;
  advantage: unknown;
  completion_length: unknown;
  truncated: boolean | null;
  empty: boolean;
  cut: boolean;
  completion_chars?: number;
  prompt_chars?: number;
  extra?: Record<string, unknown>;
  missing?: string;
  cut_fields?: string[];
}

interface GroupStats {
  size: number;
  reward_mean: unknown;
  reward_std: unknown;
  reward_min: unknown;
  reward_max: unknown;
  identical_rewards: boolean;
}

interface Group extends GroupStats {
  prompt_id: string;
  prompt: string;
  prompt_more: boolean;
  prompt_chars: number;
  shown: number;
  rows: Row[];
}

interface StepPage {
  kind: "step";
  run_id: string;
  step: number | null;
  prev_step?: number | null;
  next_step?: number | null;
  reward_names?: string[];
  total_rows: number;
  matched_rows?: number;
  total_groups?: number;
  matched_groups?: number;
  more?: boolean;
  groups: Group[];
}

interface Snippet {
  text: string;
  start: number;
  match: [number, number] | null;
}

interface Match {
  id: string;
  step: number;
  index: number;
  prompt_id: string;
  in: string[];
  prompt: Snippet;
  completion: Snippet;
  reward: unknown;
  advantage: unknown;
  truncated: boolean | null;
  empty: boolean;
  cut: boolean;
}

interface SearchPage {
  kind: "search";
  run_id: string;
  query: string;
  matches: Match[];
  searched_steps: number;
  total_steps: number;
  done: boolean;
  /** where the next matches start (the kernel's page stopped at the match limit), or null */
  cursor?: unknown;
}

interface PromptStep extends GroupStats {
  step: number;
  rows: Row[];
}

interface PromptPage {
  kind: "prompt";
  run_id: string;
  prompt_id: string;
  prompt: string;
  prompt_more: boolean;
  total_steps: number;
  offset: number;
  more: boolean;
  steps: PromptStep[];
}

// ---- helpers ------------------------------------------------------------------------------------------------
function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A page number: a number, or "NaN" / "Infinity" / "-Infinity" (pages.py's jsonable); null when missing. */
function num(v: unknown): number | null {
  if (typeof v === "number") return v;
  if (v === "NaN") return NaN;
  if (v === "Infinity") return Infinity;
  if (v === "-Infinity") return -Infinity;
  return null;
}

function fmt(v: unknown): string {
  const n = num(v);
  return n === null ? "–" : formatValue(n);
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : [];
}

function summaryOf(v: unknown): RunSummary | null {
  if (!isObject(v)) return null;
  const n = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? x : null);
  return {
    steps: n(v.steps) ?? 0,
    first_step: n(v.first_step),
    last_step: n(v.last_step),
    samples: n(v.samples) ?? 0,
    reward_names: strings(v.reward_names),
    sort_columns: strings(v.sort_columns),
    flags: strings(v.flags),
  };
}

/** The largest step of `steps` (ascending) at or below `s`; the first one when all are above. */
export function floorStep(steps: number[], s: number): number | null {
  if (!steps.length) return null;
  let lo = 0;
  let hi = steps.length - 1;
  if (steps[0] > s) return steps[0];
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (steps[mid] <= s) lo = mid;
    else hi = mid - 1;
  }
  return steps[lo];
}

/** Charts whose points link to the samples of their step: reward, per-function reward and completion length. */
export function isSampleChart(name: string): boolean {
  if (name === "reward" || name === "reward_mean" || name === "reward_std") return true;
  if (name.startsWith("rewards/")) return true;
  if (name.startsWith("completions/") && name.includes("length")) return true;
  return name.startsWith("completion_length");
}

const SORT_LABELS: Record<string, string> = {
  index: "trainer's order",
  reward: "reward",
  advantage: "advantage",
  completion_length: "length (tokens)",
  completion_chars: "completion characters",
  prompt_chars: "prompt characters",
  group_mean: "group reward mean",
  group_std: "group reward spread",
};

const FLAG_LABELS: Record<string, [string, string]> = {
  truncated: ["truncated", "cut at max_completion_length by the trainer"],
  empty: ["empty", "an empty (or whitespace-only) completion"],
  cut: ["capped on disk", "the stored text was capped at the callback's text cap (SampleSettings.text_cap_bytes)"],
  identical: ["identical rewards", "every completion of the prompt got the same reward: no learning signal (zero advantage)"],
};

/** Texts longer than this are drawn in part first, with a button for the rest (a 1 MB completion stays smooth). */
const DETAIL_CHARS = 100_000;
const WAIT_NOTE_MS = 1000;
/** With saved pages at hand, a request unanswered this long shows them ("no kernel"). */
const FALLBACK_MS = 1500;
const PAGE_GROUPS = 64;
const PREVIEW_CHARS = 600;
const SEARCH_LIMIT = 200;
const PROMPT_STEPS = 20;

// ---- what the kernel says exists (one per model, fed by widget.ts) --------------------------------------------
export class SampleSource {
  summaries: Record<string, RunSummary> = {};
  /** run id → step (as a string) → step page: what a saved notebook / save_html keeps (newest steps only) */
  recent: Record<string, Record<string, StepPage>> = {};
  /** true where requests can never be answered (save_html's read-only model) */
  noKernel = false;
  private listeners = new Set<() => void>();

  setSummaries(v: unknown): void {
    const out: Record<string, RunSummary> = {};
    if (isObject(v)) {
      for (const [runId, s] of Object.entries(v)) {
        const summary = summaryOf(s);
        if (summary && summary.samples > 0) out[runId] = summary;
      }
    }
    this.summaries = out;
    this.notify();
  }

  setRecent(v: unknown): void {
    const out: Record<string, Record<string, StepPage>> = {};
    if (isObject(v)) {
      for (const [runId, pages] of Object.entries(v)) {
        if (!isObject(pages)) continue;
        const kept: Record<string, StepPage> = {};
        for (const [step, page] of Object.entries(pages)) {
          if (isObject(page) && Array.isArray(page.groups) && Number.isFinite(Number(step))) kept[step] = page as unknown as StepPage;
        }
        if (Object.keys(kept).length) out[runId] = kept;
      }
    }
    this.recent = out;
    this.notify();
  }

  /** Runs with samples: the summary's, else (a page saved without it) the saved pages'. */
  runs(): string[] {
    const ids = new Set([...Object.keys(this.summaries), ...Object.keys(this.recent)]);
    return [...ids];
  }

  has(runId: string): boolean {
    return runId in this.summaries || runId in this.recent;
  }

  recentSteps(runId: string): number[] {
    return Object.keys(this.recent[runId] ?? {})
      .map(Number)
      .sort((a, b) => a - b);
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private notify(): void {
    for (const fn of Array.from(this.listeners)) fn();
  }
}

// ---- client-side pages from the saved ones (no kernel) --------------------------------------------------------
type Flags = Record<string, boolean>;

function rowValue(row: Row, group: GroupStats, column: string): number {
  const v = (() => {
    switch (column) {
      case "index":
        return row.index;
      case "reward":
        return num(row.reward);
      case "advantage":
        return num(row.advantage);
      case "completion_length":
        return num(row.completion_length);
      case "completion_chars":
        return row.completion_chars ?? null;
      case "prompt_chars":
        return row.prompt_chars ?? null;
      case "group_mean":
        return num(group.reward_mean);
      case "group_std":
        return num(group.reward_std);
      default:
        return num(row.rewards?.[column]);
    }
  })();
  return v === null ? NaN : v;
}

function rowFlag(row: Row, group: GroupStats, flag: string): boolean {
  if (flag === "identical") return !!group.identical_rewards;
  if (flag === "truncated") return row.truncated === true;
  if (flag === "empty") return !!row.empty;
  if (flag === "cut") return !!row.cut;
  return false;
}

/** What the kernel's `samples.step` does, on a saved page: filter, sort (NaN last), groups by their first row. */
function localPage(page: StepPage, sort: string, descending: boolean, flags: Flags, range: [number | null, number | null], column: string): StepPage {
  const rows: Array<{ row: Row; group: Group }> = [];
  for (const group of page.groups) {
    for (const row of group.rows) {
      let keep = true;
      for (const [flag, want] of Object.entries(flags)) if (rowFlag(row, group, flag) !== want) keep = false;
      const v = column === "reward" ? num(row.reward) : num(row.rewards?.[column]);
      if (range[0] !== null && !(v !== null && v >= range[0])) keep = false;
      if (range[1] !== null && !(v !== null && v <= range[1])) keep = false;
      if (keep) rows.push({ row, group });
    }
  }
  if (sort !== "index" || descending) {
    rows.sort((a, b) => {
      const x = rowValue(a.row, a.group, sort);
      const y = rowValue(b.row, b.group, sort);
      if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) ? (Number.isNaN(y) ? 0 : 1) : -1;
      return descending ? y - x : x - y;
    });
  }
  const order = new Map<string, { group: Group; rows: Row[] }>();
  for (const { row, group } of rows) {
    let g = order.get(group.prompt_id);
    if (!g) order.set(group.prompt_id, (g = { group, rows: [] }));
    g.rows.push(row);
  }
  const groups = [...order.values()].map(({ group, rows }) => ({ ...group, shown: rows.length, rows }));
  return { ...page, groups, matched_rows: rows.length, matched_groups: groups.length, more: false };
}

function localSnippet(text: string, query: string): Snippet {
  const i = text.toLowerCase().indexOf(query.toLowerCase());
  if (i < 0) return { text: text.slice(0, 240), start: 0, match: null };
  const start = Math.max(0, i - 80);
  return { text: text.slice(start, start + 240), start, match: [i - start, Math.min(i - start + query.length, 240)] };
}

// ---- the panel ----------------------------------------------------------------------------------------------
type Mode = "step" | "prompt";

let panels = 0;

export class SamplesPanel {
  readonly el: HTMLElement;
  private readonly slot = `samples${++panels}`;
  private runSelect: HTMLSelectElement;
  private runBox: HTMLElement;
  private slider: HTMLInputElement;
  private stepInput: HTMLInputElement;
  private prevBtn: HTMLButtonElement;
  private nextBtn: HTMLButtonElement;
  private followBox: HTMLInputElement;
  private stepInfo: HTMLElement;
  private sortSelect: HTMLSelectElement;
  private flagChips: HTMLElement;
  private rangeColumn: HTMLSelectElement;
  private rangeLow: HTMLInputElement;
  private rangeHigh: HTMLInputElement;
  private searchInput: HTMLInputElement;
  private noteEl: HTMLElement;
  private errorEl: HTMLElement;
  private searchEl: HTMLElement;
  private body: HTMLElement;

  private runId: string | null = null;
  private steps: number[] = [];
  private stepsRun: string | null = null;
  private step: number | null = null;
  /** the step a link asked for, when the samples are at an earlier step */
  private askedStep: number | null = null;
  private follow = true;
  private sort = { column: "index", descending: false };
  private flags: Flags = {};
  private range: [number | null, number | null] = [null, null];
  private rangeCol = "reward";
  private mode: Mode = "step";
  private page: StepPage | null = null;
  private promptPage: PromptPage | null = null;
  private expanded: string | null = null;
  /** full samples (samples.sample) by id, for expanded rows */
  private details = new Map<string, Row>();
  /** expand this sample once its step's page is drawn (a search match) */
  private expandOnDraw: string | null = null;
  /** the step of the newest page request (a follow-up for the same step is not sent twice) */
  private requestedStep: number | null = null;
  private dirBtn: HTMLButtonElement;
  private search: SearchPage | null = null;
  private searchQuery = "";
  private searchTimer: ReturnType<typeof setTimeout> | 0 = 0;
  private rangeTimer: ReturnType<typeof setTimeout> | 0 = 0;
  private visible = false;
  private stale = true;
  private lastSummary = "";
  private runsKey: string | null = null;
  /** outstanding requests of this panel: slot → sent at (performance.now()) */
  private pending = new Map<string, number>();
  private ticker: ReturnType<typeof setInterval> | 0 = 0;
  /** requests went unanswered and saved pages exist: show those until a kernel answers */
  private fallback = false;
  private unsubscribe: () => void;
  private destroyed = false;
  /** click → rows drawn (ms) of the newest step page, for tests and benchmarks */
  readonly timings: Array<{ what: string; ms: number }> = [];
  private actionAt = 0;

  constructor(
    private source: SampleSource,
    private requests: Requests | null,
    private colorOf: (runId: string) => string,
    private runOrder: () => string[],
    private onAvailable: (available: boolean) => void,
  ) {
    // run picker
    this.runSelect = el("select", { className: "rldk-select", title: "the run whose samples are shown" });
    this.runBox = el("label", { className: "rldk-ctl" }, [el("span", { className: "rldk-ctl-label", textContent: "run" }), this.runSelect]);
    this.runSelect.addEventListener("change", () => this.setRun(this.runSelect.value));

    // step picker
    this.prevBtn = el("button", { type: "button", className: "rldk-btn rldk-btn-small", textContent: "‹", title: "previous step with samples" });
    this.nextBtn = el("button", { type: "button", className: "rldk-btn rldk-btn-small", textContent: "›", title: "next step with samples" });
    this.slider = el("input", { type: "range", min: "0", max: "0", step: "1", value: "0", className: "rldk-slider rldk-step-slider", title: "step" });
    this.stepInput = el("input", { type: "number", className: "rldk-input rldk-step-num", title: "step (the nearest step with samples at or before it)" });
    this.followBox = el("input", { type: "checkbox", checked: true });
    this.stepInfo = el("span", { className: "rldk-muted rldk-step-info" });
    this.prevBtn.addEventListener("click", () => this.stepBy(-1));
    this.nextBtn.addEventListener("click", () => this.stepBy(1));
    this.slider.addEventListener("input", () => {
      const s = this.steps[Number(this.slider.value)];
      if (s !== undefined) this.pick(s);
    });
    this.stepInput.addEventListener("change", () => {
      const v = Number(this.stepInput.value);
      if (this.stepInput.value.trim() !== "" && Number.isFinite(v)) this.pick(v, true);
    });
    this.followBox.addEventListener("change", () => {
      this.follow = this.followBox.checked;
      if (this.follow) this.gotoNewest();
    });

    // sort, flags, reward range
    this.sortSelect = el("select", { className: "rldk-select", title: "sort the samples (groups follow their first sample)" });
    this.sortSelect.addEventListener("change", () => this.setSort(this.sortSelect.value, this.sort.descending));
    const dirBtn = (this.dirBtn = el("button", { type: "button", className: "rldk-btn rldk-btn-small", title: "ascending / descending" }));
    dirBtn.addEventListener("click", () => this.setSort(this.sort.column, !this.sort.descending));
    this.flagChips = el("span", { className: "rldk-flag-chips" });
    this.flagChips.addEventListener("click", (e) => {
      const b = (e.target as HTMLElement).closest("button");
      const flag = b?.dataset.flag;
      if (!flag) return;
      // any → only these → without these → any
      const cur = this.flags[flag];
      if (cur === undefined) this.flags[flag] = true;
      else if (cur) this.flags[flag] = false;
      else delete this.flags[flag];
      this.mode = "step";
      this.renderControls();
      this.requestPage();
    });
    this.rangeColumn = el("select", { className: "rldk-select", title: "the reward the range applies to" });
    this.rangeLow = el("input", { type: "number", step: "any", className: "rldk-input rldk-range-num", placeholder: "min" });
    this.rangeHigh = el("input", { type: "number", step: "any", className: "rldk-input rldk-range-num", placeholder: "max" });
    const onRange = (now: boolean) => {
      if (this.rangeTimer) clearTimeout(this.rangeTimer);
      this.rangeTimer = setTimeout(() => this.setRange(), now ? 0 : 350);
    };
    this.rangeLow.addEventListener("input", () => onRange(false));
    this.rangeHigh.addEventListener("input", () => onRange(false));
    this.rangeLow.addEventListener("change", () => onRange(true));
    this.rangeHigh.addEventListener("change", () => onRange(true));
    this.rangeColumn.addEventListener("change", () => onRange(true));

    // search
    this.searchInput = el("input", { type: "search", className: "rldk-input rldk-samples-search", placeholder: "search prompts and completions of all steps…" });
    this.searchInput.addEventListener("input", () => {
      if (this.searchTimer) clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.runSearch(), 400);
    });
    this.searchInput.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        if (this.searchTimer) clearTimeout(this.searchTimer);
        this.runSearch();
      } else if (e.key === "Escape") {
        this.searchInput.value = "";
        this.runSearch();
      }
    });

    this.noteEl = el("div", { className: "rldk-samples-note", hidden: true, role: "status" });
    this.errorEl = el("div", { className: "rldk-samples-error", hidden: true, role: "alert" });
    this.searchEl = el("div", { className: "rldk-search-results", hidden: true });
    this.body = el("div", { className: "rldk-samples-body" });
    this.body.addEventListener("click", (e) => this.onBodyClick(e));
    this.body.addEventListener("keydown", (e) => {
      const t = e.target as HTMLElement;
      if ((e.key === "Enter" || e.key === " ") && t.dataset.row !== undefined) {
        e.preventDefault();
        const row = this.rowById(t.dataset.row);
        if (row) this.expand(row);
      }
    });
    this.searchEl.addEventListener("click", (e) => this.onSearchClick(e));

    const stepBox = el("span", { className: "rldk-ctl rldk-step-picker" }, [
      el("span", { className: "rldk-ctl-label", textContent: "step" }),
      this.prevBtn,
      this.slider,
      this.nextBtn,
      this.stepInput,
      this.stepInfo,
    ]);
    const followLabel = el("label", { className: "rldk-ctl", title: "show the newest step as training logs more" }, [
      this.followBox,
      el("span", { className: "rldk-ctl-label", textContent: "follow newest" }),
    ]);
    const sortBox = el("span", { className: "rldk-ctl" }, [el("span", { className: "rldk-ctl-label", textContent: "sort" }), this.sortSelect, dirBtn]);
    const rangeBox = el("span", { className: "rldk-ctl" }, [
      el("span", { className: "rldk-ctl-label", textContent: "range" }),
      this.rangeColumn,
      this.rangeLow,
      el("span", { className: "rldk-ctl-label", textContent: "–" }),
      this.rangeHigh,
    ]);
    this.el = el("div", { className: "rldk-samples", hidden: true }, [
      el("div", { className: "rldk-samples-controls" }, [this.runBox, stepBox, followLabel]),
      el("div", { className: "rldk-samples-controls" }, [sortBox, el("span", { className: "rldk-ctl" }, [el("span", { className: "rldk-ctl-label", textContent: "show" }), this.flagChips]), rangeBox]),
      el("div", { className: "rldk-samples-controls" }, [this.searchInput]),
      this.noteEl,
      this.errorEl,
      this.searchEl,
      this.body,
    ]);
    this.unsubscribe = source.subscribe(() => this.onSource());
    this.onSource();
  }

  // ---- public: the view ---------------------------------------------------------------------------------------
  get available(): boolean {
    return this.source.runs().length > 0;
  }

  /** Does `runId` have samples (links from charts and alerts are offered only then)? */
  has(runId: string): boolean {
    return this.source.has(runId);
  }

  setVisible(v: boolean): void {
    this.visible = v;
    this.el.hidden = !v;
    if (v && this.stale) this.refresh();
  }

  /** Show `runId`'s samples at `step` (the nearest step with samples at or before it): a chart point or an alert. */
  open(runId: string, step: number): void {
    if (!this.source.has(runId)) return;
    this.actionAt = performance.now();
    this.follow = false;
    this.followBox.checked = false;
    this.mode = "step";
    this.expanded = null;
    this.askedStep = step;
    if (runId !== this.runId) this.setRun(runId, false);
    const known = this.stepsRun === this.runId && this.steps.length > 0;
    this.step = known ? floorStep(this.steps, step) : step;
    this.renderPicker();
    this.requestPage();
    if (!known || this.stale) this.loadSteps(false);
    this.stale = false;
  }

  destroy(): void {
    this.destroyed = true;
    this.unsubscribe();
    if (this.ticker) clearInterval(this.ticker);
    if (this.searchTimer) clearTimeout(this.searchTimer);
    if (this.rangeTimer) clearTimeout(this.rangeTimer);
  }

  // ---- state changes ------------------------------------------------------------------------------------------
  /** no kernel can ever answer (save_html): never ask */
  private get silent(): boolean {
    return this.source.noKernel || this.requests === null;
  }

  /** show the saved pages: no kernel, or none answered yet (the kernel is still asked, and replaces them) */
  private get local(): boolean {
    return this.silent || (this.fallback && !!this.runId && this.runId in this.source.recent);
  }

  private get summary(): RunSummary | null {
    return this.runId ? (this.source.summaries[this.runId] ?? null) : null;
  }

  private onSource(): void {
    const runs = this.orderedRuns();
    const runsKey = runs.join("\u0000");
    if (runsKey !== this.runsKey) {
      this.runsKey = runsKey; // which runs have samples changed: the tab, the alerts' links
      this.onAvailable(runs.length > 0);
    }
    if (!runs.length) return;
    if (this.runId === null || !runs.includes(this.runId)) {
      this.setRun(runs[0], false);
    }
    this.renderRunPicker(runs);
    const s = this.summary;
    const key = JSON.stringify([this.runId, s?.steps, s?.last_step, s?.samples, Object.keys(this.source.recent[this.runId!] ?? {})]);
    if (key === this.lastSummary) return;
    this.lastSummary = key;
    // new steps: the slider's range, and with "follow newest" the newest step
    if (!this.visible) {
      this.stale = true;
      return;
    }
    this.loadSteps(this.follow && this.mode === "step");
  }

  private orderedRuns(): string[] {
    const have = this.source.runs();
    const order = this.runOrder();
    const set = new Set(have);
    return [...order.filter((r) => set.has(r)), ...have.filter((r) => !order.includes(r))];
  }

  private setRun(runId: string, load = true): void {
    if (runId === this.runId && !load) return;
    this.runId = runId;
    this.steps = [];
    this.stepsRun = null;
    this.page = null;
    this.promptPage = null;
    this.expanded = null;
    this.details.clear();
    this.requestedStep = null;
    this.mode = "step";
    const s = this.summary;
    if (s && !s.sort_columns.includes(this.sort.column)) this.sort = { column: "index", descending: false };
    if (s && this.rangeCol !== "reward" && !s.reward_names.includes(this.rangeCol)) this.rangeCol = "reward";
    this.search = null;
    this.renderControls();
    if (this.searchQuery) this.runSearch(true);
    if (load) {
      this.follow = true;
      this.followBox.checked = true;
      this.refresh();
    }
  }

  /** Everything again: steps, then the step (the newest when following). */
  private refresh(): void {
    if (!this.runId) return;
    this.stale = false;
    this.loadSteps(this.follow || this.step === null);
  }

  private loadSteps(goNewest: boolean): void {
    const runId = this.runId;
    if (!runId) return;
    if (this.local) {
      this.steps = this.source.recentSteps(runId);
      this.stepsRun = runId;
      this.afterSteps(goNewest);
      if (this.silent) return;
    }
    // with "follow newest" the newest page need not wait for the step list: the summary names it
    const last = this.summary?.last_step;
    if (goNewest && last !== null && last !== undefined && (this.step !== last || this.requestedStep !== last)) {
      this.step = last;
      this.renderPicker();
      this.requestPage();
    }
    // training logged one more step: the list grows by the summary's newest, no need to fetch it whole (10k steps)
    const known = this.stepsRun === runId ? this.steps : null;
    const count = this.summary?.steps;
    if (known && known.length && last !== null && last !== undefined && count === known.length + 1 && last > known[known.length - 1]) {
      this.steps = [...known, last];
      this.afterSteps(false); // the newest (`last`) is asked for above when following
      return;
    }
    if (known && count === known.length && last === known[known.length - 1]) {
      this.afterSteps(false);
      return;
    }
    void this.ask<{ run_id: string; steps: unknown }>("samples.steps", { run_id: runId }, "steps").then((data) => {
      if (!data || data.run_id !== this.runId) return;
      this.steps = (Array.isArray(data.steps) ? data.steps : []).filter((s): s is number => typeof s === "number").sort((a, b) => a - b);
      this.stepsRun = runId;
      const newest = this.steps[this.steps.length - 1];
      this.afterSteps(goNewest && !(last !== null && last !== undefined && newest === this.step));
    });
  }

  private afterSteps(goNewest: boolean): void {
    if (!this.steps.length) {
      this.step = null;
      this.renderPicker();
      this.renderBody();
      return;
    }
    if (goNewest || this.step === null) {
      this.step = this.steps[this.steps.length - 1];
      this.renderPicker();
      if (this.mode === "step" && (this.local || this.requestedStep !== this.step || !this.page)) this.requestPage();
      return;
    }
    this.step = floorStep(this.steps, this.step);
    this.renderPicker();
    if (this.mode !== "step") return;
    const asked = this.requestedStep;
    if (this.local || asked === null || floorStep(this.steps, asked) !== this.step) this.requestPage();
  }

  private gotoNewest(): void {
    this.mode = "step";
    this.askedStep = null;
    this.loadSteps(true);
  }

  /** The user picked step `s` (slider, number, prev / next): stop following, show it. */
  private pick(s: number, nearest = false, expand: string | null = null): void {
    this.actionAt = performance.now();
    this.follow = false;
    this.followBox.checked = false;
    this.mode = "step";
    this.askedStep = nearest ? s : null;
    // (showing the saved pages while the kernel is asked again, the kernel finds the step: it knows them all)
    const resolved = nearest && this.steps.length && !this.fallback ? floorStep(this.steps, s) : s;
    if (resolved === null) return;
    this.step = resolved;
    this.expanded = null;
    this.expandOnDraw = expand;
    this.renderPicker();
    this.requestPage();
  }

  private stepBy(d: number): void {
    if (!this.steps.length) return;
    let i = this.step === null ? this.steps.length - 1 : this.steps.indexOf(this.step);
    if (i < 0) i = this.steps.length - 1;
    const j = Math.max(0, Math.min(this.steps.length - 1, i + d));
    this.pick(this.steps[j]);
  }

  private setSort(column: string, descending: boolean): void {
    this.actionAt = performance.now();
    this.mode = "step";
    this.sort = { column, descending };
    this.renderControls();
    this.requestPage();
  }

  private setRange(): void {
    const parse = (s: string) => (s.trim() === "" || !Number.isFinite(Number(s)) ? null : Number(s));
    const next: [number | null, number | null] = [parse(this.rangeLow.value), parse(this.rangeHigh.value)];
    const col = this.rangeColumn.value || "reward";
    if (next[0] === this.range[0] && next[1] === this.range[1] && col === this.rangeCol) return;
    this.actionAt = performance.now();
    this.mode = "step";
    this.range = next;
    this.rangeCol = col;
    this.requestPage();
  }

  // ---- requests -----------------------------------------------------------------------------------------------
  /**
   * One request in this panel's `name` slot: the data, or null when it was superseded (stale) or failed (the error
   * line says why). While one is outstanding for more than a second the note says the panel waits for the kernel.
   */
  private async ask<T>(what: string, params: Record<string, unknown>, name: string, onPartial?: (data: T) => void): Promise<T | null> {
    if (!this.requests) return null;
    this.pending.set(name, performance.now());
    this.startTicker();
    const outcome = await this.requests.request<T>(what, params, `${this.slot}:${name}`, (d) => {
      this.fallback = false;
      if (this.pending.has(name)) this.pending.set(name, performance.now()); // it is answering: not "waiting"
      onPartial?.(d);
    });
    if (this.destroyed) return null;
    if (outcome.ok || !outcome.stale) this.pending.delete(name);
    if (outcome.ok) {
      if (this.fallback) {
        this.fallback = false;
        this.renderNote();
      }
      this.setError(null);
      this.renderNote();
      return outcome.data;
    }
    if (!outcome.stale) {
      this.setError(`${what.replace("samples.", "")}: ${outcome.error}`);
      if (name === "step" && this.runId && this.source.recent[this.runId] && !this.fallback) {
        this.fallback = true; // the saved pages, while no kernel answers
        this.loadSteps(this.step === null);
      }
    }
    this.renderNote();
    return null;
  }

  private startTicker(): void {
    if (this.ticker) return;
    this.ticker = setInterval(() => {
      if (!this.pending.size) {
        clearInterval(this.ticker);
        this.ticker = 0;
      }
      const stepAt = this.pending.get("step");
      if (!this.fallback && stepAt !== undefined && performance.now() - stepAt > FALLBACK_MS && this.runId && this.source.recent[this.runId]) {
        this.fallback = true;
        this.loadSteps(this.step === null);
      }
      this.renderNote();
    }, 250);
  }

  private setError(message: string | null): void {
    this.errorEl.hidden = message === null;
    this.errorEl.textContent = message === null ? "" : `Could not load the samples (${plainText(message, 400)})`;
  }

  private pageParams(): Record<string, unknown> {
    const params: Record<string, unknown> = {
      run_id: this.runId,
      step: this.step,
      sort: this.sort.column,
      descending: this.sort.descending,
      limit: PAGE_GROUPS,
      text_chars: PREVIEW_CHARS,
    };
    if (Object.keys(this.flags).length) params.flags = { ...this.flags };
    if (this.range[0] !== null || this.range[1] !== null) {
      params.reward_range = [...this.range];
      params.reward_column = this.rangeCol;
    }
    return params;
  }

  private requestPage(offset = 0): void {
    if (!this.runId || this.step === null) return;
    const local = this.local;
    if (local) {
      const pages = this.source.recent[this.runId] ?? {};
      const saved = pages[String(this.step)];
      this.page = saved ? localPage(saved, this.sort.column, this.sort.descending, this.flags, this.range, this.rangeCol) : null;
      this.renderBody();
      if (this.silent) return;
    }
    const params = { ...this.pageParams(), offset };
    const runId = this.runId;
    const step = this.step;
    this.requestedStep = step;
    // the rows drawn stay until the new ones come (a slider drag does not flash); the body says it is loading
    if (!local) this.body.dataset.state = "loading";
    void this.ask<StepPage>("samples.step", params, "step").then((data) => {
      if (!data || data.run_id !== runId || this.runId !== runId || this.step !== step || this.mode !== "step") return;
      if (typeof data.step === "number" && data.step !== step) {
        // the kernel answers with the nearest step at or before the one asked for
        if (this.askedStep === null) this.askedStep = step;
        this.step = this.requestedStep = data.step;
        this.renderPicker();
      }
      if (offset > 0 && this.page && this.page.step === data.step) {
        this.page = { ...data, groups: [...this.page.groups, ...data.groups] };
      } else {
        this.page = data;
      }
      if (this.expandOnDraw && data.groups.some((g) => g.rows.some((r) => r.id === this.expandOnDraw))) {
        this.expanded = this.expandOnDraw;
        this.loadDetail(this.expanded);
      }
      this.expandOnDraw = null;
      this.renderBody();
    });
  }

  private runSearch(force = false): void {
    const query = this.searchInput.value.trim();
    if (query === this.searchQuery && !force) return;
    this.searchQuery = query;
    const runId = this.runId;
    if (!runId) return;
    if (!query) {
      this.search = null;
      this.renderSearch();
      // an empty search in the slot ends a running one in the kernel (it is superseded)
      if (!this.silent) void this.ask("samples.search", { run_id: runId, query: "" }, "search");
      return;
    }
    if (this.local) {
      this.search = this.localSearch(runId, query);
      this.renderSearch();
      if (this.silent) return;
    }
    if (!this.local) {
      this.search = { kind: "search", run_id: runId, query, matches: [], searched_steps: 0, total_steps: this.summary?.steps ?? 0, done: false };
      this.renderSearch();
    }
    this.askSearch(runId, query, [], null);
  }

  /** Ask the kernel for `query`'s matches after `prior` (from `cursor`, null: from the newest step). */
  private askSearch(runId: string, query: string, prior: Match[], cursor: unknown): void {
    const started = performance.now();
    let timed = false;
    const onPage = (data: SearchPage, final: boolean) => {
      if (!isObject(data) || !Array.isArray(data.matches) || data.run_id !== this.runId || data.query !== this.searchQuery) return;
      this.search = { ...data, matches: prior.concat(data.matches), done: final, cursor: final ? data.cursor ?? null : null };
      this.renderSearch();
      if (!timed && (data.matches.length || final)) {
        timed = true;
        this.timings.push({ what: prior.length ? "search next page" : "search first page", ms: performance.now() - started });
      }
    };
    const params = { run_id: runId, query, limit: SEARCH_LIMIT, ...(cursor === null ? {} : { cursor }) };
    void this.ask<SearchPage>("samples.search", params, "search", (d) => onPage(d, false)).then((data) => {
      if (data) onPage(data, true);
    });
  }

  private searchNext(): void {
    const s = this.search;
    if (!s || !s.done || s.cursor == null || !this.runId || this.silent) return;
    this.search = { ...s, done: false, cursor: null };
    this.renderSearch();
    this.askSearch(this.runId, s.query, s.matches, s.cursor);
  }

  private localSearch(runId: string, query: string): SearchPage {
    const q = query.toLowerCase();
    const steps = this.source.recentSteps(runId).reverse();
    const matches: Match[] = [];
    for (const step of steps) {
      const page = this.source.recent[runId][String(step)];
      for (const g of page.groups) {
        for (const r of g.rows) {
          const inPrompt = g.prompt.toLowerCase().includes(q);
          const inCompletion = r.completion.toLowerCase().includes(q);
          if (!inPrompt && !inCompletion) continue;
          matches.push({
            id: r.id,
            step,
            index: r.index,
            prompt_id: g.prompt_id,
            in: [...(inPrompt ? ["prompt"] : []), ...(inCompletion ? ["completion"] : [])],
            prompt: localSnippet(g.prompt, query),
            completion: localSnippet(r.completion, query),
            reward: r.reward,
            advantage: r.advantage,
            truncated: r.truncated,
            empty: r.empty,
            cut: r.cut,
          });
        }
      }
    }
    return { kind: "search", run_id: runId, query, matches, searched_steps: steps.length, total_steps: steps.length, done: true };
  }

  private openPrompt(promptId: string, offset = 0): void {
    if (!this.runId) return;
    this.actionAt = performance.now();
    this.follow = false;
    this.followBox.checked = false;
    this.mode = "prompt";
    this.expanded = null;
    if (offset === 0) this.promptPage = null;
    if (this.local) this.promptPage = this.localPrompt(this.runId, promptId);
    this.renderBody();
    if (this.silent) return;
    const runId = this.runId;
    void this.ask<PromptPage>("samples.prompt", { run_id: runId, prompt_id: promptId, offset, limit: PROMPT_STEPS, text_chars: 600 }, "prompt").then((data) => {
      if (!data || data.run_id !== this.runId || this.mode !== "prompt") return;
      if (offset > 0 && this.promptPage && this.promptPage.prompt_id === data.prompt_id) {
        this.promptPage = { ...data, steps: [...this.promptPage.steps, ...data.steps] };
      } else {
        this.promptPage = data;
      }
      this.renderBody();
    });
  }

  private localPrompt(runId: string, promptId: string): PromptPage {
    const steps: PromptStep[] = [];
    let prompt = "";
    let more = false;
    for (const step of this.source.recentSteps(runId)) {
      const g = this.source.recent[runId][String(step)].groups.find((x) => x.prompt_id === promptId);
      if (!g) continue;
      prompt = g.prompt;
      more = g.prompt_more;
      steps.push({ ...g, step });
    }
    return { kind: "prompt", run_id: runId, prompt_id: promptId, prompt, prompt_more: more, total_steps: steps.length, offset: 0, more: false, steps };
  }

  private expand(row: Row): void {
    if (this.expanded === row.id) {
      this.expanded = null;
      this.placeDetail();
      return;
    }
    this.expanded = row.id;
    // reading a sample: keep this step in place while training logs more
    this.follow = false;
    this.followBox.checked = false;
    this.placeDetail();
    this.loadDetail(row.id);
  }

  /** The open sample's detail under its row, in place (the other rows, and their scroll positions, stay). */
  private placeDetail(): void {
    for (const n of this.body.querySelectorAll(".rldk-sample-detail, .rldk-prompt-row-detail")) n.remove();
    for (const n of this.body.querySelectorAll(".rldk-row-open")) n.classList.remove("rldk-row-open");
    const id = this.expanded;
    const host = id === null ? null : this.body.querySelector<HTMLElement>(`[data-row="${CSS.escape(id)}"]`);
    const row = id === null ? null : this.rowById(id);
    if (!host || !row) return;
    host.classList.add("rldk-row-open");
    const full = this.details.get(row.id);
    const detail = this.detail(full ?? row, !!full);
    let box: HTMLElement;
    if (host.tagName === "TR") {
      const cell = el("td", { colSpan: host.children.length }, [detail]);
      box = el("tr", { className: "rldk-sample-detail" }, [cell]);
    } else {
      box = el("div", { className: "rldk-prompt-row-detail" }, [detail]);
    }
    box.dataset.for = row.id;
    host.after(box);
  }

  /** Ask for a sample's whole texts (once; kept for the run) and draw them into its open detail. */
  private loadDetail(id: string): void {
    if (this.silent || !this.runId || this.details.has(id)) return;
    void this.ask<Row>("samples.sample", { run_id: this.runId, id }, "sample").then((data) => {
      if (!data || typeof data.completion !== "string") return;
      if (this.details.size > 50) this.details.delete(this.details.keys().next().value!);
      this.details.set(id, data);
      if (this.expanded === id) this.placeDetail();
    });
  }

  // ---- events -------------------------------------------------------------------------------------------------
  private onBodyClick(e: MouseEvent): void {
    const t = e.target as HTMLElement;
    const action = t.closest<HTMLElement>("[data-action]");
    if (action) {
      e.stopPropagation();
      const a = action.dataset.action;
      if (a === "prompt" && action.dataset.prompt) this.openPrompt(action.dataset.prompt);
      else if (a === "prompt-more" && this.promptPage) this.openPrompt(this.promptPage.prompt_id, this.promptPage.offset + this.promptPage.steps.length);
      else if (a === "back") {
        this.mode = "step";
        this.renderBody();
        if (!this.page || this.page.step !== this.step) this.requestPage();
      } else if (a === "goto" && action.dataset.step) this.pick(Number(action.dataset.step));
      else if (a === "more-groups" && this.page) this.requestPage(this.page.groups.length);
      else if (a === "full" && action.dataset.text !== undefined) this.showFull(action);
      return;
    }
    const th = t.closest<HTMLElement>("th[data-sort]");
    if (th) {
      const column = th.dataset.sort!;
      const descending = this.sort.column === column ? !this.sort.descending : column !== "index";
      this.setSort(column, descending);
      return;
    }
    if (t.closest(".rldk-sample-detail, .rldk-prompt-row-detail")) return;
    const tr = t.closest<HTMLElement>("[data-row]");
    if (!tr) return;
    const selection = window.getSelection();
    if (selection && !selection.isCollapsed && tr.contains(selection.anchorNode)) return; // selecting text, not a click
    const row = this.rowById(tr.dataset.row!);
    if (row) this.expand(row);
  }

  private onSearchClick(e: MouseEvent): void {
    const t = e.target as HTMLElement;
    const item = t.closest<HTMLElement>("[data-match]");
    if (!item || !this.search) return;
    const m = this.search.matches.find((x) => x.id === item.dataset.match);
    if (!m) return;
    this.pick(m.step, false, m.id);
  }

  private rowById(id: string): Row | null {
    const pools: Row[][] = [];
    if (this.mode === "prompt" && this.promptPage) for (const s of this.promptPage.steps) pools.push(s.rows);
    if (this.page) for (const g of this.page.groups) pools.push(g.rows);
    for (const rows of pools) for (const r of rows) if (r.id === id) return r;
    return null;
  }

  private showFull(button: HTMLElement): void {
    const block = button.closest(".rldk-detail-field")?.querySelector<HTMLElement>(".rldk-text");
    const full = (button as HTMLElement & { __text?: string }).__text;
    if (!block || full === undefined) return;
    block.replaceWith(textBlock(full, "rldk-detail-text"));
    button.remove();
  }

  // ---- drawing ------------------------------------------------------------------------------------------------
  private renderRunPicker(runs: string[]): void {
    this.runBox.hidden = runs.length < 2;
    const same = this.runSelect.options.length === runs.length && runs.every((r, i) => this.runSelect.options[i].value === r);
    if (!same) {
      this.runSelect.replaceChildren(...runs.map((r) => el("option", { value: r, textContent: plainText(r, 80) })));
    }
    if (this.runId) this.runSelect.value = this.runId;
    this.runSelect.style.borderLeft = this.runId ? `4px solid ${this.colorOf(this.runId)}` : "";
  }

  private renderControls(): void {
    const s = this.summary;
    const columns = s?.sort_columns.length ? s.sort_columns : ["index", "reward", "advantage", "completion_length"];
    const names = new Set(s?.reward_names ?? []);
    const label = (c: string) => SORT_LABELS[c] ?? (names.has(c) ? `reward: ${plainText(c, 60)}` : plainText(c, 60));
    if (this.sortSelect.options.length !== columns.length || columns.some((c, i) => this.sortSelect.options[i].value !== c)) {
      this.sortSelect.replaceChildren(...columns.map((c) => el("option", { value: c, textContent: label(c) })));
    }
    this.sortSelect.value = this.sort.column;
    this.dirBtn.textContent = this.sort.descending ? "↓ high first" : "↑ low first";

    const flags = s?.flags.length ? s.flags : ["truncated", "empty", "cut", "identical"];
    this.flagChips.replaceChildren(
      ...flags.map((f) => {
        const [text, why] = FLAG_LABELS[f] ?? [f, f];
        const state = this.flags[f];
        const b = el("button", {
          type: "button",
          className: "rldk-chip rldk-flag-chip" + (state === undefined ? "" : " rldk-chip-on"),
          textContent: state === undefined ? text : state ? `only ${text}` : `no ${text}`,
          title: `${why}. Click: only these → none of these → all`,
        });
        b.dataset.flag = f;
        b.setAttribute("aria-pressed", String(state !== undefined));
        return b;
      }),
    );
    const cols = ["reward", ...(s?.reward_names ?? [])];
    if (this.rangeColumn.options.length !== cols.length || cols.some((c, i) => this.rangeColumn.options[i].value !== c)) {
      this.rangeColumn.replaceChildren(...cols.map((c) => el("option", { value: c, textContent: c === "reward" ? "total reward" : plainText(c, 60) })));
    }
    this.rangeColumn.value = this.rangeCol;
  }

  private renderPicker(): void {
    const n = this.steps.length;
    const i = this.step === null ? -1 : this.steps.indexOf(this.step);
    this.slider.max = String(Math.max(0, n - 1));
    this.slider.disabled = n < 2;
    if (i >= 0) this.slider.value = String(i);
    if (document.activeElement !== this.stepInput || this.step === null) this.stepInput.value = this.step === null ? "" : String(this.step);
    this.prevBtn.disabled = i <= 0;
    this.nextBtn.disabled = i < 0 || i >= n - 1;
    const s = this.summary;
    const total = this.local ? n : (s?.steps ?? n);
    const range = n ? `${formatInt(this.steps[0])}–${formatInt(this.steps[n - 1])}` : "";
    this.stepInfo.textContent = n ? `${formatInt(total)} step${total === 1 ? "" : "s"} with samples (${range})` : "";
  }

  private renderNote(): void {
    const parts: string[] = [];
    if (this.local && this.runId) {
      const saved = this.source.recentSteps(this.runId).length;
      const total = this.summary?.steps;
      parts.push(
        (this.source.noKernel || this.requests === null ? "No kernel: showing" : "No reply from the kernel: showing") +
          ` the samples saved with the page — only the newest ${saved === 1 ? "step is" : `${formatInt(saved)} steps are`} saved` +
          (total && total > saved ? ` (of ${formatInt(total)})` : "") +
          ", texts shortened. Run the notebook to see every step.",
      );
    }
    if (!this.local && this.pending.size) {
      const oldest = Math.min(...this.pending.values());
      if (performance.now() - oldest > WAIT_NOTE_MS) {
        parts.push("Waiting for the kernel… (a kernel busy in a cell may answer only when the cell ends)");
      }
    }
    this.noteEl.hidden = parts.length === 0;
    this.noteEl.textContent = parts.join(" ");
    this.noteEl.classList.toggle("rldk-samples-waiting", parts.length > 0 && !this.local);
  }

  private renderSearch(): void {
    const s = this.search;
    this.searchEl.hidden = s === null;
    if (!s) {
      this.searchEl.replaceChildren();
      return;
    }
    const head = el("div", { className: "rldk-search-head" });
    const count = `${formatInt(s.matches.length)} match${s.matches.length === 1 ? "" : "es"}`;
    const progress = s.done
      ? s.searched_steps < s.total_steps
        ? `the first ${count} (searched ${formatInt(s.searched_steps)} of ${formatInt(s.total_steps)} steps)`
        : `${count} in ${formatInt(s.total_steps)} steps`
      : `${count} so far — searched ${formatInt(s.searched_steps)} of ${formatInt(s.total_steps)} steps…`;
    head.append(el("span", { className: "rldk-search-progress", textContent: progress }));
    const close = el("button", { type: "button", className: "rldk-linkish", textContent: "clear ×" });
    close.addEventListener("click", () => {
      this.searchInput.value = "";
      this.runSearch();
    });
    head.append(close);
    this.searchEl.dataset.done = String(s.done);
    const list = el("div", { className: "rldk-search-list" });
    let lastStep: number | null = null;
    for (const m of s.matches) {
      if (m.step !== lastStep) {
        lastStep = m.step;
        list.append(el("div", { className: "rldk-search-step", textContent: `step ${formatInt(m.step)}` }));
      }
      const item = el("div", { className: "rldk-search-match", title: "show this sample at its step" });
      item.dataset.match = m.id;
      const meta = el("div", { className: "rldk-search-meta" }, [
        el("span", { textContent: `#${m.index}` }),
        el("span", { textContent: `reward ${fmt(m.reward)}` }),
        el("span", { textContent: `adv ${fmt(m.advantage)}` }),
        ...this.flagBadges(m.truncated, m.empty, m.cut),
      ]);
      item.append(meta);
      if (m.in.includes("prompt")) item.append(this.snippet("prompt", m.prompt));
      item.append(this.snippet("completion", m.completion));
      list.append(item);
    }
    if (!s.matches.length && s.done) list.append(el("div", { className: "rldk-muted", textContent: "No sample matches." }));
    if (s.done && s.cursor != null && !this.silent) {
      const next = el("button", { type: "button", className: "rldk-btn rldk-btn-small rldk-search-next", textContent: `next ${SEARCH_LIMIT} matches` });
      next.addEventListener("click", () => this.searchNext());
      list.append(next);
    }
    this.searchEl.replaceChildren(head, list);
  }

  private snippet(label: string, s: Snippet): HTMLElement {
    const text = typeof s?.text === "string" ? s.text : "";
    const match = Array.isArray(s?.match) && s.match.length === 2 ? ([Number(s.match[0]), Number(s.match[1])] as [number, number]) : null;
    return el("div", { className: "rldk-search-snippet" }, [
      el("span", { className: "rldk-field-label", textContent: label }),
      markedBlock(text, match, (s?.start ?? 0) > 0, "rldk-snippet-text"),
    ]);
  }

  private flagBadges(truncated: boolean | null, empty: boolean, cut: boolean, identical = false): HTMLElement[] {
    const out: HTMLElement[] = [];
    const badge = (flag: string) => {
      const [text, why] = FLAG_LABELS[flag];
      out.push(el("span", { className: `rldk-sflag rldk-sflag-${flag}`, textContent: text, title: why }));
    };
    if (truncated) badge("truncated");
    if (empty) badge("empty");
    if (cut) badge("cut");
    if (identical) badge("identical");
    return out;
  }

  private renderBody(): void {
    this.renderNote();
    if (this.mode === "prompt") {
      this.renderPrompt();
      return;
    }
    const page = this.page;
    const names = page?.reward_names ?? this.summary?.reward_names ?? [];
    if (!this.runId || !this.source.has(this.runId)) {
      this.body.replaceChildren(el("div", { className: "rldk-empty", textContent: "No samples yet." }));
      return;
    }
    if (this.step === null && this.stepsRun === this.runId && !this.steps.length) {
      this.body.replaceChildren(el("div", { className: "rldk-empty", textContent: "No steps with samples yet." }));
      return;
    }
    if (!page || page.step !== this.step) {
      const text = this.local ? `Step ${formatInt(this.step ?? NaN)} is not among the saved steps.` : "Loading…";
      if (!this.body.querySelector("table") || this.local) this.body.replaceChildren(el("div", { className: "rldk-empty", textContent: text }));
      this.body.dataset.state = "loading";
      return;
    }
    const frag = document.createDocumentFragment();
    const info = el("div", { className: "rldk-samples-info" });
    const groupsShown = page.groups.length;
    const rowsMatched = page.matched_rows ?? page.total_rows;
    const filtered = rowsMatched !== page.total_rows;
    info.append(
      el("span", {
        textContent:
          `step ${formatInt(page.step ?? NaN)}: ${formatInt(page.total_rows)} samples in ${formatInt(page.total_groups ?? groupsShown)} prompt groups` +
          (filtered ? ` — ${formatInt(rowsMatched)} match the filters` : ""),
      }),
    );
    if (this.askedStep !== null && this.askedStep !== page.step) {
      info.append(el("span", { className: "rldk-muted", textContent: ` · step ${formatInt(this.askedStep)} logged no samples of its own: the batch shown is the one logged at or before it` }));
    }
    frag.append(info);
    if (!page.groups.length) {
      frag.append(el("div", { className: "rldk-empty", textContent: filtered ? "No sample of this step matches the filters." : "This step has no samples." }));
      this.body.replaceChildren(frag);
      this.drawn();
      return;
    }
    const table = el("table", { className: "rldk-samples-table" });
    const cols = el("colgroup");
    const numeric = names.length + 3;
    cols.append(el("col", { className: "rldk-col-index" }), el("col", { className: "rldk-col-text" }));
    for (let i = 0; i < numeric; i++) cols.append(el("col", { className: "rldk-col-num" }));
    cols.append(el("col", { className: "rldk-col-flags" }));
    table.append(cols);
    // room for the completion whatever the number of reward functions: the table scrolls sideways past that
    table.style.minWidth = `${260 + 34 + numeric * 72 + 86}px`;
    const head = el("tr");
    const th = (label: string, column: string | null, title = label) => {
      const cell = el("th", { title });
      // long reward-function names wrap at their separators (reward_ / len), never mid-word
      const labelEl = el("span", { className: "rldk-th-label" });
      for (const part of label.match(/[^_/.:-]*[_/.:-]*/g) ?? [label]) if (part) labelEl.append(document.createTextNode(part), el("wbr"));
      cell.append(labelEl);
      if (column !== null) {
        cell.dataset.sort = column;
        cell.classList.add("rldk-sortable");
        if (this.sort.column === column && (column !== "index" || this.sort.descending)) {
          cell.classList.add("rldk-sorted");
          cell.setAttribute("aria-sort", this.sort.descending ? "descending" : "ascending");
          cell.append(el("span", { className: "rldk-sort-mark", textContent: this.sort.descending ? " ▼" : " ▲" }));
        }
      }
      return cell;
    };
    head.append(th("#", "index", "the sample's place in the trainer's batch"), th("completion", "completion_chars", "the completion (click a row for the full prompt and completion)"));
    for (const n of names) head.append(th(plainText(n, 40), n, `reward function ${plainText(n, 200)} (raw score)`));
    head.append(th("reward", "reward", "total reward (weighted sum)"), th("adv", "advantage", "advantage"), th("len", "completion_length", "completion length in tokens"), th("flags", null));
    table.append(el("thead", {}, [head]));
    const span = names.length + 6;
    for (const g of page.groups) {
      const body = el("tbody", { className: "rldk-group" + (g.identical_rewards ? " rldk-group-identical" : "") });
      body.dataset.prompt = g.prompt_id;
      const headCell = el("td", { colSpan: span });
      headCell.append(this.groupHead(g, true));
      body.append(el("tr", { className: "rldk-group-head" }, [headCell]));
      for (const r of g.rows) body.append(this.rowEl(r, names));
      table.append(body);
    }
    frag.append(el("div", { className: "rldk-samples-scroll" }, [table]));
    if (page.more) {
      const more = el("button", { type: "button", className: "rldk-btn rldk-btn-small", textContent: `more prompt groups (${formatInt((page.matched_groups ?? 0) - groupsShown)} left)` });
      more.dataset.action = "more-groups";
      frag.append(more);
    }
    this.body.replaceChildren(frag);
    this.placeDetail();
    this.drawn();
  }

  /** The rows of a step page are in the DOM: stamp it (tests wait for data-step) and time the user's action. */
  private drawn(): void {
    this.body.dataset.state = "ready";
    this.body.dataset.step = String(this.page?.step ?? "");
    if (this.actionAt) {
      this.timings.push({ what: "step rows", ms: performance.now() - this.actionAt });
      if (this.timings.length > 200) this.timings.splice(0, this.timings.length - 200);
      this.actionAt = 0;
    }
  }

  private groupHead(g: GroupStats & { prompt_id: string; prompt: string; prompt_more: boolean; prompt_chars?: number; shown?: number }, link: boolean): HTMLElement {
    const stats = el("div", { className: "rldk-group-stats" });
    const size = g.shown !== undefined && g.shown !== g.size ? `${formatInt(g.shown)} of ${formatInt(g.size)} shown` : `${formatInt(g.size)} completion${g.size === 1 ? "" : "s"}`;
    stats.append(
      el("span", { textContent: size }),
      el("span", { textContent: `reward mean ${fmt(g.reward_mean)}` }),
      el("span", { textContent: `spread ${fmt(g.reward_std)}`, title: "sample standard deviation of the group's rewards (as TRL computes it)" }),
      el("span", { className: "rldk-muted", textContent: `min ${fmt(g.reward_min)} · max ${fmt(g.reward_max)}` }),
    );
    if (g.identical_rewards) stats.append(...this.flagBadges(false, false, false, true));
    if (link) {
      const b = el("button", { type: "button", className: "rldk-linkish rldk-prompt-link", textContent: "this prompt across steps ›", title: "how the answers to this prompt changed over training" });
      b.dataset.action = "prompt";
      b.dataset.prompt = g.prompt_id;
      stats.append(b);
    }
    const more = g.prompt_more ? `… (${formatInt(g.prompt_chars ?? 0)} characters: click a row for all)` : undefined;
    return el("div", { className: "rldk-group-head-box" }, [
      el("div", { className: "rldk-field" }, [el("span", { className: "rldk-field-label", textContent: "prompt" }), textBlock(g.prompt, "rldk-prompt-text", more)]),
      stats,
    ]);
  }

  private rowEl(r: Row, names: string[]): HTMLElement {
    const tr = el("tr", { className: "rldk-sample-row" + (this.expanded === r.id ? " rldk-row-open" : "") });
    tr.dataset.row = r.id;
    tr.tabIndex = 0;
    tr.title = "click (or Enter) for the full prompt and completion";
    const td = (text: string, cls = "rldk-num", label = "") => {
      const cell = el("td", { className: cls, textContent: text });
      if (label) cell.dataset.label = label; // the narrow layout's label (style.css: shown as text by CSS)
      return cell;
    };
    const more = r.completion_more ? `… (${formatInt(r.completion_chars ?? 0)} characters)` : undefined;
    const textCell = el("td", { className: "rldk-cell-text" }, [
      r.empty && !r.completion ? el("span", { className: "rldk-muted", textContent: "(empty)" }) : textBlock(r.completion, "rldk-completion-text", more),
    ]);
    tr.append(td(String(r.index), "rldk-num rldk-index"), textCell);
    for (const n of names) tr.append(td(fmt(r.rewards?.[n]), "rldk-num", plainText(n, 40)));
    tr.append(td(fmt(r.reward), "rldk-num rldk-reward", "reward"));
    const adv = num(r.advantage);
    tr.append(td(fmt(r.advantage), "rldk-num" + (adv !== null && adv > 0 ? " rldk-pos" : adv !== null && adv < 0 ? " rldk-neg" : ""), "adv"));
    const len = num(r.completion_length);
    tr.append(td(len === null ? "?" : formatInt(len), "rldk-num", "len"));
    if (len === null) (tr.lastElementChild as HTMLElement).title = "length unknown (TRL's parquet rows carry no token counts)";
    tr.append(el("td", { className: "rldk-flags" }, this.flagBadges(r.truncated, r.empty, r.cut)));
    return tr;
  }

  /** A sample's full prompt and completion, rewards and extras (`full`: from samples.sample, else the preview). */
  private detail(r: Row, full: boolean): HTMLElement {
    const box = el("div", { className: "rldk-detail" });
    const field = (label: string, text: string | undefined, cut: boolean, previewMore: boolean | undefined) => {
      const f = el("div", { className: "rldk-detail-field" });
      f.append(el("span", { className: "rldk-field-label", textContent: label }));
      const t = text ?? "";
      if (t.length > DETAIL_CHARS) {
        f.append(textBlock(t.slice(0, DETAIL_CHARS), "rldk-detail-text", "…"));
        const b = el("button", { type: "button", className: "rldk-btn rldk-btn-small", textContent: `show all ${formatInt(t.length)} characters` });
        b.dataset.action = "full";
        b.dataset.text = "";
        (b as HTMLElement & { __text?: string }).__text = t;
        f.append(b);
      } else {
        f.append(textBlock(t, "rldk-detail-text"));
      }
      const notes: string[] = [];
      if (!full && previewMore) notes.push(this.local ? "shortened: the saved page keeps the first characters only" : "loading the whole text…");
      if (cut) notes.push("capped on disk: the callback stored only the first SampleSettings.text_cap_bytes of this text");
      if (notes.length) f.append(el("div", { className: "rldk-muted rldk-detail-note", textContent: notes.join("; ") }));
      return f;
    };
    const cutFields = new Set(r.cut_fields ?? (r.cut ? ["completion"] : []));
    if (r.prompt !== undefined || !full) {
      // a row of a page carries no prompt: its group's (or the prompt page's) preview until the whole one comes
      const group = this.page?.groups.find((g) => g.prompt_id === r.prompt_id);
      const other = this.promptPage?.prompt_id === r.prompt_id ? this.promptPage : undefined;
      const prompt = r.prompt ?? group?.prompt ?? other?.prompt ?? "";
      box.append(field("prompt", prompt, cutFields.has("prompt"), r.prompt_more ?? group?.prompt_more ?? other?.prompt_more));
    }
    box.append(field("completion", r.completion, cutFields.has("completion"), r.completion_more));
    const facts: string[] = [`step ${formatInt(r.step)}`, `#${r.index}`, `reward ${fmt(r.reward)}`, `advantage ${fmt(r.advantage)}`];
    for (const [k, v] of Object.entries(r.rewards ?? {})) facts.push(`${plainText(k, 60)} ${fmt(v)}`);
    const len = num(r.completion_length);
    facts.push(`length ${len === null ? "unknown" : `${formatInt(len)} tokens`}`);
    if (r.truncated === null) facts.push("truncation unknown");
    if (r.source) facts.push(`source ${plainText(r.source, 20)}`);
    box.append(el("div", { className: "rldk-detail-facts", textContent: facts.join(" · ") }));
    const extra = Object.entries(r.extra ?? {});
    if (extra.length) {
      const x = el("div", { className: "rldk-detail-extra" });
      for (const [k, v] of extra) {
        const value = typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
        x.append(el("div", { className: "rldk-field" }, [el("span", { className: "rldk-field-label", textContent: plainText(k, 60) }), textBlock(value.slice(0, 4000), "rldk-extra-text")]));
      }
      box.append(x);
    }
    if (r.missing) box.append(el("div", { className: "rldk-samples-error", textContent: `The texts could not be read: ${plainText(r.missing, 300)}` }));
    return box;
  }

  private renderPrompt(): void {
    const p = this.promptPage;
    const frag = document.createDocumentFragment();
    const back = el("button", { type: "button", className: "rldk-btn rldk-btn-small", textContent: `‹ back to step ${this.step === null ? "" : formatInt(this.step)}` });
    back.dataset.action = "back";
    frag.append(el("div", { className: "rldk-samples-info" }, [back, el("span", { className: "rldk-prompt-title", textContent: " One prompt across steps: how the answers to it changed over training" })]));
    if (!p) {
      frag.append(el("div", { className: "rldk-empty", textContent: this.local ? "Not in the saved steps." : "Loading…" }));
      this.body.replaceChildren(frag);
      this.body.dataset.state = "loading";
      return;
    }
    frag.append(
      el("div", { className: "rldk-field rldk-prompt-head" }, [
        el("span", { className: "rldk-field-label", textContent: "prompt" }),
        textBlock(p.prompt, "rldk-prompt-text", p.prompt_more ? "…" : undefined),
        el("span", { className: "rldk-muted", textContent: `asked at ${formatInt(p.total_steps)} step${p.total_steps === 1 ? "" : "s"}${this.local ? " of the saved ones" : ""}` }),
      ]),
    );
    const list = el("div", { className: "rldk-prompt-steps" });
    for (const s of p.steps) {
      const box = el("div", { className: "rldk-prompt-step" + (s.step === this.step ? " rldk-prompt-step-current" : "") });
      box.dataset.step = String(s.step);
      const go = el("button", { type: "button", className: "rldk-linkish rldk-prompt-goto", textContent: `step ${formatInt(s.step)}`, title: "show this step" });
      go.dataset.action = "goto";
      go.dataset.step = String(s.step);
      const stats = el("div", { className: "rldk-group-stats" }, [
        go,
        el("span", { textContent: `${formatInt(s.size)} completion${s.size === 1 ? "" : "s"}` }),
        el("span", { textContent: `reward mean ${fmt(s.reward_mean)}` }),
        el("span", { textContent: `spread ${fmt(s.reward_std)}` }),
        el("span", { className: "rldk-muted", textContent: `min ${fmt(s.reward_min)} · max ${fmt(s.reward_max)}` }),
        ...this.flagBadges(false, false, false, s.identical_rewards),
      ]);
      box.append(stats);
      for (const r of s.rows) {
        const line = el("div", { className: "rldk-prompt-row" + (this.expanded === r.id ? " rldk-row-open" : ""), title: "click for the full completion" });
        line.dataset.row = r.id;
        line.append(
          el("div", { className: "rldk-prompt-row-meta" }, [
            el("span", { className: "rldk-num", textContent: `reward ${fmt(r.reward)}` }),
            el("span", { className: "rldk-num", textContent: `adv ${fmt(r.advantage)}` }),
            ...this.flagBadges(r.truncated, r.empty, r.cut),
          ]),
          textBlock(r.completion, "rldk-completion-text", r.completion_more ? `… (${formatInt(r.completion_chars ?? 0)} characters)` : undefined),
        );
        box.append(line);
      }
      list.append(box);
    }
    frag.append(list);
    if (p.more) {
      const more = el("button", { type: "button", className: "rldk-btn rldk-btn-small", textContent: "later steps ›" });
      more.dataset.action = "prompt-more";
      frag.append(more);
    }
    this.body.replaceChildren(frag);
    this.placeDetail();
    this.body.dataset.state = "prompt";
  }
}
