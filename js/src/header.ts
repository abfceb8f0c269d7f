// Header tiles: runs, step, latest reward / KL / loss, steps/s, ETA, last update.
// Built once per shape (runs × tiles) and then patched in place, so a 10 Hz stream costs a few text updates.
import type { Store } from "./store";
import { el, formatAgo, formatDuration, formatInt, formatValue, isBad } from "./dom";

const MAX_RUNS_SHOWN = 6;
const RATE_WINDOW = 20;

interface RunStats {
  runId: string;
  color: string;
  step: number;
  maxSteps: number | null;
  reward: number | null;
  kl: number | null;
  loss: number | null;
  rate: number;
  eta: string;
  lastUnix: number;
}

function lastY(store: Store, runId: string, name: string): number | null {
  const s = store.series(runId, name);
  return s ? s.lastY : null;
}

export function runStats(store: Store, runId: string, color: string): RunStats {
  const run = store.runs.get(runId);
  let step = NaN;
  if (run) {
    for (const s of run.values()) {
      const x = s.lastX;
      if (x - x === 0 && !(x <= step)) step = x;
    }
  }
  let rate = NaN;
  let lastUnix = NaN;
  const ts = store.series(runId, "timestamp");
  if (ts && ts.length > 0) {
    const x = ts.x();
    const y = ts.y();
    const n = x.length;
    lastUnix = y[n - 1];
    const j = Math.max(0, n - 1 - RATE_WINDOW);
    const dt = y[n - 1] - y[j];
    const ds = x[n - 1] - x[j];
    if (n >= 2 && dt > 0 && ds >= 0) rate = ds / dt;
  }
  const recv = store.receivedAt.get(runId);
  if (!Number.isFinite(lastUnix) && recv !== undefined) lastUnix = recv / 1000;
  const maxSteps = store.info[runId]?.max_steps ?? null;
  let eta = "–";
  if (maxSteps !== null && Number.isFinite(step)) {
    if (step >= maxSteps) eta = "done";
    else if (rate > 0) eta = formatDuration((maxSteps - step) / rate);
  }
  return {
    runId,
    color,
    step,
    maxSteps,
    reward: lastY(store, runId, "reward_mean"),
    kl: lastY(store, runId, "kl_mean"),
    loss: lastY(store, runId, "loss"),
    rate,
    eta,
    lastUnix,
  };
}

/** One value line of a tile: text, a "bad" flag, optionally a muted suffix and a progress fraction. */
interface Cell {
  text: string;
  bad?: boolean;
  suffix?: string;
  progress?: number;
}

interface TileSpec {
  label: string;
  cells: Cell[];
}

interface CellNodes {
  text: Text;
  row: HTMLElement;
  suffix?: Text;
  fill?: HTMLElement;
}

export class Header {
  readonly el: HTMLElement;
  private shape = "";
  private nodes: CellNodes[][] = [];
  private agoCells: Array<{ node: Text; row: HTMLElement; unix: number; done: boolean }> = [];

  constructor(
    private store: Store,
    private colorOf: (runId: string) => string,
  ) {
    this.el = el("div", { className: "rldk-header" });
  }

  update(): void {
    const runs = this.store.orderedRuns();
    if (!runs.length) {
      const none = this.store.runIds.length > 0; // folder mode, the user cleared the selection
      if (this.shape !== `empty${none}`) {
        this.shape = `empty${none}`;
        const text = none ? "No runs selected: pick runs in the Runs tab." : "Waiting for the first metrics…";
        this.el.replaceChildren(el("div", { className: "rldk-muted rldk-waiting", textContent: text }));
        this.agoCells = [];
      }
      return;
    }
    const shown = runs.slice(0, MAX_RUNS_SHOWN);
    const all = shown.map((r) => runStats(this.store, r, this.colorOf(r)));
    const tiles: TileSpec[] = [
      {
        label: "step",
        cells: all.map((st) => ({
          text: formatInt(st.step),
          suffix: st.maxSteps !== null ? ` / ${formatInt(st.maxSteps)}` : undefined,
          progress: st.maxSteps !== null ? (Number.isFinite(st.step) ? st.step : 0) / st.maxSteps : undefined,
        })),
      },
    ];
    const metric = (label: string, key: "reward" | "kl" | "loss") => {
      if (all.every((st) => st[key] === null)) return;
      tiles.push({
        label,
        cells: all.map((st) => {
          const v = st[key];
          return { text: formatValue(v), bad: v !== null && isBad(v) };
        }),
      });
    };
    metric("reward", "reward");
    metric("KL", "kl");
    metric("loss", "loss");
    tiles.push({ label: "steps/s", cells: all.map((st) => ({ text: Number.isFinite(st.rate) ? formatValue(st.rate) : "–" })) });
    if (all.some((st) => st.maxSteps !== null)) tiles.push({ label: "ETA", cells: all.map((st) => ({ text: st.eta })) });

    const shape = JSON.stringify([
      runs.length,
      this.store.runIds.length,
      all.map((s) => [s.runId, s.color, this.store.info[s.runId]?.trainer ?? "", this.store.runName(s.runId)]),
      tiles.map((t) => [t.label, t.cells.map((c) => [c.suffix !== undefined, c.progress !== undefined])]),
    ]);
    if (shape !== this.shape) {
      this.shape = shape;
      this.build(runs.length, all, tiles);
    }
    // patch values in place
    tiles.forEach((t, ti) =>
      t.cells.forEach((c, ci) => {
        const n = this.nodes[ti][ci];
        if (n.text.data !== c.text) n.text.data = c.text;
        n.row.classList.toggle("rldk-bad", !!c.bad);
        if (n.suffix && c.suffix !== undefined && n.suffix.data !== c.suffix) n.suffix.data = c.suffix;
        if (n.fill && c.progress !== undefined) n.fill.style.width = `${Math.max(0, Math.min(100, 100 * c.progress)).toFixed(1)}%`;
      }),
    );
    all.forEach((st, i) => {
      const a = this.agoCells[i];
      a.unix = st.lastUnix;
      a.done = st.eta === "done";
    });
    this.tick();
  }

  private build(nRuns: number, all: RunStats[], tiles: TileSpec[]): void {
    const multi = all.length > 1;
    const dot = (color: string) => {
      const d = el("span", { className: "rldk-dot" });
      d.style.background = color;
      return d;
    };
    const runsTile = el("div", { className: "rldk-tile rldk-tile-runs" }, [
      el("div", { className: "rldk-tile-label", textContent: multi ? `runs (${nRuns})` : "run" }),
      el(
        "div",
        { className: "rldk-tile-vals" },
        all.map((st) => {
          const trainer = this.store.info[st.runId]?.trainer;
          const name = this.store.runName(st.runId);
          const title = (name === st.runId ? name : `${name}\n${st.runId}`) + (trainer ? ` (${trainer})` : "");
          return el("div", { className: "rldk-tile-val rldk-run-id", title: title.slice(0, 1000) }, [
            dot(st.color),
            el("span", { className: "rldk-run-name", textContent: name }),
          ]);
        }),
      ),
    ]);
    const total = this.store.runIds.length;
    const hidden = Math.max(nRuns - all.length, 0);
    const more = [hidden ? `+${hidden} more` : "", total > nRuns ? `${nRuns} of ${total} runs shown` : ""].filter(Boolean);
    if (more.length) runsTile.append(el("div", { className: "rldk-muted", textContent: more.join(" · ") }));

    this.nodes = [];
    const tileEls = tiles.map((t) => {
      const cells: CellNodes[] = [];
      const vals = el("div", { className: "rldk-tile-vals" });
      t.cells.forEach((c, i) => {
        const row = el("div", { className: "rldk-tile-val" });
        if (multi) row.append(dot(all[i].color));
        const text = document.createTextNode(c.text);
        row.append(text);
        const n: CellNodes = { text, row };
        if (c.suffix !== undefined) {
          n.suffix = document.createTextNode(c.suffix);
          row.append(el("span", { className: "rldk-muted rldk-suffix" }, [n.suffix]));
        }
        if (c.progress !== undefined) {
          n.fill = el("span", { className: "rldk-progress-fill" });
          n.fill.style.background = all[i].color;
          row.append(el("span", { className: "rldk-progress" }, [n.fill]));
        }
        cells.push(n);
        vals.append(row);
      });
      this.nodes.push(cells);
      return el("div", { className: "rldk-tile" }, [el("div", { className: "rldk-tile-label", textContent: t.label }), vals]);
    });

    this.agoCells = [];
    const agoVals = el("div", { className: "rldk-tile-vals" });
    for (const st of all) {
      const row = el("div", { className: "rldk-tile-val rldk-ago" });
      if (multi) row.append(dot(st.color));
      const node = document.createTextNode("");
      row.append(node);
      agoVals.append(row);
      this.agoCells.push({ node, row, unix: st.lastUnix, done: false });
    }
    const agoTile = el("div", { className: "rldk-tile" }, [el("div", { className: "rldk-tile-label", textContent: "updated" }), agoVals]);
    this.el.replaceChildren(runsTile, ...tileEls, agoTile);
  }

  /** Refresh the "12 s ago" texts (called every second). */
  tick(): void {
    const now = Date.now() / 1000;
    for (const a of this.agoCells) {
      const age = now - a.unix;
      const t = formatAgo(Math.max(0, age));
      if (a.node.data !== t) a.node.data = t;
      a.row.classList.toggle("rldk-stale", !a.done && age > 120);
    }
  }
}
