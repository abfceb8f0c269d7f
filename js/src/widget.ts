// anywidget entry. `initialize` owns the model's Store (snapshot traits + numbered deltas, docs/protocol.md);
// every `render` of the same model attaches a View to that one Store, so all views stay identical.
import type { AnyModel } from "@anywidget/types";
import { Requests } from "./requests";
import { SampleSource } from "./samples";
import { Store } from "./store";
import { View } from "./view";

interface Traits {
  metrics: unknown;
  alerts: unknown;
  run_ids: unknown;
  status: unknown;
  info: unknown;
  default_charts: unknown;
  selected: unknown;
  run_colors: unknown;
  runs_table: unknown;
  [key: string]: unknown;
}

type Model = AnyModel<Traits>;

const TRAITS = ["metrics", "alerts", "run_ids", "status", "info", "default_charts", "selected", "run_colors", "runs_table"] as const;

/**
 * anywidget hands `initialize` and each `render` a different proxy object for the same underlying model, so
 * the proxies cannot key the registry. The trait values can: they are the same objects for every proxy of one
 * model until the kernel sends new ones (and `initialize` re-registers on every change, before any view).
 */
const registry = new WeakMap<object, Sync>();

function register(model: Model, sync: Sync): void {
  for (const k of TRAITS) {
    const v = model.get(k);
    if (typeof v === "object" && v !== null) registry.set(v, sync);
  }
}

function lookup(model: Model): Sync | undefined {
  for (const k of TRAITS) {
    const v = model.get(k);
    if (typeof v === "object" && v !== null) {
      const s = registry.get(v);
      if (s) return s;
    }
  }
  return undefined;
}

export interface DeltaMessage {
  type: "delta";
  seq: number;
  metrics?: unknown;
  alerts?: unknown;
  replace_runs?: unknown;
  drop_runs?: unknown;
}

function snapshotSeq(metrics: unknown): number {
  if (typeof metrics !== "object" || metrics === null) return 0;
  const seq = (metrics as { seq?: unknown }).seq;
  return typeof seq === "number" && Number.isFinite(seq) ? seq : 0;
}

/** Binds one Store to one model: snapshot traits, meta traits, delta messages, gap → request_snapshot. */
export class Sync {
  readonly store = new Store();
  readonly requests: Requests;
  /** the `samples` summary and `samples_recent` pages (the Samples tab) */
  readonly samples = new SampleSource();
  /** a request_snapshot is outstanding (sent at most once until the next snapshot) */
  awaitingSnapshot = false;
  snapshotRequests = 0;
  private lastAlerts: unknown = undefined;
  private handlers: Array<[string, (...args: never[]) => void]> = [];

  constructor(private model: Model) {
    this.requests = new Requests((message) => model.send(message));
    const on = (name: string, fn: (...args: never[]) => void) => {
      model.on(name, fn as (...args: unknown[]) => void);
      this.handlers.push([name, fn]);
    };
    on("msg:custom", (msg: unknown) => this.onCustom(msg));
    on("change:metrics", () => this.onSnapshot());
    on("change:alerts", () => this.onAlerts());
    on("change:run_ids", () => this.store.setMeta({ runIds: model.get("run_ids") }));
    on("change:status", () => this.store.setMeta({ status: model.get("status") }));
    on("change:info", () => this.store.setMeta({ info: model.get("info") }));
    on("change:default_charts", () => this.store.setMeta({ defaultCharts: model.get("default_charts") }));
    on("change:selected", () => this.store.setMeta({ selected: model.get("selected") }));
    on("change:run_colors", () => this.store.setMeta({ runColors: model.get("run_colors") }));
    on("change:runs_table", () => this.store.setRunsTable(model.get("runs_table")));
    on("change:samples", () => this.samples.setSummaries(model.get("samples")));
    on("change:samples_recent", () => this.samples.setRecent(model.get("samples_recent")));
    on("change", () => register(model, this));

    this.store.setMeta({
      runIds: model.get("run_ids"),
      status: model.get("status"),
      info: model.get("info"),
      defaultCharts: model.get("default_charts"),
      selected: model.get("selected"),
      runColors: model.get("run_colors"),
    });
    this.store.setRunsTable(model.get("runs_table"));
    // save_html's read-only model: requests go nowhere, the saved pages are all there is
    this.samples.noKernel = (model as unknown as { rldkNoKernel?: unknown }).rldkNoKernel === true;
    this.samples.setSummaries(model.get("samples"));
    this.samples.setRecent(model.get("samples_recent"));
    this.onSnapshot();
    register(model, this);
  }

  /**
   * docs/protocol.md: a snapshot replaces the store when it is newer than what the view holds, when the view
   * asked for one after a gap, or when the view holds nothing yet. The kernel re-sends a bounded (decimated)
   * snapshot with an unchanged seq after every cell for saved notebooks; a view that is in sync keeps its
   * full-resolution data instead.
   */
  private onSnapshot(): void {
    const metrics = this.model.get("metrics");
    const seq = snapshotSeq(metrics);
    const empty = this.store.runs.size === 0 && this.store.alerts.length === 0;
    if (!(seq > this.store.lastSeq || this.awaitingSnapshot || empty)) return;
    this.awaitingSnapshot = false;
    this.lastAlerts = this.model.get("alerts");
    this.store.applySnapshot(metrics, this.lastAlerts);
  }

  private onAlerts(): void {
    const a = this.model.get("alerts");
    if (a === this.lastAlerts) return; // already applied with the metrics snapshot
    this.lastAlerts = a;
    this.store.setAlerts(a);
  }

  onCustom(msg: unknown): void {
    if (typeof msg !== "object" || msg === null) return;
    if (this.requests.onMessage(msg)) return;
    const m = msg as Partial<DeltaMessage>;
    if (m.type !== "delta" || typeof m.seq !== "number" || !Number.isFinite(m.seq)) return;
    const last = this.store.lastSeq;
    if (m.seq <= last) return; // already covered by the snapshot or an earlier delta
    if (m.seq === last + 1) {
      this.store.applyDelta(m.seq, m.metrics, m.alerts, m.replace_runs, m.drop_runs);
      return;
    }
    // gap: ask for a snapshot once; the kernel re-sends `metrics` + `alerts` and change:metrics resets us
    if (!this.awaitingSnapshot) {
      this.awaitingSnapshot = true;
      this.snapshotRequests++;
      this.model.send({ type: "request_snapshot" });
    }
  }

  /** Show these runs on the charts (every view of the model; the kernel sends their series). */
  select(runIds: string[]): void {
    this.model.set("selected", runIds);
    this.model.save_changes();
  }

  dispose(): void {
    this.requests.dispose();
    for (const [name, fn] of this.handlers) this.model.off(name, fn as (...args: unknown[]) => void);
    this.handlers = [];
  }
}

export default {
  initialize({ model }: { model: Model }) {
    const sync = new Sync(model);
    return () => sync.dispose();
  },

  render({ model, el }: { model: Model; el: HTMLElement }) {
    let owned: Sync | null = null;
    let sync = lookup(model);
    if (!sync) {
      // a host that did not call initialize (or a model whose traits are all primitives): own the data here
      owned = sync = new Sync(model);
    }
    const s = sync;
    const view = new View(sync.store, el, sync.requests, (runIds) => s.select(runIds), sync.samples);
    (el as HTMLElement & { __rldk?: unknown }).__rldk = { view, store: sync.store, sync: owned, requests: sync.requests };
    return () => {
      view.destroy();
      owned?.dispose();
      delete (el as HTMLElement & { __rldk?: unknown }).__rldk;
    };
  },
};
