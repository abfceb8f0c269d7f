"""observe_columns: an AlertMonitor over a batch of records given as columns, with exactly the alerts (and the state)
that observing the records one by one gives, for a fraction of the cost.

The rules' conditions are screened for the whole batch with numpy, from the monitor's own windows: the screen marks
a superset of the records at which any rule's condition can hold (where numpy's sums may differ from the rules' by
rounding, the screen errs towards marking). Those records, the records after them while an alert's condition lasts
or builds up, and a run's first records (while a window is not full yet) go through `AlertMonitor.observe`. Over the
others nothing can be raised, so the monitor's windows — histories, peaks, the reward's noise, reward/KL pairs,
ratios, the reward functions' windows, the training-loss sums — are carried forward without the rules, with the same
floating-point operations the rules would have done. Only the non-alert state is carried: it never depends on the
alerts (episodes), so the whole batch's windows are known in advance. The equivalence is a property test
(tests/test_alert_batches.py) over every trainer kind and fault of `synthetic_runs`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .alerts import _DOMINANCE_CLEAR_MARGIN, _HOLD, _RATIOS, _TRACKED, AlertMonitor, _RewardFn

MIN_BATCH = 64
"""Fewer records are observed one by one: the screen's fixed cost (a few dozen numpy calls) is not worth it."""
_WARM_CHECK_EVERY = 16
_RELATIVE_SLACK = 1e-6
_ABSOLUTE_SLACK = 1e-12


def observe_columns(monitor: AlertMonitor, steps: np.ndarray, columns: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """The alerts of `monitor.observe` over records `{"step": steps[i], name: columns[name][i], ...}` in order (every
    record has every key; float64 values, NaN included), the same as observing them one by one."""
    steps = np.asarray(steps, dtype="f8")
    columns = {name: np.asarray(values, dtype="f8") for name, values in columns.items()}
    n = len(steps)
    records = _Records(steps, columns)
    alerts: list[dict[str, Any]] = []
    first = 0  # the records before `first` are observed one by one: a run's start, until every window is full
    while first < n and ("eval_loss" in columns or not _warm(monitor, columns)):
        for i in range(first, min(n, first + _WARM_CHECK_EVERY)):
            alerts.extend(monitor.observe(records[i]))
        first += _WARM_CHECK_EVERY
    if n - first >= MIN_BATCH:
        rest = {name: values[first:] for name, values in columns.items()}
        return alerts + _Batch(monitor, steps[first:], rest).run()
    for i in range(first, n):
        alerts.extend(monitor.observe(records[i]))
    return alerts


def _warm(monitor: AlertMonitor, columns: Mapping[str, np.ndarray]) -> bool:
    """Every window the rules keep for these columns is full (they stay full): the screen's windows are then the
    rules' windows at every record of the batch."""
    rules = monitor.rules
    for metric in _TRACKED:
        if metric in columns and len(monitor._history.get(metric, ())) < monitor._history_size:
            return False
    for metric in ("reward_mean", "entropy_mean"):
        if metric in columns and metric not in monitor._peaks:
            return False
    if "reward_mean" in columns:
        if "reward_mean" not in monitor._start or len(monitor._reward_steps) < rules.noise_window:
            return False
        if "kl_mean" in columns and len(monitor._pairs) < rules.hacking_window - 1:
            return False
    ratio = next((name for name in ("frac_reward_zero_std", "reward_std") if name in columns), None)
    if ratio is not None and len(monitor._ratios.get(ratio, ())) < rules.zero_variance_window:
        return False
    if monitor._per_function:
        for name, _, std_key in monitor._function_keys({"step": 0, **columns}):
            state = monitor._functions.get(name)
            if state is None or state.start_mean is None or len(state.means) < rules.reward_fn_window:
                return False
            if std_key is not None and (state.start_std is None or len(state.stds) < rules.reward_fn_window):
                return False
    return True


def _medians(windows: np.ndarray) -> np.ndarray:
    """The median of each row, exactly as `alerts._median` computes it (the middle value, or the mean of the two)."""
    size = windows.shape[1]
    middle = size // 2
    if size % 2:
        return np.partition(windows, middle, axis=1)[:, middle]
    ordered = np.partition(windows, [middle - 1, middle], axis=1)
    return (ordered[:, middle - 1] + ordered[:, middle]) / 2


def _above(values: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """values > threshold, or within the slack below it (so that the screen never misses a record)."""
    return values > threshold - (_RELATIVE_SLACK * np.abs(threshold) + _ABSOLUTE_SLACK)


def _below(values: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    return values < threshold + (_RELATIVE_SLACK * np.abs(threshold) + _ABSOLUTE_SLACK)


class _Stream:
    """A window's values as the monitor sees them over the batch: the ones it remembers, then each record's value
    where the record adds one (`counted`). `before[i]`: how many values came before record i."""

    def __init__(self, remembered: Iterable[float], values: np.ndarray, counted: np.ndarray) -> None:
        head = np.fromiter(remembered, dtype="f8")
        self.values = np.concatenate([head, values[counted]])
        self.counted = counted
        self.before = len(head) + np.cumsum(counted) - counted

    def medians(self, size: int, include: bool, rows: np.ndarray | None = None, lag: int = 0) -> np.ndarray:
        """Per record: the median of the `size` values before it (`include`: the last `size` values up to its own,
        for records that add one; `lag`: the window ends that many values earlier), NaN where there are fewer (or
        outside `rows`)."""
        end = (self.before + 1 if include else self.before) - lag
        wanted = end >= size
        if include:
            wanted &= self.counted
        if rows is not None:
            wanted &= rows
        out = np.full(len(end), np.nan)
        where = np.flatnonzero(wanted)
        if where.size:
            out[where] = _medians(sliding_window_view(self.values, size)[end[where] - size])
        return out


class _Records:
    """Record i of the columns as `observe` takes it: `step` an int where it is whole, plain floats."""

    def __init__(self, steps: np.ndarray, columns: Mapping[str, np.ndarray]) -> None:
        self.steps = steps
        self.columns = columns

    def step(self, i: int) -> Any:
        step = float(self.steps[i])
        return int(step) if step.is_integer() else step

    def __getitem__(self, i: int) -> dict[str, Any]:
        record: dict[str, Any] = {"step": self.step(i)}
        record.update((name, float(values[i])) for name, values in self.columns.items())
        return record


class _Batch:
    """The screen of one batch (`candidate`: the records the rules must see) and the carry of the windows."""

    def __init__(self, monitor: AlertMonitor, steps: np.ndarray, columns: dict[str, np.ndarray]) -> None:
        self.monitor = monitor
        self.rules = monitor.rules
        self.columns = columns
        self.records = _Records(steps, columns)
        self.n = len(steps)
        self.finite = {name: np.isfinite(values) for name, values in columns.items()}
        self.candidate = np.zeros(self.n, dtype=bool)
        self.streams: dict[str, _Stream] = {}
        self.peak_medians: dict[str, np.ndarray] = {}
        self.functions: list[tuple[_RewardFn, str, str | None]] = []  # (state, mean key, std key) per reward function
        self._screen()

    # the windows ---------------------------------------------------------------------------------------------
    def _windows(self) -> None:
        """Every window the rules keep over these columns, through the batch (the carry needs them all, whichever
        rules are on)."""
        monitor, rules, columns = self.monitor, self.rules, self.columns
        for metric in _TRACKED:
            if metric in columns:
                self.streams[metric] = _Stream(monitor._history[metric], columns[metric], self.finite[metric])
        for metric in ("reward_mean", "entropy_mean"):  # the rolling medians whose best is the metric's peak
            if metric in columns:
                self.peak_medians[metric] = self.streams[metric].medians(rules.reward_window, include=True)
        if "reward_mean" in columns:
            rewards = self.streams["reward_mean"]
            added = rewards.counted & (rewards.before >= 1)
            differences = np.zeros(self.n)  # the step-to-step differences `_remember` adds (the reward's noise)
            differences[added] = np.abs(np.diff(rewards.values))[rewards.before[added] - 1]
            self.streams["reward_steps"] = _Stream(monitor._reward_steps, differences, added)
            if "kl_mean" in columns:
                counted = self.finite["reward_mean"] & self.finite["kl_mean"]
                self.streams["pairs:reward"] = _Stream((r for _, r, _ in monitor._pairs), columns["reward_mean"], counted)
                self.streams["pairs:kl"] = _Stream((k for _, _, k in monitor._pairs), columns["kl_mean"], counted)
        frac = self.finite.get("frac_reward_zero_std")
        if frac is not None:
            self._ratio("frac_reward_zero_std", frac)
        if "reward_std" in columns:  # when there is no finite frac, the rules window the reward's std instead
            self._ratio("reward_std", self.finite["reward_std"] & (~frac if frac is not None else True))
        if monitor._per_function:
            size = rules.reward_fn_window
            for name, mean_key, std_key in monitor._function_keys({"step": 0, **columns}):
                state = monitor._functions[name]
                counted = self.finite[mean_key]
                means = _Stream(state.means, columns[mean_key], counted)
                self.peak_medians["mean:" + name] = means.medians(size, include=True)
                self.functions.append((state, mean_key, std_key))
                if std_key is not None:
                    stds = _Stream(state.stds, columns[std_key], counted & self.finite[std_key])
                    self.peak_medians["std:" + name] = stds.medians(size, include=True)

    def _ratio(self, metric: str, counted: np.ndarray) -> None:
        self.streams["ratio:" + metric] = _Stream((v for _, v in self.monitor._ratios.get(metric, ())),
                                                  self.columns[metric], counted)

    # the screen ----------------------------------------------------------------------------------------------
    def _screen(self) -> None:
        self._windows()
        monitor = self.monitor
        for name, finite in self.finite.items():  # a NaN / ±Inf anywhere the rules read: the nonfinite rules' case
            if name in monitor._read or name.startswith("rewards/") or name == "loss":
                self.candidate |= ~finite
        self._kl()
        self._hacking()
        self._entropy()
        self._reward_variance()
        self._reward_collapse()
        self._grad_norm()
        self._levels()
        self._reward_functions()

    def _on(self, rule: str) -> bool:
        """A disabled rule never acts (no episode, no alert): its screen is skipped."""
        return rule not in self.rules.disabled

    def _relative(self, metric: str, rows: np.ndarray | None = None) -> np.ndarray:
        """`AlertMonitor._relative` per record: the median of the metric's previous `window` values."""
        return self.streams[metric].medians(self.rules.window, include=False, rows=rows)

    def _kl(self) -> None:
        if "kl_mean" not in self.columns:
            return
        rules, kl = self.rules, self.columns["kl_mean"]
        if self._on("kl_high"):
            self.candidate |= kl > rules.kl_max
        if self._on("kl_spike"):
            # a spike's threshold is at least kl_spike_min: the medians are needed only above it
            median = self._relative("kl_mean", rows=kl > rules.kl_spike_min)
            with np.errstate(invalid="ignore"):
                self.candidate |= _above(kl, np.fmax(rules.kl_spike_factor * median, rules.kl_spike_min)) \
                    & ~np.isnan(median)

    def _hacking(self) -> None:
        if "pairs:reward" not in self.streams or not self._on("reward_hacking"):
            return
        rules = self.rules
        rewards, kls = self.streams["pairs:reward"], self.streams["pairs:kl"]
        # the window: the previous size - 1 pairs and the record's own; its first half against its last quarter
        size = rules.hacking_window
        edge, tail = max(1, size // 2), max(1, size // 4)
        reward_start = rewards.medians(edge, include=True, lag=size - edge)
        kl_start = kls.medians(edge, include=True, lag=size - edge)
        reward_end, kl_end = rewards.medians(tail, include=True), kls.medians(tail, include=True)
        threshold = np.fmax(kl_start + rules.hacking_kl_min_rise, rules.hacking_kl_ratio * kl_start)
        with np.errstate(invalid="ignore"):
            self.candidate |= (reward_end > reward_start) & ~_below(kl_end, threshold)

    def _peaks_before(self, metric: str) -> np.ndarray:
        """Per record: the metric's peak (best rolling median of `reward_window` values) as the rules see it, before
        the record's own value is remembered."""
        start = self.monitor._peaks[metric][0]
        return np.fmax.accumulate(np.concatenate([[start], self.peak_medians[metric]]))[:-1]

    def _entropy(self) -> None:
        if "entropy_mean" not in self.columns or not self._on("entropy_collapse"):
            return
        rules = self.rules
        threshold = np.fmax(rules.entropy_min, rules.entropy_collapse_ratio * self._peaks_before("entropy_mean"))
        self.candidate |= _below(self.columns["entropy_mean"], threshold)

    def _reward_variance(self) -> None:
        """zero_reward_variance: marked wherever its level says the reward is sparse, which includes every record
        where it holds (a sparse reward only holds the other reward rules back, so they need no mark for it)."""
        if not self._on("zero_reward_variance"):
            return
        rules, size = self.rules, self.rules.zero_variance_window
        for metric in ("frac_reward_zero_std", "reward_std"):
            stream = self.streams.get("ratio:" + metric)
            if stream is None:
                continue
            level = stream.medians(size, include=True)
            with np.errstate(invalid="ignore"):
                if metric == "frac_reward_zero_std":
                    self.candidate |= level >= rules.zero_std_frac_clear
                else:
                    self.candidate |= level <= rules.reward_std_min

    def _reward_collapse(self) -> None:
        if "reward_mean" not in self.columns or not self._on("reward_collapse"):
            return
        rules, monitor = self.rules, self.monitor
        rewards, steps = self.streams["reward_mean"], self.streams["reward_steps"]
        peak = self._peaks_before("reward_mean")
        start = monitor._start["reward_mean"]
        window = rules.noise_window
        sums = sliding_window_view(steps.values, window).sum(axis=1)  # per window (no running sum to cancel)
        noise = rules.reward_collapse_noise_factor * sums[steps.before - window] / window / 1.128
        low = noise * (1 - _RELATIVE_SLACK) - _ABSOLUTE_SLACK
        high = noise * (1 + _RELATIVE_SLACK) + _ABSOLUTE_SLACK
        recent = rewards.medians(min(rules.reward_recent_window, monitor._history_size + 1), include=True)
        for best in (np.where(peak - start > low, peak, start), np.where(peak - start > high, peak, start)):
            drop = best - recent
            allowed = np.fmax(rules.reward_collapse_frac * np.fmax(np.abs(best), best - start), low)
            with np.errstate(invalid="ignore"):
                self.candidate |= _above(drop, allowed) & _below(recent, best)

    def _grad_norm(self) -> None:
        if "grad_norm" not in self.columns or not self._on("grad_norm_explosion"):
            return
        rules, norm = self.rules, self.columns["grad_norm"]
        self.candidate |= norm > rules.grad_norm_max
        relative = norm > rules.grad_norm_floor  # relative spikes count only above the floor
        median = self._relative("grad_norm", rows=relative)
        factor = min(rules.grad_norm_spike_factor, rules.grad_norm_loss_jump_factor)
        with np.errstate(invalid="ignore"):
            self.candidate |= relative & (median > 0) & _above(norm, factor * median)

    def _levels(self) -> None:
        """clip_frac_high, value_loss_spike, completion_length_blowup, completions_clipped."""
        rules, columns = self.rules, self.columns
        if "clip_frac" in columns and self._on("clip_frac_high"):
            self.candidate |= columns["clip_frac"] > rules.clip_frac_max
        if "value_loss" in columns and self._on("value_loss_spike"):
            loss = columns["value_loss"]
            median = self._relative("value_loss", rows=loss > rules.value_loss_min)
            with np.errstate(invalid="ignore"):
                self.candidate |= _above(loss, np.fmax(rules.value_loss_spike_factor * median, rules.value_loss_min)) \
                    & ~np.isnan(median)
        if "completions/mean_length" in columns and self._on("completion_length_blowup"):
            median = self._relative("completions/mean_length")
            with np.errstate(invalid="ignore"):
                self.candidate |= (median > 0) & _above(columns["completions/mean_length"],
                                                        rules.length_spike_factor * median)
        if "completions/clipped_ratio" in columns and self._on("completions_clipped"):
            self.candidate |= columns["completions/clipped_ratio"] > rules.clipped_ratio_max

    def _reward_functions(self) -> None:
        """The per-function rules: a level near its collapse threshold (held or collapsed), a share of the variance
        near dominance."""
        rules = self.rules
        collapse = self._on("reward_fn_variance_collapse") or self._on("reward_fn_saturated")
        shares = []
        for state, _, std_key in self.functions:
            if std_key is None:
                continue
            level = self.peak_medians["std:" + state.name]
            shares.append(level)
            if collapse:
                peak = np.fmax.accumulate(np.concatenate([[state.peak_std], level]))[:-1]
                threshold = np.fmax(rules.reward_std_min, rules.reward_fn_std_collapse_ratio * peak)
                with np.errstate(invalid="ignore"):
                    self.candidate |= _HOLD * level <= threshold + (_RELATIVE_SLACK * threshold + _ABSOLUTE_SLACK)
        if len(shares) >= 2 and self._on("reward_fn_dominant"):
            squares = np.square(np.vstack(shares))
            with np.errstate(invalid="ignore", divide="ignore"):
                share = np.fmax.reduce(squares, axis=0) / np.nansum(squares, axis=0)
                self.candidate |= _above(share, rules.reward_fn_dominance - _DOMINANCE_CLEAR_MARGIN)

    # running the batch ---------------------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        monitor, n = self.monitor, self.n
        marked = np.flatnonzero(self.candidate)
        alerts: list[dict[str, Any]] = []
        hot = _hot(monitor)
        i = 0
        while i < n:
            if hot or self.candidate[i]:
                alerts.extend(monitor.observe(self.records[i]))
                hot = _hot(monitor)
                i += 1
                continue
            following = int(np.searchsorted(marked, i))
            end = int(marked[following]) if following < len(marked) else n
            self._carry(i, end)
            i = end
        return alerts

    def _carry(self, start: int, end: int) -> None:
        """Records [start, end) hold nothing the rules would raise (all their values finite, every window full):
        give the monitor the windows it would have after observing them. A window keeps its last values only, so
        only those are handed over; running sums are added up value by value, as the rules do."""
        monitor, columns = self.monitor, self.columns
        steps = self.records.steps
        for metric in _TRACKED:
            if metric in columns:
                history = monitor._hist(metric)
                keep = max(start, end - (history.maxlen or end))
                history.extend(columns[metric][keep:end].tolist())
                monitor._history_steps[metric].extend(_whole(steps[keep:end]))
        if "reward_steps" in self.streams:
            stream = self.streams["reward_steps"]
            first = int(stream.before[start])
            total, differences = monitor._reward_steps_sum, monitor._reward_steps
            for difference in stream.values[first : first + end - start].tolist():
                if len(differences) == differences.maxlen:
                    total -= differences[0]
                differences.append(difference)
                total += difference
            monitor._reward_steps_sum = total
        for metric in ("reward_mean", "entropy_mean"):
            if metric in self.peak_medians:
                self._raise_peak(metric, start, end)
        if "pairs:reward" in self.streams:
            keep = max(start, end - (monitor._pairs.maxlen or end))
            monitor._pairs.extend(zip(_whole(steps[keep:end]), columns["reward_mean"][keep:end].tolist(),
                                      columns["kl_mean"][keep:end].tolist()))
        for metric in _RATIOS:
            stream = self.streams.get("ratio:" + metric)
            window = monitor._ratios.get(metric)
            if stream is not None and window is not None:
                rows = start + np.flatnonzero(stream.counted[start:end])[-(window.maxlen or end):]
                window.extend(zip(_whole(steps[rows]), columns[metric][rows].tolist()))
        for state, mean_key, std_key in self.functions:
            self._carry_function(state, mean_key, std_key, start, end)
        if "loss" in columns:
            total, squares = monitor._train_sum, monitor._train_squares
            for loss in columns["loss"][start:end].tolist():
                total += loss
                squares += loss * loss
            monitor._train_sum, monitor._train_squares = total, squares
            monitor._train_count += end - start
        monitor._step = int(steps[end - 1])
        monitor._sparse = False

    def _raise_peak(self, metric: str, start: int, end: int) -> None:
        medians = self.peak_medians[metric][start:end]
        best = int(np.argmax(medians))  # the first of equal maxima: the rules keep a peak unless beaten
        if medians[best] > self.monitor._peaks[metric][0]:
            self.monitor._peaks[metric] = (float(medians[best]), int(self.records.steps[start + best]))

    def _carry_function(self, state: _RewardFn, mean_key: str, std_key: str | None, start: int, end: int) -> None:
        name, size = state.name, state.means.maxlen or end
        keep = max(start, end - size)
        state.means.extend(self.columns[mean_key][keep:end].tolist())
        state.steps.extend(_whole(self.records.steps[keep:end]))
        state.count += end - start
        levels = self.peak_medians["mean:" + name][start:end]
        state.peak_mean = max(state.peak_mean, float(levels.max()))
        state.low_mean = min(state.low_mean, float(levels.min()))
        state.collapsed = False
        state.std_window = None
        if std_key is None:
            return
        state.stds.extend(self.columns[std_key][keep:end].tolist())
        levels = self.peak_medians["std:" + name][start:end]
        state.peak_std = max(state.peak_std, float(levels.max()))
        state.std_window = float(levels[-1])


def _whole(steps: np.ndarray) -> list[int]:
    """Steps as the rules remember them (`int(step)`)."""
    return steps.astype(np.int64).tolist()


def _hot(monitor: AlertMonitor) -> bool:
    """An alert's condition lasts (its episode is active: hold, clear and re-arm count per record) or builds up
    (a patience streak): the next record goes through the rules too."""
    return any(episode.active or episode.streak for episode in monitor._episodes.values())
