"""`evaluate(config)`: sample from the policy, estimate KL to the reference, score with a gold reward.

Steps (EvalConfig fields in brackets):
1. prompts [prompts, max_prompts, max_prompt_length] — or the `prompts` argument; baselines are the data's
   chosen responses (or `baseline_texts`);
2. n completions per prompt from the policy [n_samples, max_new_tokens, temperature, top_p, seed];
3. teacher-forced summed log-probs of every completion under the policy and the reference →
   KL(π_θ‖π_ref) by k1 and k3 (`isdaa.eval.kl`), SEs clustered by prompt. Honest only for temperature 1 and
   top_p 1: otherwise the numbers are still computed and `kl_biased` is true;
4. gold scores [scorer] → mean ± SE; win rate against the baseline [baseline: chosen | reference | none]
   (ties ½), SE clustered by prompt; completion length mean ± SE.
The result dict is returned and, when `output` is set, written as JSON atomically (temp file + rename).
NaN / missing values are null. Every input is validated before any model runs or anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from isdaa.config import EvalConfig
from isdaa.training.runtime import atomic_write_text
from isdaa.errors import InputError
from isdaa.eval.kl import kl_estimates, mean_se
from isdaa.data.prompts import load_prompts, tokenize_completions, tokenize_prompts
from isdaa.generation.sampling import eos_token_ids, sample_completions, score_logps
from isdaa.generation.scorers import get_scorer
from isdaa.eval.winrate import win_rate

__all__ = ["evaluate", "write_json"]

BASELINES = ("chosen", "reference", "none")
DTYPES = ("float32", "bfloat16", "float16")


def _check_config(config: EvalConfig) -> None:
    if config.baseline not in BASELINES:
        raise InputError(f"option baseline: expected one of {', '.join(BASELINES)}, got {config.baseline!r}")
    if config.dtype not in DTYPES:
        raise InputError(f"option dtype: expected one of {', '.join(DTYPES)}, got {config.dtype!r}")
    for key in ("n_samples", "max_prompts", "max_new_tokens", "batch_size", "max_prompt_length"):
        if getattr(config, key) < 1:
            raise InputError(f"option {key}: must be >= 1, got {getattr(config, key)}")
    if not config.temperature > 0:
        raise InputError(f"option temperature: must be > 0, got {config.temperature}")
    if not 0 < config.top_p <= 1:
        raise InputError(f"option top_p: must be in (0, 1], got {config.top_p}")
    if config.num_threads < 0:
        raise InputError(f"option num_threads: must be >= 0, got {config.num_threads}")
    if config.device != "auto" and not (config.device == "cpu" or config.device.startswith("cuda")):
        raise InputError(f"option device: expected auto, cpu, cuda or cuda:N, got {config.device!r}")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"option device: {config.device} requested but CUDA is not available")


def _device(config: EvalConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def _check_path(option: str, path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{option}: {path} does not exist (expected a local model directory or .gguf file)")
    if p.is_dir() and not (p / "config.json").is_file():
        raise InputError(f"{option}: {path} has no config.json (expected a save_pretrained directory)")


def _load_model(option: str, path: str, config: EvalConfig, device: torch.device):
    from isdaa.config import ModelConfig
    from isdaa.modeling.loading import load_policy

    try:
        model = load_policy(ModelConfig(name_or_path=path, dtype=config.dtype))
    except InputError as exc:
        raise InputError(str(exc).replace("model.name_or_path", option, 1)) from None
    model.requires_grad_(False)
    return model.to(device).eval()


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    p = Path(path)
    src, extra = (str(p.parent), {"gguf_file": p.name}) if p.is_file() else (str(p), {})
    try:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=False, **extra)
    except (OSError, ValueError) as exc:
        raise InputError(f"policy: cannot load a tokenizer from {path} ({str(exc).splitlines()[0]})") from None
    if tok.eos_token_id is None:
        raise InputError(f"policy: the tokenizer at {path} has no eos token (completions end with EOS)")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token  # only pads generation inputs; padded slots are masked out
    return tok


def _vocab_size(model) -> int:
    head = model.get_output_embeddings()
    return int(head.weight.shape[0]) if head is not None else int(model.config.vocab_size)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(obj: dict, path) -> Path:
    """Write `obj` as JSON (non-finite floats → null) to `path` atomically."""
    return atomic_write_text(path, json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n")


def evaluate(
    config: EvalConfig,
    *,
    policy_model=None,
    reference_model=None,
    tokenizer=None,
    prompts: list | None = None,
    baseline_texts: list[str] | None = None,
) -> dict:
    """Evaluate a policy (see the module docstring); returns the result dict.

    In-memory use (the lab): pass `policy_model` (+ `tokenizer`, required then) and optionally
    `reference_model`, `prompts` (strings or message lists) and `baseline_texts` (one per prompt); models
    passed in are used where they are (device, dtype) and left in their training/eval mode. Otherwise the
    models and tokenizer are loaded from `config.policy` / `config.reference` (safetensors,
    trust_remote_code=False). Without a reference, KL fields are null.

    Result keys: kl_k1, kl_k1_se, kl_k3, kl_k3_se, kl_k3_clamped, sqrt_kl, kl_biased, gold_mean, gold_se,
    baseline_gold_mean, baseline_gold_se, win_rate, win_rate_se, length_mean, length_se, finished_frac,
    n_prompts, n_samples, n_per_prompt, prompts_truncated, baseline, scorer, elapsed_s, config.
    """
    start = time.perf_counter()
    _check_config(config)

    # ---- validate every input before any model runs
    scorer = None if config.scorer == "none" else get_scorer(config.scorer)
    if policy_model is None:
        if config.policy is None:
            raise InputError("policy: required (a local model directory)")
        _check_path("policy", config.policy)
    elif tokenizer is None:
        raise InputError("evaluate: a tokenizer is required with an in-memory policy_model")
    if reference_model is None and config.reference is not None:
        _check_path("reference", config.reference)
    has_reference = reference_model is not None or config.reference is not None
    if prompts is None:
        if config.prompts is None:
            raise InputError("prompts: required (a .txt prompt file or a preference-data file)")
        prompts, file_baselines = load_prompts(config.prompts)
        if baseline_texts is None:
            baseline_texts = file_baselines
    prompts = list(prompts)[: config.max_prompts]
    if not prompts:
        raise InputError("prompts: no prompts to evaluate")
    if baseline_texts is not None:
        baseline_texts = list(baseline_texts)[: len(prompts)]
        if len(baseline_texts) != len(prompts):
            raise InputError(f"baseline_texts: {len(baseline_texts)} for {len(prompts)} prompts")
    if scorer is not None and config.baseline == "chosen" and baseline_texts is None:
        raise InputError(
            "baseline: 'chosen' needs chosen responses; give a preference-data file as prompts, "
            "or set baseline to reference or none"
        )
    if config.baseline == "reference" and not has_reference:
        raise InputError("baseline: 'reference' needs a reference model (option reference)")
    if config.output is not None and Path(config.output).is_dir():
        raise InputError(f"output: {config.output} is a directory; expected a .json file path")

    saved_threads = torch.get_num_threads()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    try:
        result = _run(config, scorer, policy_model, reference_model, tokenizer, prompts, baseline_texts, has_reference)
    finally:
        torch.set_num_threads(saved_threads)
    result["elapsed_s"] = time.perf_counter() - start
    result["config"] = dataclasses.asdict(config)
    result = _finite(result)
    if config.output is not None:
        write_json(result, config.output)
    return result


def _run(config, scorer, policy, reference, tokenizer, prompts, baseline_texts, has_reference) -> dict:
    device = _device(config)
    if policy is None:
        tokenizer = _load_tokenizer(config.policy)
        policy = _load_model("policy", config.policy, config, device)
    if reference is None and config.reference is not None:
        reference = _load_model("reference", config.reference, config, device)
    if reference is not None and _vocab_size(reference) != _vocab_size(policy):
        raise InputError(
            f"reference: vocabulary size {_vocab_size(reference)} differs from the policy's {_vocab_size(policy)}; "
            "KL needs both models on the same tokenizer"
        )

    prompt_ids, prompt_texts, truncated = tokenize_prompts(tokenizer, prompts, config.max_prompt_length)
    n = config.n_samples
    common = dict(
        n=n,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        batch_size=config.batch_size,
        progress=config.progress,
    )
    samples = sample_completions(policy, tokenizer, prompt_ids, seed=config.seed, **common)
    groups = [s.prompt_index for s in samples]
    s_prompt_ids = [prompt_ids[s.prompt_index] for s in samples]
    s_completion_ids = [s.completion_ids for s in samples]
    lengths = [float(len(c)) for c in s_completion_ids]

    result: dict = {
        "n_prompts": len(prompts),
        "n_samples": len(samples),
        "n_per_prompt": n,
        "prompts_truncated": truncated,
        "kl_biased": bool(config.temperature != 1.0 or config.top_p != 1.0),
        "baseline": config.baseline if scorer is not None else None,
        "scorer": config.scorer,
    }
    result["length_mean"], result["length_se"] = mean_se(lengths, groups)
    result["finished_frac"] = float(np.mean([s.finished for s in samples]))

    kl = {"kl_k1": None, "kl_k1_se": None, "kl_k3": None, "kl_k3_se": None, "kl_k3_clamped": None}
    if reference is not None:
        bs, prog = config.batch_size, config.progress
        pol = score_logps(policy, s_prompt_ids, s_completion_ids, batch_size=bs, progress=prog, desc="policy logps")
        ref = score_logps(reference, s_prompt_ids, s_completion_ids, batch_size=bs, progress=prog, desc="reference logps")
        est = kl_estimates(pol, ref, groups=groups)
        kl = {k: est[k] for k in kl}
    result.update(kl)
    result["sqrt_kl"] = math.sqrt(max(kl["kl_k3"], 0.0)) if kl["kl_k3"] is not None and math.isfinite(kl["kl_k3"]) else None

    gold = {k: None for k in ("gold_mean", "gold_se", "baseline_gold_mean", "baseline_gold_se", "win_rate", "win_rate_se")}
    if scorer is not None:
        texts = [s.text for s in samples]
        s_prompt_texts = [prompt_texts[s.prompt_index] for s in samples]
        scores = scorer(s_prompt_texts, texts, prompt_ids=s_prompt_ids, completion_ids=s_completion_ids)
        gold["gold_mean"], gold["gold_se"] = mean_se(scores, groups)
        base_scores = None
        if config.baseline == "chosen":
            eos = eos_token_ids(policy, tokenizer)[0]
            base_ids = tokenize_completions(tokenizer, baseline_texts, eos)
            per_prompt = scorer(prompt_texts, baseline_texts, prompt_ids=prompt_ids, completion_ids=base_ids)
            gold["baseline_gold_mean"], gold["baseline_gold_se"] = mean_se(per_prompt)
            base_scores = [per_prompt[s.prompt_index] for s in samples]
        elif config.baseline == "reference":
            ref_samples = sample_completions(reference, tokenizer, prompt_ids, seed=config.seed + 1, **common)
            base_scores = scorer(
                s_prompt_texts,
                [s.text for s in ref_samples],
                prompt_ids=s_prompt_ids,
                completion_ids=[s.completion_ids for s in ref_samples],
            )
            gold["baseline_gold_mean"], gold["baseline_gold_se"] = mean_se(base_scores, groups)
        if base_scores is not None:
            gold["win_rate"], gold["win_rate_se"] = win_rate(scores, base_scores, groups=groups)
    result.update(gold)
    return result
