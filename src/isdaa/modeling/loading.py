"""Loading the policy, its tokenizer and the frozen reference.

Sources: a local model directory (`from_pretrained`, safetensors), a `.gguf` file (transformers'
`gguf_file=`, needs the `gguf` package), or a `LlamaConfig` dict for random init (tests, the lab), checked,
coerced and sized before anything is allocated (`isdaa.modeling.model_init`).
The reference is a frozen copy of the initial policy, or — with LoRA — the same model with its adapter
disabled (no second copy in memory). `trust_remote_code` is passed through and defaults to False.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import warnings
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from isdaa.config import LoraConfig, ModelConfig
from isdaa.errors import InputError
from isdaa.modeling.checkpointing import enable_layer_checkpointing
from isdaa.modeling.compiling import compile_blocks
from isdaa.modeling.model_init import check_model_fits, llama_config, parameter_count, size_text, training_bytes

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _source(cfg: ModelConfig) -> tuple[str, dict]:
    """(directory or file, extra from_pretrained kwargs) for a model path; InputError when missing."""
    path = Path(cfg.name_or_path)
    if not path.exists():
        raise InputError(f"model.name_or_path: {path} does not exist (expected a local model directory or .gguf file)")
    if path.is_file():
        if path.suffix != ".gguf":
            raise InputError(f"model.name_or_path: {path} is a file; expected a model directory or a .gguf file")
        return str(path.parent), {"gguf_file": path.name}
    if not (path / "config.json").is_file():
        raise InputError(f"model.name_or_path: {path} has no config.json (expected a save_pretrained directory)")
    return str(path), {}


def check_model_source(cfg: ModelConfig) -> None:
    """Everything `load_policy` would refuse about the model source, checked cheaply (no weights read),
    so that a run fails before its output directory exists."""
    if (cfg.name_or_path is None) == (cfg.init is None):
        raise InputError("model: set exactly one of model.name_or_path (a local model) and model.init (a LlamaConfig)")
    if cfg.init is not None:
        check_model_fits(llama_config(cfg.init), cfg.dtype, given=cfg.init)
    else:
        _source(cfg)


def check_lora_targets(cfg: ModelConfig, lora: LoraConfig) -> None:
    """InputError when none of `lora.target_modules` names a module of the model (what PEFT refuses),
    found on a weightless meta-device copy of the architecture. Skipped where that copy cannot be built."""
    targets = [str(t) for t in lora.target_modules]
    if not targets or "all-linear" in targets:
        return
    try:
        if cfg.init is not None:
            config = llama_config(cfg.init)
        else:
            src, extra = _source(cfg)
            if extra:  # .gguf: the architecture is only known after reading the file
                return
            config = AutoConfig.from_pretrained(src, trust_remote_code=cfg.trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.trust_remote_code)
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - the check is best effort; PEFT checks again when the model is loaded
        return
    names = [n for n, _ in model.named_modules()]
    if not any(n == t or n.endswith("." + t) for t in targets for n in names):
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names if n and not n.rsplit(".", 1)[-1].isdigit()})
        raise InputError(
            f"lora.target_modules: none of {targets} is a module of the model; module names include {', '.join(leaves[:12])}"
        )


def load_tokenizer(cfg: ModelConfig):
    """The tokenizer of `cfg.tokenizer` (a directory), else of the model source `cfg.name_or_path` (a directory
    or a .gguf file) — the one loader of train, eval, pairs and the lab, with one pad rule: `cfg.pad_token`, when
    set, becomes the pad token; a tokenizer still without a pad token (or without EOS) is an InputError naming
    the option. For a plain path: `load_tokenizer(ModelConfig(name_or_path=path, pad_token=...))`."""
    where = cfg.tokenizer or cfg.name_or_path
    if where is None:
        raise InputError("model.tokenizer: required when the model is built from model.init")
    if cfg.tokenizer is None:
        src, extra = _source(cfg)
    else:
        if not Path(where).exists():
            raise InputError(f"model.tokenizer: {where} does not exist (expected a tokenizer directory)")
        src, extra = where, {}
    try:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=cfg.trust_remote_code, **extra)
    except (OSError, ValueError) as exc:
        raise InputError(f"model.tokenizer: cannot load a tokenizer from {where} ({str(exc).splitlines()[0]})") from None
    if cfg.pad_token:
        tok.pad_token = cfg.pad_token
    if tok.eos_token_id is None:
        raise InputError(f"model.tokenizer: the tokenizer at {where} has no eos token (completions end with EOS)")
    if tok.pad_token_id is None:
        raise InputError(
            f"model.tokenizer: the tokenizer at {where} has no pad token; set model.pad_token "
            f"(e.g. --model.pad_token '{tok.eos_token}')"
        )
    return tok


def load_policy(cfg: ModelConfig, *, seed: int = 0):
    """The trainable causal LM, in `cfg.dtype`."""
    dtype = DTYPES[cfg.dtype]
    check_model_source(cfg)
    if cfg.init is not None:
        config = llama_config(cfg.init)
        print(f"isdaa: model.init: a random Llama of {parameter_count(config):,} parameters "
              f"({size_text(training_bytes(config, cfg.dtype))} for its {cfg.dtype} weights, gradients and AdamW state)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config).to(dtype)
    else:
        src, extra = _source(cfg)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                src, dtype=dtype, trust_remote_code=cfg.trust_remote_code, use_safetensors=None if extra else True, **extra
            )
        except (OSError, ValueError) as exc:
            raise InputError(f"model.name_or_path: cannot load {cfg.name_or_path} ({str(exc).splitlines()[0]})") from None
    if cfg.disable_dropout:
        disable_dropout(model)
    if cfg.gradient_checkpointing:  # per decoder layer, the KV cache kept: prompt sharing still works
        enable_layer_checkpointing(model)
    if cfg.compile:
        compile_blocks(model)
    return model


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every dropout probability to 0 (TRL's default): the DAA log-ratios must be deterministic."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for name in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(model.config, name):
            setattr(model.config, name, 0.0)


def apply_lora(model, cfg: LoraConfig, *, gradient_checkpointing: bool = False, seed: int = 0):
    """`model` with LoRA adapters from `cfg` (initialised from `seed`; on the top `cfg.layers` decoder layers only
    when set); input grads on for gradient checkpointing."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model  # heavy import, needed only by LoRA runs

    top = {}
    if cfg.layers:
        total = model.config.num_hidden_layers
        if cfg.layers > total:
            raise InputError(f"option lora.layers: {cfg.layers} is more than the model's {total} decoder layers")
        top = {"layers_to_transform": list(range(total - cfg.layers, total)), "layers_pattern": "layers"}
    peft_cfg = PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM", **top
    )
    try:
        with torch.random.fork_rng(devices=[]):  # the adapter's init depends on the run's seed only
            torch.manual_seed(seed)
            model = get_peft_model(model, peft_cfg)
    except ValueError as exc:
        raise InputError(f"lora.target_modules: {str(exc).splitlines()[0]}") from None
    if gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def frozen_copy(model):
    """A frozen, eval-mode copy of `model` (the reference when LoRA is off)."""
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    ref.eval()
    return ref


def model_identity(cfg: ModelConfig, seed: int) -> str:
    """A string that changes when the reference weights change (for the log-prob cache key)."""
    if cfg.init is not None:
        return f"init:{sorted(cfg.init.items())}:seed={seed}:dtype={cfg.dtype}"
    path = Path(cfg.name_or_path)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return f"path:{path.resolve()}:{stats}:dtype={cfg.dtype}"


@contextlib.contextmanager
def third_party_progress_bars(enabled: bool):
    """Inside the block, the progress bars of transformers ("Loading weights", "Writing model shards") and
    huggingface_hub (downloads), and of datasets when it is imported, off unless `enabled`; after it, as they
    were. `enabled` changes nothing (bars turned off elsewhere stay off)."""
    if enabled:
        yield
        return
    datasets = sys.modules.get("datasets")
    switches = [(hf_logging.is_progress_bar_enabled(), hf_logging.disable_progress_bar, hf_logging.enable_progress_bar)]
    if datasets is not None:
        switches.append((datasets.is_progress_bar_enabled(), datasets.disable_progress_bars,
                         datasets.enable_progress_bars))
    with warnings.catch_warnings():  # an HF_*_DISABLE_PROGRESS_BARS variable wins; its warning is noise here
        warnings.simplefilter("ignore")
        for _, turn_off, _ in switches:
            turn_off()  # transformers' turns huggingface_hub's off too
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for was_on, _, turn_on in switches:
                if was_on:
                    turn_on()
