// Downsampling and smoothing over Float64Array columns. Pure functions, no DOM.

/**
 * Incremental min/max decimation over an append-only column. Buckets have a fixed power-of-two width in index
 * space and never move when points are appended (no shimmer while streaming): complete buckets are computed
 * once, only the trailing partial bucket is rescanned, and when there are more than `maxBuckets` complete
 * buckets, neighbours merge pairwise (width doubles). An update costs O(new points), plus O(buckets) to emit.
 * The output holds per bucket its min, its max and its first non-finite point, in index order, plus the first
 * and the last point exactly.
 */
export class Decimator {
  private bw = 1;
  private nb = 0;
  private mins = new Int32Array(0);
  private maxs = new Int32Array(0);
  private bad = new Int32Array(0);
  private lastY: Float64Array | null = null;

  constructor(readonly maxBuckets: number) {}

  private reset(): void {
    this.bw = 1;
    this.nb = 0;
  }

  private scan(y: Float64Array, start: number, end: number, out: Int32Array, at: number): void {
    let imin = -1;
    let imax = -1;
    let inf = -1;
    let vmin = Infinity;
    let vmax = -Infinity;
    for (let i = start; i < end; i++) {
      const v = y[i];
      if (v - v !== 0) {
        if (inf < 0) inf = i;
        continue;
      }
      if (v < vmin) {
        vmin = v;
        imin = i;
      }
      if (v > vmax) {
        vmax = v;
        imax = i;
      }
    }
    out[at] = imin;
    out[at + 1] = imax;
    out[at + 2] = inf;
  }

  private ensure(cap: number): void {
    if (cap <= this.mins.length) return;
    let c = Math.max(64, this.mins.length);
    while (c < cap) c *= 2;
    const grow = (a: Int32Array) => {
      const b = new Int32Array(c);
      b.set(a.subarray(0, this.nb));
      return b;
    };
    this.mins = grow(this.mins);
    this.maxs = grow(this.maxs);
    this.bad = grow(this.bad);
  }

  private mergePairs(y: Float64Array): void {
    const half = this.nb >> 1;
    for (let b = 0; b < half; b++) {
      const a0 = 2 * b;
      const a1 = a0 + 1;
      const m0 = this.mins[a0];
      const m1 = this.mins[a1];
      this.mins[b] = m0 < 0 ? m1 : m1 < 0 ? m0 : y[m1] < y[m0] ? m1 : m0;
      const x0 = this.maxs[a0];
      const x1 = this.maxs[a1];
      this.maxs[b] = x0 < 0 ? x1 : x1 < 0 ? x0 : y[x1] > y[x0] ? x1 : x0;
      const n0 = this.bad[a0];
      this.bad[b] = n0 >= 0 ? n0 : this.bad[a1];
    }
    this.nb = half; // an odd trailing bucket is dropped and rescanned as part of the partial tail
    this.bw *= 2;
  }

  /** Indices to draw for `y` (which extends the `y` of the previous call), or null to draw all points. */
  update(y: Float64Array): Uint32Array | null {
    const n = y.length;
    if (n <= 2 * this.maxBuckets) {
      this.reset();
      return null;
    }
    if (this.nb * this.bw > n) this.reset(); // column shrank: start over
    this.lastY = y;
    // consume complete buckets
    for (;;) {
      const full = Math.floor(n / this.bw);
      if (full > this.maxBuckets) {
        // merge first when that keeps the bucket count in bounds
        if (this.nb >= 2) {
          this.mergePairs(y);
          continue;
        }
        this.bw *= 2;
        this.nb = 0;
        continue;
      }
      if (this.nb < full) {
        this.ensure(full);
        const tmp = new Int32Array(3);
        for (let b = this.nb; b < full; b++) {
          this.scan(y, b * this.bw, (b + 1) * this.bw, tmp, 0);
          this.mins[b] = tmp[0];
          this.maxs[b] = tmp[1];
          this.bad[b] = tmp[2];
        }
        this.nb = full;
      }
      break;
    }
    const tail = new Int32Array(3);
    const tailStart = this.nb * this.bw;
    this.scan(y, tailStart, n, tail, 0);
    const out = new Uint32Array(this.nb * 3 + 5);
    let k = 0;
    let prev = -1;
    const push = (i: number) => {
      if (i > prev) {
        out[k++] = i;
        prev = i;
      }
    };
    // three indices (-1 = none) in ascending order
    const push3 = (a: number, b: number, c: number) => {
      if (a > b) [a, b] = [b, a];
      if (b > c) [b, c] = [c, b];
      if (a > b) [a, b] = [b, a];
      push(a);
      push(b);
      push(c);
    };
    push3(0, 0, -1);
    for (let b = 0; b < this.nb; b++) push3(this.mins[b], this.maxs[b], this.bad[b]);
    push3(tail[0], tail[1], tail[2]);
    if (prev !== n - 1) out[k++] = n - 1;
    return out.subarray(0, k);
  }

  /** The column of the last update (tests). */
  get source(): Float64Array | null {
    return this.lastY;
  }
}

/**
 * Incremental bucket means over an append-only column, for drawing an already smoothed line: one point per
 * bucket (the mean of its finite values at its middle index) plus the last point exactly. Same fixed
 * power-of-two buckets as Decimator, so points never move while data streams in.
 */
export class MeanDecimator {
  private bw = 1;
  private nb = 0;
  private sums = new Float64Array(0);
  private counts = new Float64Array(0);

  constructor(readonly maxBuckets: number) {}

  private ensure(cap: number): void {
    if (cap <= this.sums.length) return;
    let c = Math.max(64, this.sums.length);
    while (c < cap) c *= 2;
    const s = new Float64Array(c);
    s.set(this.sums.subarray(0, this.nb));
    const k = new Float64Array(c);
    k.set(this.counts.subarray(0, this.nb));
    this.sums = s;
    this.counts = k;
  }

  /** Middle indices and mean values to draw, or null to draw `y` as is. */
  update(y: Float64Array): { idx: Uint32Array; y: Float64Array } | null {
    const n = y.length;
    if (n <= 2 * this.maxBuckets) {
      this.bw = 1;
      this.nb = 0;
      return null;
    }
    if (this.nb * this.bw > n) this.nb = 0;
    for (;;) {
      const full = Math.floor(n / this.bw);
      if (full > this.maxBuckets) {
        const half = this.nb >> 1;
        for (let b = 0; b < half; b++) {
          this.sums[b] = this.sums[2 * b] + this.sums[2 * b + 1];
          this.counts[b] = this.counts[2 * b] + this.counts[2 * b + 1];
        }
        this.nb = half;
        this.bw *= 2;
        continue;
      }
      if (this.nb < full) {
        this.ensure(full);
        for (let b = this.nb; b < full; b++) {
          let sum = 0;
          let cnt = 0;
          for (let i = b * this.bw, e = (b + 1) * this.bw; i < e; i++) {
            const v = y[i];
            if (v - v === 0) {
              sum += v;
              cnt++;
            }
          }
          this.sums[b] = sum;
          this.counts[b] = cnt;
        }
        this.nb = full;
      }
      break;
    }
    const tailStart = this.nb * this.bw;
    const hasTail = tailStart < n - 1;
    const m = this.nb + (hasTail ? 1 : 0) + 1;
    const idx = new Uint32Array(m);
    const out = new Float64Array(m);
    const half = this.bw >> 1;
    for (let b = 0; b < this.nb; b++) {
      idx[b] = b * this.bw + half;
      out[b] = this.counts[b] ? this.sums[b] / this.counts[b] : NaN;
    }
    let k = this.nb;
    if (hasTail) {
      let sum = 0;
      let cnt = 0;
      for (let i = tailStart; i < n - 1; i++) {
        const v = y[i];
        if (v - v === 0) {
          sum += v;
          cnt++;
        }
      }
      idx[k] = (tailStart + n - 1) >> 1;
      out[k] = cnt ? sum / cnt : NaN;
      k++;
    }
    idx[k] = n - 1;
    out[k] = y[n - 1];
    return { idx, y: out };
  }
}

export function gather(src: Float64Array, idx: Uint32Array | null): Float64Array {
  if (!idx) return src.slice();
  const out = new Float64Array(idx.length);
  for (let i = 0; i < idx.length; i++) out[i] = src[idx[i]];
  return out;
}

/**
 * Incremental, debiased exponential moving average (the TensorBoard smoother). Non-finite inputs do not
 * touch the running state (NaN never poisons the line); their output carries the previous smoothed value.
 */
export class Ema {
  private out: Float64Array = new Float64Array(0);
  private n = 0;
  private last = 0;
  private pow = 1;
  private seen = 0;
  /** smallest and largest value seen: the average lies between them, so rounding noise is clamped (a constant
   * series stays exactly constant instead of jittering at 1e-16 and making the y axis zoom into the noise) */
  private lo = Infinity;
  private hi = -Infinity;
  constructor(readonly weight: number) {}

  /** Smoothed values for `y` (which must extend the y given on the previous call). */
  update(y: Float64Array): Float64Array {
    if (y.length < this.n) this.reset();
    const m = y.length;
    if (m > this.out.length) {
      let cap = Math.max(64, this.out.length);
      while (cap < m) cap *= 2;
      const next = new Float64Array(cap);
      next.set(this.out.subarray(0, this.n));
      this.out = next;
    }
    const w = this.weight;
    let last = this.last;
    let pow = this.pow;
    let seen = this.seen;
    let lo = this.lo;
    let hi = this.hi;
    const out = this.out;
    for (let i = this.n; i < m; i++) {
      const v = y[i];
      if (v - v === 0) {
        last = last * w + (1 - w) * v;
        pow *= w;
        seen++;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      out[i] = seen ? Math.min(hi, Math.max(lo, last / (1 - pow))) : NaN;
    }
    this.last = last;
    this.pow = pow;
    this.seen = seen;
    this.lo = lo;
    this.hi = hi;
    this.n = m;
    return out.subarray(0, m);
  }

  reset(): void {
    this.n = 0;
    this.last = 0;
    this.pow = 1;
    this.seen = 0;
    this.lo = Infinity;
    this.hi = -Infinity;
  }
}

/** EMA of `y` from scratch (tests). */
export function ema(y: Float64Array, weight: number): Float64Array {
  return new Ema(weight).update(y).slice();
}
