"""One dataclass tree for train / eval / lab, loaded from YAML with dotted command-line overrides.

`load_config(TrainConfig, path, overrides)` reads a YAML file with a safe loader, applies overrides such as
`objective.beta=0.01` or the short aliases (`--beta 0.01`, `--loss ipo`), checks every key against the
dataclasses (unknown keys get a "did you mean"), coerces and validates values, and raises `InputError`
with one line on any problem. No config value is ever evaluated as code.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from isdaa.errors import InputError


@dataclass
class ModelConfig:
    """Where the policy comes from. Exactly one of `name_or_path` and `init` must be set."""

    name_or_path: str | None = None  # a local model directory (from_pretrained) or a .gguf file
    init: dict | None = None  # LlamaConfig keyword arguments: random init (tests, the lab)
    tokenizer: str | None = None  # a tokenizer directory; defaults to name_or_path
    dtype: str = "float32"  # float32 | bfloat16 | float16 (log-probs and weights stay fp32)
    trust_remote_code: bool = False  # off unless you trust the model's code
    gradient_checkpointing: bool = False
    disable_dropout: bool = True
    pad_token: str | None = None  # set when the tokenizer has no pad token (e.g. "<|endoftext|>")


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class DataConfig:
    train_file: str | None = None  # .jsonl / .json / .parquet / a datasets directory
    eval_file: str | None = None  # held-out pairs for preference accuracy
    max_length: int = 1024
    max_prompt_length: int = 512
    extra_columns: list = field(default_factory=list)  # other columns to ignore instead of rejecting


@dataclass
class ObjectiveConfig:
    loss: str = "sigmoid"  # sigmoid | ipo | hinge | simpo | chipo | rdpo | dpop
    beta: float = 0.1
    weighting: str = "none"  # none | is | is_token_mean | is_two_sided | is_self_norm | wpo
    is_eps: float = 1.0  # IS clip: w <= exp(2*eps)
    sft_eta: float = 0.0  # RPO: + eta * beta * (-log pi(y_w|x))
    sft_token_mean: bool = False
    label_smoothing: float = 0.0  # sigmoid only
    hparams: dict = field(default_factory=dict)  # loss-specific: gamma (simpo), alpha (rdpo), lam (dpop), ...


@dataclass
class OptimConfig:
    lr: float = 1e-6
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    scheduler: str = "cosine"  # cosine | constant | linear (transformers' schedulers)
    warmup_ratio: float = 0.0
    min_lr_ratio: float = 0.1  # cosine floor, as in the paper (min 0.1 * lr)
    max_grad_norm: float = 1.0  # 0 disables clipping


@dataclass
class TrainConfig:
    output_dir: str = "runs/isdaa"
    seed: int = 0
    epochs: float = 1.0
    max_steps: int = 0  # > 0 overrides epochs
    batch_size: int = 8  # pairs per device per micro-step
    grad_accum: int = 1
    eval_batch_size: int = 16
    log_every: int = 1
    eval_every: int = 0  # 0: only at the end
    save_every: int = 0  # 0: no intermediate checkpoints
    keep_last: int = 2
    resume: str = "auto"  # auto (latest valid checkpoint if any) | never | a checkpoint path
    overwrite: bool = False  # allow a non-empty output_dir that holds no run to resume
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate)
    precompute_ref: bool = True  # reference log-probs once before training, cached on disk
    ref_cache_dir: str | None = None  # default: <output_dir>/ref-cache
    # run each prompt once, its KV cache shared by the chosen and rejected completions (same log-probs and
    # gradients up to float rounding); used when prompts average >= 64 tokens and gradient checkpointing is off
    prompt_sharing: bool = True
    max_bad_steps: int = 5  # stop after this many consecutive non-finite steps
    trackers: list = field(default_factory=list)  # accelerate trackers: tensorboard, wandb, ...
    progress: bool = True
    num_threads: int = 0  # torch CPU threads; 0 = min(cores, 2 per process)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class EvalConfig:
    policy: str | None = None  # model directory
    reference: str | None = None  # model directory (KL is measured against it)
    prompts: str | None = None  # a preference-data file (its chosen responses are the baseline) or a prompt file
    scorer: str = "none"  # a registered scorer name, or module:function (runs your code: opt-in)
    output: str | None = None  # results JSON path
    n_samples: int = 2  # completions per prompt
    max_prompts: int = 256
    max_new_tokens: int = 64
    temperature: float = 1.0  # KL is estimated at T=1 without top-p; other settings bias it
    top_p: float = 1.0
    batch_size: int = 16
    seed: int = 0
    baseline: str = "chosen"  # chosen | reference | none (win rate against ...)
    max_prompt_length: int = 512
    num_threads: int = 0
    dtype: str = "float32"  # eval: weights of models loaded from paths (float32 | bfloat16 | float16); log-probs stay fp32
    device: str = "auto"  # eval: where models loaded from paths run: auto (cuda when available) | cpu | cuda | cuda:N
    progress: bool = True  # eval: tqdm progress bars


# Short flags accepted on the command line (DESIGN.md): --beta 0.01 == --objective.beta 0.01
ALIASES = {
    "loss": "objective.loss",
    "beta": "objective.beta",
    "weighting": "objective.weighting",
    "is_eps": "objective.is_eps",
    "sft_eta": "objective.sft_eta",
    "lr": "optim.lr",
    "model": "model.name_or_path",
    "train_file": "data.train_file",
    "eval_file": "data.eval_file",
    "max_length": "data.max_length",
    "max_prompt_length": "data.max_prompt_length",
    "lora": "lora.enabled",
}


def _positive(name):
    return lambda v: v > 0 or f"{name} must be > 0, got {v}"


def _trackers(v):
    from accelerate.utils import LoggerType  # the names accelerate's log_with accepts

    known = [t.value for t in LoggerType]
    bad = [t for t in v if t not in known]
    if not bad:
        return True
    close = difflib.get_close_matches(str(bad[0]), known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"trackers: unknown tracker {bad[0]!r}{hint}; expected some of {', '.join(known)}"


CHECKS: dict[str, typing.Callable[[Any], Any]] = {
    "objective.beta": _positive("objective.beta"),
    "objective.is_eps": _positive("objective.is_eps"),
    "objective.sft_eta": lambda v: v >= 0 or f"objective.sft_eta must be >= 0, got {v}",
    "objective.label_smoothing": lambda v: 0 <= v < 0.5 or f"objective.label_smoothing must be in [0, 0.5), got {v}",
    "optim.lr": _positive("optim.lr"),
    "optim.warmup_ratio": lambda v: 0 <= v < 1 or f"optim.warmup_ratio must be in [0, 1), got {v}",
    "optim.min_lr_ratio": lambda v: 0 <= v <= 1 or f"optim.min_lr_ratio must be in [0, 1], got {v}",
    "optim.max_grad_norm": lambda v: v >= 0 or f"optim.max_grad_norm must be >= 0, got {v}",
    "optim.scheduler": lambda v: v in ("cosine", "constant", "linear") or f"optim.scheduler must be cosine, constant or linear, got {v!r}",
    "batch_size": _positive("batch_size"),
    "eval_batch_size": _positive("eval_batch_size"),
    "grad_accum": _positive("grad_accum"),
    "epochs": _positive("epochs"),
    "max_steps": lambda v: v >= 0 or f"max_steps must be >= 0, got {v}",
    "keep_last": _positive("keep_last"),
    "max_bad_steps": _positive("max_bad_steps"),
    "mixed_precision": lambda v: v in ("no", "bf16", "fp16") or f"mixed_precision must be no, bf16 or fp16, got {v!r}",
    "trackers": _trackers,
    "model.dtype": lambda v: v in ("float32", "bfloat16", "float16") or f"model.dtype must be float32, bfloat16 or float16, got {v!r}",
    "data.max_length": _positive("data.max_length"),
    "data.max_prompt_length": _positive("data.max_prompt_length"),
    "n_samples": _positive("n_samples"),
    "max_new_tokens": _positive("max_new_tokens"),
    "temperature": _positive("temperature"),
    "top_p": lambda v: 0 < v <= 1 or f"top_p must be in (0, 1], got {v}",
}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value, tp, key):
    """Coerce a YAML/CLI value to the annotated type, or raise InputError naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            return None
        return _coerce(value, args[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise InputError(f"option {key}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise InputError(f"option {key}: expected a number, got {value!r}")
        try:
            out = tp(value) if tp is float else int(str(value), 10) if isinstance(value, str) else value
        except (TypeError, ValueError):
            raise InputError(f"option {key}: expected {_type_name(tp)}, got {value!r}") from None
        if tp is int and (not isinstance(out, int) or isinstance(out, float)):
            if isinstance(out, float) and out.is_integer():
                return int(out)
            raise InputError(f"option {key}: expected an integer, got {value!r}")
        if tp is float and not math.isfinite(out):
            raise InputError(f"option {key}: expected a finite number, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, (dict, list)):
            raise InputError(f"option {key}: expected a string, got {value!r}")
        return str(value)
    if tp in (list, dict) or origin in (list, dict):
        base = origin or tp
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                pass
            if base is list and isinstance(value, str):
                value = [v for v in value.split(",") if v]
        if not isinstance(value, base):
            raise InputError(f"option {key}: expected a {base.__name__}, got {value!r}")
        return value
    raise InputError(f"option {key}: unsupported type")  # pragma: no cover


def _hints(cls):
    return typing.get_type_hints(cls)


def _unknown(key: str, choices) -> InputError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, list(choices), n=1, cutoff=0.6)
    hint = f" (did you mean '{key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}'?)" if close else ""
    return InputError(f"unknown config key '{key}'{hint}")


def _build(cls, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        raise InputError(f"option {prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in hints:
            raise _unknown(full, hints)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
    obj = cls(**kwargs)
    return obj


def _validate(obj, prefix=""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        full = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _validate(value, f"{full}.")
        elif full in CHECKS and value is not None:
            ok = CHECKS[full](value)
            if ok is not True:
                raise InputError(f"option {ok}")


def _set_dotted(tree: dict, key: str, value) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
    """`["--objective.beta", "0.1", "--loss=ipo", "--lora"]` -> [("objective.beta", "0.1"), ...].

    A flag with no value (followed by another flag or nothing) means `true`."""
    pairs = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise InputError(f"unexpected argument {arg!r}: options look like --key value or --key=value")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
            i += 2
        else:
            value, i = "true", i + 1
        key = key.replace("-", "_")
        pairs.append((ALIASES.get(key, key), value))
    return pairs


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', None) or 'parse error'})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: expected a UTF-8 YAML file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def load_config(cls, path: str | Path | None = None, overrides: list[tuple[str, Any]] | dict | None = None):
    """Build `cls` (TrainConfig, EvalConfig, ...) from an optional YAML file plus dotted overrides."""
    tree = read_yaml(path) if path else {}
    items = overrides.items() if isinstance(overrides, dict) else (overrides or [])
    for key, value in items:
        _set_dotted(tree, key, value)
    try:
        obj = _build(cls, tree)
    except InputError as exc:
        raise InputError(f"{path}: {exc}" if path else str(exc)) from None
    _validate(obj)
    return obj


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def save_config(obj, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False), encoding="utf-8")


def describe(cls, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, type name, default) for every option: what `--help` prints."""
    rows = []
    defaults = cls()
    for f in dataclasses.fields(cls):
        value = getattr(defaults, f.name)
        tp = _hints(cls)[f.name]
        if dataclasses.is_dataclass(value):
            rows.extend(describe(type(value), f"{prefix}{f.name}."))
        else:
            rows.append((f"{prefix}{f.name}", _type_name(tp), value))
    return rows


# ------------------------------------------------------------------------------------------ the lab
# (isdaa.lab; `isdaa lab --config lab.yaml`, `isdaa demo`). Methods and regimes are lists of plain mappings,
# validated by isdaa.lab.sweep (each method's keys are ObjectiveConfig fields plus `label`).


@dataclass
class LabWorldConfig:
    """The controlled world (isdaa.lab.world): base distribution and gold reward parameters."""

    p_target: float = 0.3  # base: probability that a word is one of the prompt's 6 target words
    p_stop: float = 0.3  # base: stop probability after each word (length >= 1, mean ~ 1/p_stop)
    max_len: int = 16  # base: at most this many words
    rep_penalty: float = 0.5  # gold: cost of every extra copy of a target word
    len_penalty: float = 0.5  # gold: cost per word beyond len_free
    len_free: int = 12


@dataclass
class LabReferenceConfig:
    """The reference policy: a tiny Llama fitted to the base distribution by plain SFT."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    steps: int = 200
    batch_size: int = 256
    lr: float = 3e-3
    seed: int = 0


@dataclass
class LabPairsConfig:
    """Preference pairs: two reference samples per prompt, Bradley-Terry labels on the gold reward."""

    label_temperature: float = 0.5  # P(a > b) = sigmoid((r_a - r_b) / label_temperature)
    seed: int = 0  # pair seed s + training seed: every training seed gets its own pair set


@dataclass
class LabConfig:
    output_dir: str = "runs/lab"
    overwrite: bool = False  # allow a non-empty output_dir (its runs are replaced)
    world: LabWorldConfig = field(default_factory=LabWorldConfig)
    reference: LabReferenceConfig = field(default_factory=LabReferenceConfig)
    pairs: LabPairsConfig = field(default_factory=LabPairsConfig)
    methods: list = field(default_factory=list)  # [{label: DPO, loss: sigmoid}, ...]; empty = the default sweep
    regimes: list = field(default_factory=list)  # [{name, n_pairs, max_steps|epochs, lr, batch_size, eval_every}]
    betas: list = field(default_factory=lambda: [0.01, 0.05, 0.1])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    eval_samples: int = 32  # completions per held-out prompt at every evaluation (T = 1, no top-p)
    report_beta: float = 0.01  # the beta of the report's main table
    common_sqrt_kl: float = 0.0  # KL budget of the "gold at a common KL" column; 0 = smallest final sqrt(KL)
    workers: int = 2  # parallel training processes (one torch thread each); 1 = in this process
    keep_models: bool = False  # keep every run's final/ model (disk); off: deleted after evaluation
    progress: bool = True


@dataclass
class PairsConfig:
    """`isdaa pairs`: sample completions from a model, score them with a gold scorer, label pairs (isdaa.generation.pairs)."""

    prompts: str | None = None  # .txt (one prompt per line) or .jsonl/.json objects with a 'prompt' field
    out: str | None = None  # the .jsonl file to write (atomically)
    scorer: str = "vader"  # a registered scorer name, hf-rm:<dir>, or module:function (runs your code: opt-in)
    chat: bool = False  # string prompts become one user message rendered with the chat template; rows conversational
    n_per_prompt: int = 2  # completions per prompt; consecutive disjoint pairs (0,1), (2,3), ...
    label: str = "bt"  # bt (Bradley-Terry draw) | argmax (higher score chosen; ties left out)
    bt_temperature: float = 1.0  # P(a chosen) = sigmoid((s_a - s_b) / bt_temperature)
    max_new_tokens: int = 64
    temperature: float = 1.0  # sampling temperature of the behaviour model
    top_p: float = 1.0
    max_prompts: int = 0  # 0 = every prompt in the file
    batch_size: int = 16
    seed: int = 0
    with_scores: bool = False  # add score_chosen / score_rejected columns (train with data.extra_columns)
    stats_out: str | None = None  # also write counts and score summaries as JSON here
    num_threads: int = 0  # torch CPU threads; 0 = min(cores, 2)
    progress: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)  # the behaviour policy (--model DIR)

