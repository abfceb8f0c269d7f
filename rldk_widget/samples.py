"""Completions (samples): what one sample is, as text and as a record of `{run_id}_samples.json`. Pure functions, no
I/O: the TRL sources (trl_samples.py) produce `RawBatch`es, the callback turns them into records here, and the index
(sample_index.py) reads records and TRL's parquet rows back through `sample_fields`.

- Text is text: a prompt or completion that is a chat-message list is rendered as `role: content` blocks; anything
  else that is not a string is rendered as JSON or `str()`. Lone surrogates become U+FFFD (nothing else is changed:
  NUL, control characters, RTL overrides and zero-width characters stay, for the view to show literally).
- A sample's identity is its content, not the step it was logged at: `sample_key(prompt, completion, advantage, n)`
  hashes the full rendered texts and the advantage (which TRL derives from the rewards of the group), `n` counting
  identical samples earlier in the same batch. Rewards are not hashed: which parquet columns are rewards cannot
  always be told from a parquet file (reward functions may log float extras), and the advantage already differs
  whenever the rewards of a group do.
- On disk each text is capped at `SampleSettings.text_cap_bytes` UTF-8 bytes (default 64 KB) before encoding; a
  capped text is listed in the record's `cut`, and the full length is kept in `prompt_chars` / `completion_chars`.

Record (one JSON object per line of `{run_id}_samples.json`):

    {"step": 12, "run_id": "r", "id": "<16 hex>", "prompt_id": "<16 hex>", "index": 3, "source": "live",
     "rewards": {"<reward function>": 0.5 | null, ...}, "reward": 0.5 | null, "advantage": 0.7 | null,
     "completion_length": 37 | null, "truncated": true | false | null, "empty": false,
     "prompt_chars": 120, "completion_chars": 400, "cut": ["completion"], "extra": {...}, "timestamp": 1.7e9,
     "prompt": "...", "completion": "..."}

`null` reward: the function returned None (TRL's NaN); `cut` and `extra` only when non-empty. TRL's batch holds
decoded texts, not token ids, so for live capture `completion_length` is the completion re-tokenized with the trainer's
tokenizer, kept within the log's `completions/min_length` … `completions/max_length` (exact for well-formed text,
and exact when those two are equal; null when not counted), and `truncated` (the completion reached `max_completion_length`; null: unknown) is exact when
the log's `completions/clipped_ratio` is 0 or 1 (then a truncated completion's length is `max_completion_length`),
else it is `completion_length >= max_completion_length`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import orjson

SAMPLES_PER_STEP = 64
TEXT_CAP_BYTES = 64 << 10
EXTRA_CAP_BYTES = 4 << 10
"""Extra columns (reward functions' `log_extra`) are kept as numbers, booleans or text capped at this size."""
MAX_EXTRA_COLUMNS = 32
FLAG_NAMES = ("truncated", "empty", "cut")


@dataclass(frozen=True)
class SampleSettings:
    """What the callback keeps of each logged generation batch.

    `per_step`: samples kept per logged step (whole prompt groups, in the trainer's order, up to this many);
    `every`: keep the batch of every n-th logged step; `text_cap_bytes`: each prompt / completion is cut to this
    many UTF-8 bytes on disk (the record lists it in `cut`); `count_tokens`: count each completion's tokens with the
    trainer's tokenizer (completion_length, and the truncated flag when TRL's clipped ratio is neither 0 nor 1)."""

    per_step: int = SAMPLES_PER_STEP
    every: int = 1
    text_cap_bytes: int = TEXT_CAP_BYTES
    count_tokens: bool = True

    def __post_init__(self) -> None:
        for name, low in (("per_step", 1), ("every", 1), ("text_cap_bytes", 16)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"SampleSettings.{name} must be an int >= {low}, got {value!r}")
        if not isinstance(self.count_tokens, bool):
            raise TypeError(f"SampleSettings.count_tokens must be a bool, got {self.count_tokens!r}")


@dataclass
class RawBatch:
    """One generation batch as a source holds it (texts may be strings, chat-message lists or anything else)."""

    step: int
    prompts: Sequence[Any]
    completions: Sequence[Any]
    rewards: Mapping[str, Sequence[Any]]
    advantages: Sequence[Any]
    extra: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    reward_weights: Mapping[str, float] | None = None
    max_completion_length: int | None = None
    clipped_ratio: float | None = None
    """TRL's `completions/clipped_ratio` of the log: 0 means no completion was truncated, 1 means all were."""
    length_range: tuple[float, float] | None = None
    """TRL's `completions/min_length` and `completions/max_length` of the log (tokens)."""


# ---- text -------------------------------------------------------------------------------------------------------
def clean_text(text: str) -> str:
    """`text` with lone surrogates (which no UTF-8 file can hold) replaced by U+FFFD; everything else unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def render_text(value: Any) -> str:
    """A prompt or completion as plain text: a string as is, a chat-message list as `role: content` blocks separated
    by blank lines (image parts as `[image]`, tool calls as `[tool call] name(arguments)`), bytes decoded, anything
    else as JSON or `str()`. Never raises."""
    try:
        return clean_text(_render(value, 0))
    except Exception:  # noqa: BLE001 - a hostile object's __str__ or __iter__ must not break reading
        return f"<{type(value).__name__}>"


def content_text(value: Any) -> str:
    """The generated text itself, without roles: what tokens are counted of and what "empty" looks at."""
    try:
        if _is_messages(value):
            return clean_text("\n".join(_content(message.get("content")) for message in value))
        if isinstance(value, Mapping) and ("content" in value or "role" in value):
            return clean_text(_content(value.get("content")))
        return render_text(value)
    except Exception:  # noqa: BLE001
        return render_text(value)


def _is_messages(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(m, Mapping) for m in value)


def _render(value: Any, depth: int) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if hasattr(value, "tolist") and not isinstance(value, (int, float)):  # numpy arrays and scalars
        return _render(value.tolist(), depth + 1) if depth < 8 else str(value)
    if _is_messages(value):
        return "\n\n".join(_message(message) for message in value)
    if isinstance(value, Mapping) and ("content" in value or "role" in value):
        return _message(value)
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()
    except (TypeError, ValueError):
        return str(value)


def _message(message: Mapping[str, Any]) -> str:
    role = message.get("role")
    text = _content(message.get("content"))
    calls = message.get("tool_calls")
    if isinstance(calls, (list, tuple)):
        for call in calls:
            function = call.get("function", call) if isinstance(call, Mapping) else call
            if isinstance(function, Mapping):
                arguments = function.get("arguments")
                arguments = arguments if isinstance(arguments, str) else _render(arguments, 1)
                text += f"\n[tool call] {_render(function.get('name'), 1)}({arguments})"
            else:
                text += f"\n[tool call] {_render(function, 1)}"
    if role is None or role == "":
        return text
    return f"{_render(role, 1)}: {text}"


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                kind = part.get("type")
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif kind in ("image", "image_url", "input_image"):
                    parts.append("[image]")
                elif kind is not None and all(v is None for k, v in part.items() if k != "type"):
                    parts.append(f"[{_render(kind, 1)}]")
                else:
                    parts.append(_render({k: v for k, v in part.items() if v is not None}, 1))
            else:
                parts.append(_render(part, 1))
        return "".join(parts)
    return _render(content, 1)


def cap_text(text: str, cap_bytes: int) -> tuple[str, bool]:
    """`text` cut to at most `cap_bytes` UTF-8 bytes (at a character boundary), and whether it was cut."""
    if len(text) * 4 <= cap_bytes:
        return text, False
    data = text.encode("utf-8")
    if len(data) <= cap_bytes:
        return text, False
    return data[:cap_bytes].decode("utf-8", "ignore"), True


# ---- numbers ----------------------------------------------------------------------------------------------------
def as_float(value: Any) -> float:
    """A reward or advantage as a float: NaN for None, non-numbers and booleans (never raises)."""
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def json_number(value: float) -> float | None:
    """A float for a JSON record or page: finite as is, NaN / ±Inf as null."""
    return value if math.isfinite(value) else None


def total_reward(rewards: Mapping[str, float], weights: Mapping[str, float] | None = None) -> float:
    """TRL's total reward: the weighted sum of the reward functions' values, skipping NaN; NaN when all are NaN."""
    total, seen = 0.0, False
    for name, value in rewards.items():
        if not math.isnan(value):
            weight = 1.0 if weights is None else as_float(weights.get(name, 1.0))
            total += value * (1.0 if math.isnan(weight) else weight)
            seen = True
    return total if seen else math.nan


# ---- identity ---------------------------------------------------------------------------------------------------
def text_key(text: str) -> int:
    """A stable 64-bit hash of a text (the same in every process: not Python's salted `hash`)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def _float_token(value: float) -> bytes:
    return b"nan" if math.isnan(value) else repr(value).encode()


class BatchKeys:
    """Sample keys of one batch, in order: identical samples (same prompt, completion and advantage) earlier in the
    same batch give the next ones distinct keys, so a group of identical completions keeps all its members."""

    def __init__(self) -> None:
        self._seen: dict[bytes, int] = {}

    def key(self, prompt: str, completion: str, advantage: float) -> int:
        digest = hashlib.sha256()
        for part in (prompt.encode("utf-8"), completion.encode("utf-8"), _float_token(advantage)):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
        base = digest.digest()
        count = self._seen.get(base, 0)
        self._seen[base] = count + 1
        if count:
            base = hashlib.sha256(base + count.to_bytes(8, "little")).digest()
        return int.from_bytes(base[:8], "little")


def key_hex(key: int) -> str:
    return f"{key:016x}"


def parse_key(value: Any) -> int | None:
    if isinstance(value, str) and len(value) == 16:
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None


# ---- batches --------------------------------------------------------------------------------------------------
def group_prefix(prompts: Sequence[Any], limit: int) -> int:
    """How many leading rows to keep: whole groups of consecutive equal prompts while they fit in `limit` (at least
    `limit` rows of the first group if it alone is larger)."""
    n = len(prompts)
    if n <= limit:
        return n
    kept = 0
    for i in range(1, n + 1):
        if i == n or not _same(prompts[i], prompts[i - 1]):
            if i > limit:
                return kept or limit
            kept = i
    return kept


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - numpy arrays and hostile objects
        return False


def batch_records(
    batch: RawBatch,
    settings: SampleSettings,
    run_id: str,
    now: float,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
) -> list[dict[str, Any]]:
    """The records of `batch` to append to `{run_id}_samples.json` (whole prompt groups up to `settings.per_step`).
    `count_tokens(texts)` gives each completion's token count (None: lengths unknown)."""
    n = min(len(batch.prompts), len(batch.completions))
    n = group_prefix(batch.prompts[:n], settings.per_step)
    prompts = list(batch.prompts[:n])
    completions = list(batch.completions[:n])
    rewards = {str(name): [as_float(v) for v in list(values)[:n]] for name, values in batch.rewards.items()}
    advantages = [as_float(v) for v in list(batch.advantages)[:n]]
    advantages += [math.nan] * (n - len(advantages))
    extra = {str(name): list(values)[:n] for name, values in list(batch.extra.items())[:MAX_EXTRA_COLUMNS]}
    contents = [content_text(c) for c in completions]
    lengths: list[int | None] = [None] * n
    exact = batch.length_range is not None and batch.length_range[0] == batch.length_range[1]
    if exact:  # every completion of the log has this many tokens
        lengths = [int(batch.length_range[0])] * n  # type: ignore[index]
    elif count_tokens is not None and n and not (batch.clipped_ratio is not None and batch.clipped_ratio >= 1):
        try:
            counted = count_tokens([cap_text(c, settings.text_cap_bytes)[0] for c in contents])
            if len(counted) == n:
                lengths = [int(x) for x in counted]
        except Exception:  # noqa: BLE001 - a tokenizer problem costs the lengths, not the samples
            pass
    ratio = batch.clipped_ratio
    max_length = batch.max_completion_length if isinstance(batch.max_completion_length, int) else None
    if batch.length_range is not None:
        low, high = batch.length_range
        lengths = [None if x is None else int(min(max(x, low), high)) for x in lengths]
    keys = BatchKeys()
    records = []
    rendered_prompt: tuple[Any, str, int] | None = None
    for i in range(n):
        if rendered_prompt is None or not _same(rendered_prompt[0], prompts[i]):
            text = render_text(prompts[i])
            rendered_prompt = (prompts[i], text, text_key(text))
        _, prompt, prompt_id = rendered_prompt
        completion = render_text(completions[i])
        row_rewards = {name: values[i] if i < len(values) else math.nan for name, values in rewards.items()}
        length = lengths[i]
        if ratio is not None and ratio <= 0:
            truncated: bool | None = False
        elif ratio is not None and ratio >= 1:
            truncated = True
            length = max_length if max_length and max_length > 0 else length  # generation stopped there
        elif length is not None and max_length and max_length > 0:
            truncated = length >= max_length
        else:
            truncated = None
        record: dict[str, Any] = {
            "step": batch.step,
            "run_id": run_id,
            "id": key_hex(keys.key(prompt, completion, advantages[i])),
            "prompt_id": key_hex(prompt_id),
            "index": i,
            "source": "live",
            "rewards": {name: json_number(v) for name, v in row_rewards.items()},
            "reward": json_number(total_reward(row_rewards, batch.reward_weights)),
            "advantage": json_number(advantages[i]),
            "completion_length": length,
            "truncated": truncated,
            "empty": not contents[i].strip(),
            "prompt_chars": len(prompt),
            "completion_chars": len(completion),
        }
        prompt_text, prompt_cut = cap_text(prompt, settings.text_cap_bytes)
        completion_text, completion_cut = cap_text(completion, settings.text_cap_bytes)
        cut = [name for name, was_cut in (("prompt", prompt_cut), ("completion", completion_cut)) if was_cut]
        if cut:
            record["cut"] = cut
        row_extra = {name: extra_value(values[i]) for name, values in extra.items() if i < len(values)}
        if row_extra:
            record["extra"] = row_extra
        record["timestamp"] = now
        record["prompt"] = prompt_text
        record["completion"] = completion_text
        records.append(record)
    return records


def extra_value(value: Any) -> Any:
    """An extra column's value for a record or page: None, a bool, a finite number, or text capped at 4 KB."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and -(2**53) <= value <= 2**53:
        return value
    if isinstance(value, float):
        return json_number(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
        try:
            return extra_value(value.item())
        except Exception:  # noqa: BLE001
            pass
    text = render_text(value)
    return cap_text(text, EXTRA_CAP_BYTES)[0]


# ---- reading back -----------------------------------------------------------------------------------------------
@dataclass
class SampleMeta:
    """What the index keeps in memory of one sample (its texts stay on disk)."""

    step: int
    key: int
    prompt_key: int
    index: int
    rewards: dict[str, float]
    reward: float
    advantage: float
    completion_length: float
    """Tokens; NaN when not counted."""
    truncated: bool | None
    empty: bool
    cut: bool
    prompt_chars: int
    completion_chars: int


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def meta_from_record(record: Mapping[str, Any], strict: bool = False) -> SampleMeta | None:
    """A samples-file record as index metadata; None when it has no usable step. Missing or wrong fields are taken
    from the texts (ids) or left unknown, so a hand-written or damaged record still shows what it has. `strict`:
    None unless every field this package writes is there with its type (a record read without its texts)."""
    try:  # the records this package writes: every field there with its type
        step, key, prompt_key, rewards = record["step"], record["id"], record["prompt_id"], record["rewards"]
        reward, advantage, length = record["reward"], record["advantage"], record["completion_length"]
        truncated, empty, index = record["truncated"], record["empty"], record["index"]
        prompt_chars, completion_chars = record["prompt_chars"], record["completion_chars"]
        if (
            type(step) is int and type(key) is str and len(key) == 16 and type(prompt_key) is str
            and len(prompt_key) == 16 and type(rewards) is dict and type(empty) is bool and type(index) is int
            and type(prompt_chars) is int and type(completion_chars) is int
            and (length is None or type(length) is int) and (truncated is None or type(truncated) is bool)
            and 0 <= index < 2**31 and prompt_chars >= 0 and completion_chars >= 0 and -(2**63) <= step < 2**63
        ):
            return SampleMeta(
                step, int(key, 16), int(prompt_key, 16), index,
                {str(n): v if type(v) is float else as_float(v) for n, v in rewards.items()},
                reward if type(reward) is float else as_float(reward),
                advantage if type(advantage) is float else as_float(advantage),
                math.nan if length is None else float(length), truncated, empty, bool(record.get("cut")),
                prompt_chars, completion_chars,
            )
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    if strict:
        return None
    step = _int(record.get("step"))
    if step is None or not -(2**63) <= step < 2**63:
        return None
    prompt = record.get("prompt")
    completion = record.get("completion")
    prompt_text = prompt if isinstance(prompt, str) else render_text(prompt)
    completion_text = completion if isinstance(completion, str) else render_text(completion)
    advantage = as_float(record.get("advantage"))
    key = parse_key(record.get("id"))
    if key is None:
        key = BatchKeys().key(prompt_text, completion_text, advantage) ^ (_int(record.get("index")) or 0)
    prompt_key = parse_key(record.get("prompt_id"))
    if prompt_key is None:
        prompt_key = text_key(prompt_text)
    raw_rewards = record.get("rewards")
    rewards = (
        {str(name): as_float(value) for name, value in raw_rewards.items()} if isinstance(raw_rewards, Mapping) else {}
    )
    reward = as_float(record.get("reward")) if "reward" in record else total_reward(rewards)
    length = record.get("completion_length")
    truncated = record.get("truncated")
    cut = record.get("cut")
    index = _int(record.get("index"))
    chars = (_int(record.get("prompt_chars")), _int(record.get("completion_chars")))
    return SampleMeta(
        step=step,
        key=key,
        prompt_key=prompt_key,
        index=index if index is not None and 0 <= index < 2**31 else 0,
        rewards=rewards,
        reward=reward,
        advantage=advantage,
        completion_length=as_float(length) if _int(length) is not None else math.nan,
        truncated=truncated if isinstance(truncated, bool) else None,
        empty=record.get("empty") is True or (not isinstance(record.get("empty"), bool) and not completion_text.strip()),
        cut=bool(cut) if isinstance(cut, (list, tuple)) else False,
        prompt_chars=chars[0] if chars[0] is not None and chars[0] >= 0 else len(prompt_text),
        completion_chars=chars[1] if chars[1] is not None and chars[1] >= 0 else len(completion_text),
    )
