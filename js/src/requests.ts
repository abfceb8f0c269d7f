// Pages on request (docs/protocol.md): a view asks the kernel for one page of data that is not in the synced state
// (a step's samples, a search, a run's series) and gets a reply with the same id. A newer request in the same slot
// supersedes the older one: the kernel answers the newest only, and this side resolves the older as stale.

export interface ReplyMessage {
  type: "reply";
  id: string;
  slot?: string;
  data?: unknown;
  error?: string;
  stale?: boolean;
  partial?: boolean;
}

export type Outcome<T> = { ok: true; data: T } | { ok: false; stale: true } | { ok: false; stale: false; error: string };

interface Pending {
  slot: string;
  resolve: (outcome: Outcome<unknown>) => void;
  onPartial?: (data: unknown) => void;
  sentAt: number;
}

type Send = (message: Record<string, unknown>) => void;

let nextView = 0;

export class Requests {
  private pending = new Map<string, Pending>();
  private newestInSlot = new Map<string, string>();
  private counter = 0;
  private readonly prefix = `v${++nextView}-${Math.random().toString(36).slice(2, 8)}`;
  /** listeners told when the number of outstanding requests changes (for a "waiting for the kernel" note) */
  private listeners = new Set<() => void>();

  constructor(private send: Send) {}

  /** Ask for `what`; `onPartial` gets progress pages (a search in progress) before the final one. */
  request<T>(what: string, params: Record<string, unknown>, slot: string, onPartial?: (data: T) => void): Promise<Outcome<T>> {
    const id = `${this.prefix}-${++this.counter}`;
    const older = this.newestInSlot.get(slot);
    this.newestInSlot.set(slot, id);
    return new Promise<Outcome<T>>((resolve) => {
      this.pending.set(id, {
        slot,
        resolve: resolve as (outcome: Outcome<unknown>) => void,
        onPartial: onPartial as ((data: unknown) => void) | undefined,
        sentAt: performance.now(),
      });
      if (older !== undefined) this.settle(older, { ok: false, stale: true });
      this.notify();
      try {
        this.send({ type: "request", id, slot, what, params });
      } catch (err) {
        this.settle(id, { ok: false, stale: false, error: String(err) });
      }
    });
  }

  /** A custom message from the kernel; true if it was a reply. */
  onMessage(msg: unknown): boolean {
    if (typeof msg !== "object" || msg === null || (msg as { type?: unknown }).type !== "reply") return false;
    const m = msg as ReplyMessage;
    const entry = typeof m.id === "string" ? this.pending.get(m.id) : undefined;
    if (!entry) return true; // another view's request, or one already settled as stale
    if (m.stale) this.settle(m.id, { ok: false, stale: true });
    else if (typeof m.error === "string") this.settle(m.id, { ok: false, stale: false, error: m.error });
    else if (m.partial) entry.onPartial?.(m.data);
    else this.settle(m.id, { ok: true, data: m.data });
    return true;
  }

  /** Outstanding requests and how long the oldest has waited (ms). */
  get waiting(): { count: number; oldestMs: number } {
    let oldest = Infinity;
    for (const p of this.pending.values()) oldest = Math.min(oldest, p.sentAt);
    return { count: this.pending.size, oldestMs: this.pending.size ? performance.now() - oldest : 0 };
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolve everything outstanding as stale (the view is going away). */
  dispose(): void {
    for (const id of [...this.pending.keys()]) this.settle(id, { ok: false, stale: true });
    this.listeners.clear();
  }

  private settle(id: string, outcome: Outcome<unknown>): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    if (this.newestInSlot.get(entry.slot) === id) this.newestInSlot.delete(entry.slot);
    entry.resolve(outcome);
    this.notify();
  }

  private notify(): void {
    for (const fn of this.listeners) fn();
  }
}
