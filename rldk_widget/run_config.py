"""A run's configuration: what identifies it in a sweep, from the trainer while it trains, from the plain JSON a
Hugging Face output folder holds, or from a folder name that encodes parameters.

Three sources, best first:

1. `capture_run_config(args, state, model, ...)`, called by `RLDKCallback.on_train_begin` into the run info
   (`{run_id}_run_info.json`, key "config"): the training arguments that differ from a default instance of the
   arguments' own class (and the absolute path of their output_dir, "output_path"), the model's name or path, the trainer and arguments classes, the TRL / transformers /
   torch versions and the world size. JSON-safe values only; secrets (any key with a `token`, `secret`,
   `password`, `credential` or `api_key` part, hub tokens among them) are never written, and token-like or
   credential-carrying strings are replaced by "<redacted>". It never raises and costs well under a millisecond.
2. `read_folder_config(fs, folder, entries)`: for a folder without our files, the plain JSON files there — a
   model `config.json` (model type, architecture, dtype, name or path), a PEFT `adapter_config.json`, and the
   end-of-training `train_results.json` / `all_results.json` (runtime: the run finished). `trainer_state_config`
   takes the fields of a `trainer_state.json` the reader already parsed (planned steps, batch size, and the
   hyper-parameter-search trial's parameters). Nothing is ever unpickled: `training_args.bin` (a pickle, which
   runs code when loaded) is never opened.
3. `parse_name_params(name)`: parameters encoded in folder or run names (grammar below), used only when no
   training arguments were recorded.

`flatten_config` turns the nested configuration into the flat keys a runs table shows as columns
("args.learning_rate", "model", "versions.trl", "name.seed", ...).

Folder-name grammar (conservative: a name that does not match yields nothing rather than a guess):

- A name is split into fields at `,`, `;` and white space. A field holding `=` is `key=value[_key=value...]`:
  each key starts with a letter and may hold letters, digits, `_`, `.`, `-` (a leading `+` or `~`, as Hydra
  writes overrides, is dropped); a value that reads as a number ends at the first `_` after it, another value
  runs to the last `_` before the next key (`lr=1e-5_num_generations=8` → lr, num_generations;
  `optim=adamw_torch_lr=1e-5` → optim="adamw_torch", lr); after the last number, `_`-separated tokens read as
  below (`beta=0.04_s0` → beta, s).
- A field without `=` is split into tokens at `_`. A token of letters followed by a token that is a number is
  one pair (`lr_1e-5` → lr=1e-05, `seed_3`). A single token `<key><number>` or `<key>-<number>` is a pair only
  for the well-known short keys of `ATTACHED_KEYS` (`s0`, `seed-3`, `lr1e-5`, `beta0.04`, `bs32`), so that
  `llama3`, `gpt2` or `v2` are not read as parameters. Other tokens are ignored.
- Numbers: `[-+]?digits[.digits][e[-+]digits]` (an int when it has no `.` or exponent); `true` / `false`
  are booleans; other values are text. A key that appears twice with different values is dropped.
- `parse_path_params` applies this to every component of a run's relative path (the run's own name last) and
  merges them; a key that two components give different values is dropped.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.metadata
import json
import logging
import math
import os
import re
import sys
import warnings
from typing import Any, Iterable, Mapping

from . import formats
from .fs import FileStat, FileSystem, describe_error

logger = logging.getLogger(__name__)

VERSIONED_PACKAGES = ("trl", "transformers", "torch")
SECRET_PARTS = frozenset({"token", "secret", "secrets", "password", "passwd", "credential", "credentials", "apikey"})
"""A key is secret when one of its `_`-separated parts (lower case) is one of these, or it ends in `api_key` or
`_key_id` — except the names of a tokenizer's special tokens (`eos_token`, `pad_token`, ...), which are text."""
_SPECIAL_TOKEN_KEY = re.compile(r"(eos|pad|bos|unk|sep|cls|mask|image|video|audio|start|end|chat)_token")
_REDACTED = "<redacted>"
_SECRET_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}|\b(?:sk|ghp|gho|xox[bp])[-_][A-Za-z0-9_-]{16,}|://[^/\s:@]+:[^/\s@]+@")
"""Strings that carry a credential: Hugging Face / OpenAI / GitHub / Slack tokens, URLs with user:password@."""
MAX_TEXT = 500
MAX_ITEMS = 64
MAX_DEPTH = 4
MAX_ARGS = 300
HARDWARE_FIELDS = ("use_cpu", "bf16", "fp16", "tf32", "no_cuda", "use_mps_device")
"""Fields a default instance may need from the run to be constructible at all (TRL configs default to bf16, which a
CPU-only machine refuses); their own non-default values are judged against the class's declared defaults."""
IDENTITY_KEYS = frozenset(
    {"output_path", "args.output_dir", "args.logging_dir", "args.run_name", "args.hub_model_id", "state.best_model_checkpoint",
     "state.trial_name"}
)
"""Configuration keys that name a run rather than configure it: left out of `differing_keys` by default."""
FOLDER_JSON_MAX_BYTES = 1 << 20
CONFIG_FILE = "config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
RESULTS_FILES = ("train_results.json", "all_results.json")
FOLDER_CONFIG_FILES = (CONFIG_FILE, ADAPTER_CONFIG_FILE, *RESULTS_FILES)
"""The plain JSON files `read_folder_config` reads (and a cache signature of a folder's configuration covers)."""
NEVER_READ = frozenset({"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "pytorch_model.bin"})
"""Pickles a Hugging Face output folder holds: loading one runs whatever code it names. Never opened here."""
STATE_FIELDS = ("max_steps", "num_train_epochs", "train_batch_size", "logging_steps", "eval_steps", "save_steps")


# ---- values ----------------------------------------------------------------------------------------------------
def is_secret_key(key: Any) -> bool:
    lowered = str(key).lower()
    if _SPECIAL_TOKEN_KEY.fullmatch(lowered):
        return False
    parts = re.split(r"[_\-.\s]+", lowered)
    return bool(SECRET_PARTS.intersection(parts)) or lowered.endswith(("api_key", "apikey", "_key_id"))


def json_value(value: Any, depth: int = 0) -> tuple[bool, Any]:
    """`(True, value)` as JSON can hold it (enums by value, tuples as lists, sets as sorted lists, non-finite floats as "nan" / "inf" /
    "-inf", long text cut, secret keys of mappings dropped, credential-like text redacted), `(False, None)` for
    anything else (objects, callables, tensors)."""
    if value is None or isinstance(value, bool):
        return True, value
    if isinstance(value, enum.Enum):
        return json_value(value.value, depth)
    if isinstance(value, int):
        return True, value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return True, value if math.isfinite(value) else ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf")
    if isinstance(value, str):
        text = _SECRET_VALUE.sub(_REDACTED, value) if _SECRET_VALUE.search(value) else value
        return True, text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
    if depth >= MAX_DEPTH:
        return False, None
    if isinstance(value, (set, frozenset)):
        return json_value(sorted(value, key=str), depth)
    if isinstance(value, (list, tuple)):
        items = []
        for item in list(value)[:MAX_ITEMS]:
            ok, converted = json_value(item, depth + 1)
            if ok:
                items.append(converted)
        return True, items
    if isinstance(value, Mapping):
        out = {}
        for key, item in list(value.items())[:MAX_ITEMS]:
            if not isinstance(key, str) or is_secret_key(key):
                continue
            ok, converted = json_value(item, depth + 1)
            if ok:
                out[key] = converted
        return True, out
    number = getattr(value, "item", None)  # numpy / torch scalars
    if callable(number) and getattr(value, "ndim", None) == 0:
        try:
            return json_value(number(), depth)
        except Exception:  # noqa: BLE001 - not a scalar after all
            return False, None
    return False, None


# ---- the training arguments ------------------------------------------------------------------------------------
def _as_dict(args: Any) -> dict[str, Any]:
    to_dict = getattr(args, "to_dict", None)
    if callable(to_dict):
        values = to_dict()
        if isinstance(values, dict):
            return values
    if dataclasses.is_dataclass(args):
        return {f.name: getattr(args, f.name, None) for f in dataclasses.fields(args)}
    return dict(vars(args))


def _declared_defaults(cls: type) -> dict[str, Any]:
    """The defaults a dataclass declares (no __post_init__)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            try:
                out[f.name] = f.default_factory()  # type: ignore[misc]
            except Exception:  # noqa: BLE001
                continue
    return out


def _isolated(cls: type, args: Any) -> type:
    """`cls`, or for a TrainingArguments class a subclass whose device set-up reuses the running one's: building an
    instance of `TrainingArguments` sets up devices, which resets accelerate's shared state — in the middle of
    training, that breaks the trainer (seen with transformers 5.24: "AcceleratorState has no attribute
    distributed_type")."""
    setup = cls.__dict__.get("_setup_devices") or next(
        (base.__dict__["_setup_devices"] for base in cls.__mro__ if "_setup_devices" in base.__dict__), None
    )
    if not isinstance(setup, functools.cached_property):
        return cls
    device = vars(args).get("_setup_devices")
    state = vars(args).get("distributed_state")
    n_gpu = vars(args).get("_n_gpu", 0)

    def _setup_devices(self: Any) -> Any:
        self.distributed_state = state
        self._n_gpu = n_gpu
        pop = getattr(getattr(self, "accelerator_config", None), "pop", None)
        if callable(pop):  # as the real set-up does, so that both configs compare equal
            pop("use_configured_state", False)
        if device is not None:
            return device
        import torch

        return torch.device("cpu")

    return type(cls.__name__, (cls,), {"_setup_devices": functools.cached_property(_setup_devices),
                                       "__module__": cls.__module__, "__qualname__": cls.__qualname__})


def _default_instance(args: Any) -> tuple[Any | None, tuple[str, ...]]:
    """A default instance of `type(args)` (built without touching the running devices) and the fields copied from
    `args` to make it constructible."""
    cls = _isolated(type(args), args)
    with warnings.catch_warnings():  # (logging is left alone: __post_init__ reads its level, e.g. disable_tqdm)
        warnings.simplefilter("ignore")
        try:
            return cls(), ()
        except Exception:  # noqa: BLE001 - e.g. bf16 on a CPU-only machine
            pass
        copied = tuple(name for name in HARDWARE_FIELDS if hasattr(args, name))
        try:
            return cls(**{name: getattr(args, name) for name in copied}), copied
        except Exception:  # noqa: BLE001
            return None, ()


def training_args_diff(args: Any) -> dict[str, Any]:
    """The arguments of `args` (a TrainingArguments / TRL config, or any dataclass) whose values differ from a
    default instance of the same class, JSON-safe, without secrets or private fields."""
    current = _as_dict(args)
    default, copied = _default_instance(args) if dataclasses.is_dataclass(args) else (None, ())
    if default is not None:
        reference = _as_dict(default)
        declared = _declared_defaults(type(args)) if copied else {}
        for name in copied:
            ok, value = json_value(declared.get(name))
            reference[name] = value if ok else None
    elif dataclasses.is_dataclass(args):
        reference = _declared_defaults(type(args))
    else:
        reference = {}
    out: dict[str, Any] = {}
    for key, value in current.items():
        if not isinstance(key, str) or key.startswith("_") or is_secret_key(key):
            continue
        ok, converted = json_value(value)
        if not ok:
            continue
        if key in reference:
            known, default_value = json_value(reference[key])
            if known and default_value == converted:
                continue
        out[key] = converted
        if len(out) >= MAX_ARGS:
            break
    return out


# ---- the rest of what identifies a run --------------------------------------------------------------------------
def package_versions(names: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Versions of the packages (loaded modules first, else the installed distribution)."""
    versions = {}
    for name in names:
        version = getattr(sys.modules.get(name), "__version__", None)
        if not isinstance(version, str):
            try:
                version = importlib.metadata.version(name)
            except Exception:  # noqa: BLE001 - not installed
                continue
        versions[name] = version
    return versions


def calling_trainer(max_frames: int = 16) -> Any | None:
    """The `transformers.Trainer` whose code is on the call stack (callbacks are not given the trainer), or None."""
    trainer_module = sys.modules.get("transformers.trainer")
    trainer_class = getattr(trainer_module, "Trainer", None)
    if not isinstance(trainer_class, type):
        return None
    frame = sys._getframe(1)
    for _ in range(max_frames):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_argcount and code.co_varnames[0] == "self":
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, trainer_class):
                return candidate
        frame = frame.f_back
    return None


def model_config(model: Any) -> dict[str, Any]:
    """Name or path, type, class and dtype of a model (a PEFT model: its base model, plus the adapter's settings)."""
    out: dict[str, Any] = {}
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    if isinstance(name, str) and name:
        out["model"] = json_value(name)[1]
    if isinstance(getattr(config, "model_type", None), str):
        out["model_type"] = config.model_type
    out["model_class"] = type(model).__name__
    dtype = getattr(model, "dtype", None)
    if dtype is not None:
        out["dtype"] = str(dtype).removeprefix("torch.")
    peft = getattr(model, "peft_config", None)
    if isinstance(peft, Mapping) and peft:
        adapter = next(iter(peft.values()))
        settings = {}
        for key in ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "base_model_name_or_path"):
            ok, value = json_value(getattr(adapter, key, None))
            if ok and value is not None:
                settings[key] = sorted(value) if key == "target_modules" and isinstance(value, list) else value
        if settings:
            out["peft"] = settings
    return out


def capture_run_config(
    args: Any, state: Any = None, model: Any = None, processing_class: Any = None, trainer: Any = None
) -> dict[str, Any]:
    """What identifies a run, for its run info (see the module docstring). Never raises: a part that fails is left
    out and named in "capture_errors"."""
    config: dict[str, Any] = {}
    errors: list[str] = []

    def part(name: str, fn: Any) -> None:
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - training goes on; the run info says what is missing
            errors.append(f"{name}: {type(err).__name__}: {err}"[:200])

    def trainer_part() -> None:
        found = trainer if trainer is not None else calling_trainer()
        if found is not None:
            config["trainer_class"] = type(found).__name__
            names = getattr(found, "reward_func_names", None)
            if isinstance(names, (list, tuple)) and names:
                config["reward_funcs"] = json_value([str(n) for n in names])[1]

    def args_part() -> None:
        config["args_class"] = type(args).__name__
        config["args"] = training_args_diff(args)
        output_dir = getattr(args, "output_dir", None)
        if isinstance(output_dir, str) and output_dir and "://" not in output_dir:
            config["output_path"] = json_value(os.path.abspath(output_dir))[1]

    def world_part() -> None:
        size = getattr(args, "world_size", None)
        if isinstance(size, int):
            config["world_size"] = size

    def model_part() -> None:
        if model is not None:
            config.update(model_config(model))
        tokenizer = getattr(processing_class, "name_or_path", None)
        if isinstance(tokenizer, str) and tokenizer and tokenizer != config.get("model"):
            config["tokenizer"] = json_value(tokenizer)[1]

    def state_part() -> None:
        trial = getattr(state, "trial_params", None)
        if isinstance(trial, Mapping) and trial:
            config["trial"] = json_value(dict(trial))[1]

    part("trainer", trainer_part)
    part("args", args_part)
    part("world_size", world_part)
    part("model", model_part)
    part("state", state_part)
    part("versions", lambda: config.__setitem__("versions", package_versions()))
    if errors:
        config["capture_errors"] = errors
    return config


# ---- folders without our files -----------------------------------------------------------------------------------
def trainer_state_config(state_fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """The configuration a trainer_state.json gives (its fields other than log_history): planned steps, epochs,
    batch size, logging / eval / save intervals, and a hyper-parameter search trial's parameters."""
    if not isinstance(state_fields, Mapping):
        return {}
    out: dict[str, Any] = {}
    state = {}
    for key in STATE_FIELDS:
        value = state_fields.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            state[key] = json_value(value)[1]
    if state:
        out["state"] = state
    trial = state_fields.get("trial_params")
    if isinstance(trial, Mapping) and trial:
        out["trial"] = json_value(dict(trial))[1]
    return out


def _read_json(fs: FileSystem, path: str, problems: list[str], label: str) -> Any:
    try:
        info, data = fs.read(path, 0, FOLDER_JSON_MAX_BYTES + 1)
        if info.size > FOLDER_JSON_MAX_BYTES:
            problems.append(f"{label}: larger than {FOLDER_JSON_MAX_BYTES >> 20} MiB, not read")
            return None
        return formats.loads(data)
    except FileNotFoundError:
        return None
    except OSError as err:
        problems.append(f"{label}: cannot read ({describe_error(err)})")
    except ValueError as err:
        problems.append(f"{label}: unreadable ({err})")
    return None


def read_folder_config(
    fs: FileSystem, folder: str, entries: Mapping[str, FileStat], label: str = ""
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(configuration, end-of-training results, problems) from the plain JSON files of a Hugging Face output folder
    (`entries`: its listing). A model config.json of the folder, else of its newest checkpoint; adapter_config.json
    likewise; train_results.json / all_results.json (the results say the run finished and how long it took).
    Pickles (`NEVER_READ`) are never opened."""
    problems: list[str] = []
    config: dict[str, Any] = {}
    prefix = f"{label}/" if label else ""
    checkpoints = sorted(
        (int(name.split("-", 1)[1]), name)
        for name, entry in entries.items()
        if entry.kind == "directory" and re.fullmatch(r"checkpoint-\d{1,18}", name)
    )

    def find(name: str) -> str | None:
        if name in entries and entries[name].kind == "file":
            return f"{folder}/{name}"
        if checkpoints:
            return f"{folder}/{checkpoints[-1][1]}/{name}"
        return None

    path = find(CONFIG_FILE)
    model = _read_json(fs, path, problems, prefix + CONFIG_FILE) if path else None
    if isinstance(model, Mapping):
        name = model.get("_name_or_path")
        if isinstance(name, str) and name:
            config["model"] = json_value(name)[1]
        if isinstance(model.get("model_type"), str):
            config["model_type"] = json_value(model["model_type"])[1]
        architectures = model.get("architectures")
        if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
            config["model_class"] = json_value(architectures[0])[1]
        dtype = model.get("dtype", model.get("torch_dtype"))
        if isinstance(dtype, str):
            config["dtype"] = json_value(dtype)[1]
    path = find(ADAPTER_CONFIG_FILE)
    adapter = _read_json(fs, path, problems, prefix + ADAPTER_CONFIG_FILE) if path else None
    if isinstance(adapter, Mapping):
        base = adapter.get("base_model_name_or_path")
        if isinstance(base, str) and base:
            config["model"] = json_value(base)[1]
        peft = {}
        for key in ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules"):
            ok, value = json_value(adapter.get(key))
            if ok and value is not None:
                peft[key] = sorted(map(str, value)) if isinstance(value, list) else value
        if peft:
            config["peft"] = peft
    results: dict[str, Any] = {}
    for name in RESULTS_FILES:
        if name in entries and entries[name].kind == "file":
            values = _read_json(fs, f"{folder}/{name}", problems, prefix + name)
            if isinstance(values, Mapping):
                for key, value in values.items():
                    if isinstance(key, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
                        results.setdefault(key, value)
    return config, results, problems


# ---- names -------------------------------------------------------------------------------------------------------
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
ATTACHED_KEYS = frozenset(
    {"s", "seed", "lr", "beta", "b", "bs", "ep", "epoch", "epochs", "wd", "kl", "temp", "t", "g", "gen", "ng", "k",
     "n", "r", "rank", "alpha", "warmup", "steps", "gamma", "eps", "clip", "tau", "lam", "lambda", "dropout", "gas",
     "mbs", "gbs", "rw", "w"}
)
_ATTACHED = re.compile(r"(?P<key>[A-Za-z]+)-?(?P<value>\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")
_KEY = re.compile(r"[+~]?([A-Za-z][A-Za-z0-9_.\-]*)")


def _typed(text: str) -> Any:
    if _NUMBER_RE.fullmatch(text):
        if re.fullmatch(r"[-+]?\d+", text):
            number = int(text)
            return number if abs(number) < 2**53 else float(number)
        value = float(text)
        return value if math.isfinite(value) else text
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def _assignment_pairs(field: str) -> list[tuple[str, Any]] | None:
    """`key=value[_key=value...]` (see the module docstring), or None if the field does not read that way."""
    pieces = field.split("=")
    if any(not piece for piece in pieces):
        return None
    key_match = _KEY.fullmatch(pieces[0])
    if key_match is None:
        return None
    pairs: list[tuple[str, Any]] = []
    key = key_match.group(1)
    tail: list[tuple[str, Any]] = []
    for index, piece in enumerate(pieces[1:], start=1):
        last = index == len(pieces) - 1
        if last:
            value, next_key = piece, None
            head, _, rest = piece.partition("_")
            if rest and _NUMBER_RE.fullmatch(head):  # `beta=0.04_s0`: a number, then tokens
                value, tail = head, _token_pairs(rest)
        else:
            cuts = [m.start() for m in re.finditer("_", piece)]
            choice = None
            for cut in cuts:  # the leftmost split with a number before it, else the rightmost split
                if _NUMBER_RE.fullmatch(piece[:cut]) and _KEY.fullmatch(piece[cut + 1:]):
                    choice = cut
                    break
            if choice is None:
                choice = next((c for c in reversed(cuts) if _KEY.fullmatch(piece[c + 1:])), None)
            if choice is None:
                return None
            value, next_key = piece[:choice], _KEY.fullmatch(piece[choice + 1:]).group(1)  # type: ignore[union-attr]
        if not value or not re.fullmatch(r"[A-Za-z0-9_.+\-]+", value):
            return None
        pairs.append((key, _typed(value)))
        if next_key is not None:
            key = next_key
    return pairs + tail


def _token_pairs(field: str) -> list[tuple[str, Any]]:
    tokens = [t for t in field.split("_") if t]
    pairs: list[tuple[str, Any]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.isalpha() and following is not None and _NUMBER_RE.fullmatch(following):
            pairs.append((token, _typed(following)))
            index += 2
            continue
        attached = _ATTACHED.fullmatch(token)
        if attached and attached["key"].lower() in ATTACHED_KEYS:
            pairs.append((attached["key"], _typed(attached["value"])))
        index += 1
    return pairs


def parse_name_params(name: str) -> dict[str, Any]:
    """Parameters encoded in one folder or run name (grammar in the module docstring); {} when none."""
    fields = (field for field in re.split(r"[,;\s]+", name or "") if field)
    return _unambiguous(
        pair for field in fields for pair in (_assignment_pairs(field) if "=" in field else _token_pairs(field)) or ()
    )


def parse_path_params(components: Iterable[str]) -> dict[str, Any]:
    """`parse_name_params` of each component of a relative path, merged (a key given two values is dropped)."""
    return _unambiguous(pair for component in components for pair in parse_name_params(component).items())


def _unambiguous(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The (key, value) pairs as a dict, without the keys given two different values."""
    found: dict[str, Any] = {}
    dropped: set[str] = set()
    for key, value in pairs:
        if key in dropped:
            continue
        if key in found and found[key] != value:
            del found[key]
            dropped.add(key)
            continue
        found[key] = value
    return found


# ---- flat keys ---------------------------------------------------------------------------------------------------
MAX_FLAT_KEYS = 500
MAX_FLAT_DEPTH = 8


def flatten_config(config: Mapping[str, Any], prefix: str = "", _depth: int = 0, _out: dict | None = None) -> dict[str, Any]:
    """Nested configuration as flat dotted keys; lists become their compact JSON text (hashable, sortable). Bounded
    for what a file may hold: at most MAX_FLAT_KEYS keys, mappings nested deeper than MAX_FLAT_DEPTH left out."""
    flat: dict[str, Any] = {} if _out is None else _out
    for key, value in config.items():
        if len(flat) >= MAX_FLAT_KEYS:
            break
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value and _depth + 1 < MAX_FLAT_DEPTH:
                flatten_config(value, name + ".", _depth + 1, flat)
        elif isinstance(value, list):
            try:
                flat[name] = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
            except (TypeError, ValueError, RecursionError):
                flat[name] = "[…]"
        else:
            flat[name] = value
    return flat
