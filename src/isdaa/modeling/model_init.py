"""`model.init`: a random-init Llama described by LlamaConfig keyword arguments (tests, the lab, tiny runs).

`llama_config(init)` checks every key against LlamaConfig's (did you mean; a key with a `:` is a missing space
after a YAML colon), coerces every value to LlamaConfig's type for it (`--model.init.hidden_size 64` arrives as
a number or a string) and builds the config: keys not given keep LlamaConfig's defaults (a 7B-size Llama).
`check_model_fits(config)` counts its parameters from the config (embeddings, layers, head) and refuses, before
anything is allocated, a model whose weights, gradients and AdamW state cannot fit where it trains (the GPU's
memory under CUDA, else the available RAM) or whose float32 weights cannot be built in RAM.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import os
import typing
from pathlib import Path

import torch
from transformers import LlamaConfig

from isdaa.config.loader import coerce
from isdaa.errors import InputError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# what one parameter of a trained model holds at least: its weight, its gradient and AdamW's two moments
TRAINING_COPIES = 4
# LlamaConfig keys that transformers still reads although they are not fields of it (converted on the way in)
LEGACY_INIT_KEYS = {"rope_theta", "rope_scaling", "torch_dtype", "attn_implementation", "_attn_implementation",
                    "num_labels"}
# the keys that set a Llama's size (named with their defaults when a model too big left them out)
SIZE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers")


@functools.cache
def init_keys() -> frozenset[str]:
    """The keys `model.init` accepts: LlamaConfig's fields and keyword arguments (and a few legacy ones)."""
    fields = {f.name for f in dataclasses.fields(LlamaConfig)}
    arguments = set(inspect.signature(LlamaConfig.__init__).parameters) - {"self", "args", "kwargs"}
    return frozenset(fields | arguments | set(LlamaConfig.attribute_map) | LEGACY_INIT_KEYS)


def _unknown_init_key(key) -> InputError:
    """The error of a `model.init` key LlamaConfig does not have; a `:` in it is a missing space after a colon."""
    key = str(key)
    if ":" in key:
        name, value = key.split(":", 1)
        return InputError(
            f"option model.init: unknown LlamaConfig key '{key}': YAML reads '{key}' as one key because the "
            f"space after ':' is missing; write {{{name}: {value}}}")
    close = difflib.get_close_matches(key, sorted(init_keys()), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return InputError(f"option model.init: unknown LlamaConfig key '{key}'{hint}")


def _is_instance(value, base) -> bool:
    try:
        return isinstance(value, base)
    except TypeError:  # a TypedDict (RopeParameters) refuses instance checks; a dict member follows it
        return False


def _init_value(key: str, value, annotation):
    """`value` coerced to LlamaConfig's annotation of `key` (`int | None`, `int | list[int] | None`, ...): the
    first member of the annotation it is already an instance of, else the first it converts to."""
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, type(int | None)) else (
        annotation,)
    if not all(isinstance(m, type) or typing.get_origin(m) for m in members):
        return value  # a forward reference (a field of transformers' base class): transformers checks it
    if value is None and type(None) in members:
        return None
    concrete = [m for m in members if m is not type(None)]
    for member in concrete:
        base = typing.get_origin(member) or member
        if _is_instance(value, base) and not (isinstance(value, bool) and base is not bool):
            return float(value) if base is float else value
    for member in concrete:
        try:
            return coerce(value, member, f"model.init.{key}")
        except (InputError, TypeError):
            continue
    expected = " or ".join(getattr(m, "__name__", str(m)) for m in concrete)
    raise InputError(f"option model.init.{key}: expected {expected}, got {value!r}")


def llama_config(init: dict) -> LlamaConfig:
    """`LlamaConfig(**init)` with every key checked (did you mean) and every value coerced to its type, or
    InputError (transformers raises several exception types on bad values)."""
    annotations = {f.name: f.type for f in dataclasses.fields(LlamaConfig)}
    values = {}
    for key, value in init.items():
        if key not in init_keys():
            raise _unknown_init_key(key)
        values[key] = _init_value(key, value, annotations[key]) if key in annotations else value
    try:
        return LlamaConfig(**values)
    except Exception as exc:  # noqa: BLE001 - TypeError, ValueError, StrictDataclassClassValidationError, ...
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise InputError(f"option model.init: not a valid LlamaConfig ({lines[-1] if lines else type(exc).__name__})") from None


def parameter_count(config: LlamaConfig) -> int:
    """The parameters of `LlamaForCausalLM(config)`, counted from the config: the embeddings, every decoder layer
    (attention, MLP, two norms), the final norm and the LM head (none when tied to the embeddings)."""
    hidden, heads = config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = config.num_key_value_heads or heads
    q, kv = heads * head_dim, kv_heads * head_dim
    attention = hidden * (q + 2 * kv) + q * hidden + (q + 2 * kv + hidden if config.attention_bias else 0)
    mlp = 3 * hidden * config.intermediate_size + (2 * config.intermediate_size + hidden if config.mlp_bias else 0)
    layer = attention + mlp + 2 * hidden
    embeddings = config.vocab_size * hidden
    head = 0 if config.tie_word_embeddings else config.vocab_size * hidden
    return embeddings + config.num_hidden_layers * layer + hidden + head


def training_bytes(config: LlamaConfig, dtype: str) -> int:
    """The least memory training `config` in `dtype` takes: weights, gradients and AdamW's two moments (no
    activations, no reference copy)."""
    return parameter_count(config) * DTYPE_BYTES[dtype] * TRAINING_COPIES


def size_text(n_bytes: float) -> str:
    """`n_bytes` as "1.4 MB" or "103.6 GB"."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def _cgroup_memory_left() -> int | None:
    """What the cgroup (v2) memory limit leaves to this process's group, or None without a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


def available_ram() -> int | None:
    """The memory a new allocation can take now: /proc/meminfo's MemAvailable (else the free pages), capped by a
    cgroup limit; None where neither can be read."""
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                ram = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if ram is None and hasattr(os, "sysconf"):
        try:
            ram = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            pass
    known = [x for x in (ram, _cgroup_memory_left()) if x is not None]
    return min(known) if known else None


def training_memory() -> tuple[int | None, str]:
    """(bytes, what they are) where the model trains: this process's GPU's memory under CUDA, else available RAM."""
    if torch.cuda.is_available():
        index = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        return torch.cuda.get_device_properties(index).total_memory, f"the memory of cuda:{index}"
    return available_ram(), "the available RAM"


def check_model_fits(config: LlamaConfig, dtype: str = "float32", given=SIZE_KEYS) -> int:
    """The parameter count of `config`; InputError, before anything is allocated, when the model cannot fit: its
    weights, gradients and AdamW state (`training_bytes`) in the memory it trains in, or its float32 weights
    (built on the CPU first) in the available RAM. `given`: the keys the user set (the others are named as
    LlamaConfig's defaults in the error)."""
    count = parameter_count(config)
    needs = [(training_bytes(config, dtype), f"its {dtype} weights, gradients and AdamW state", training_memory()),
             (count * 4, "its float32 weights (built on the CPU)", (available_ram(), "the available RAM"))]
    defaults = ", ".join(f"{k}={getattr(config, k)}" for k in SIZE_KEYS if k not in given)
    defaults = f"; not set, so LlamaConfig's defaults: {defaults}" if defaults else ""
    for need, what, (have, where) in needs:
        if have is not None and need > have:
            raise InputError(
                f"option model.init: a Llama of {count:,} parameters needs at least {size_text(need)} for {what}, more "
                f"than {where} ({size_text(have)}); make it smaller ({', '.join(SIZE_KEYS)}){defaults}")
    return count
