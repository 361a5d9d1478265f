"""`evaluate(config)`: sample from the policy, estimate KL to the reference, score with a gold reward.

Steps (EvalConfig fields in brackets):
1. prompts [prompts, max_prompts, max_prompt_length] — or the `prompts` argument; baselines are the data's
   chosen responses (or `baseline_texts`);
2.–3. the evaluation every sampler of the policy shares (`isdaa.eval.sampled`): n completions per prompt from the
   policy [n_samples, max_new_tokens, temperature, top_p, seed], their teacher-forced summed log-probs under the
   policy and the reference → KL(π_θ‖π_ref) by k1 and k3, SEs clustered by prompt. Honest only for temperature 1
   and top_p 1: otherwise the numbers are still computed and `kl_biased` is true;
4. gold scores [scorer] → mean ± SE; win rate against the baseline [baseline: auto | chosen | reference | none;
   auto = the data's chosen responses, or reference samples for a prompt file (.txt, prompt-only .jsonl/.json)]
   (ties ½), SE clustered by prompt; completion length (`length_mean`: every generated token, the EOS included)
   mean ± SE.
The result dict is returned and, when `output` is set, written as JSON atomically (temp file + rename).
NaN / missing values are null. Every input is validated before any model runs or anything is written.
Models and the tokenizer loaded from paths follow the trainer's rules (`isdaa.modeling.loading`): a tokenizer
without a pad token is refused unless `pad_token` names one.

The reference: a model directory, or `base` — the policy's own starting point, read from what its run
recorded: the run's `config.yaml` next to the policy directory (a run's `final/` or `best/`): its
`model.name_or_path`, or its `model.init` rebuilt with the run's seed (the trainer's reference, bit for bit);
else the base model of a LoRA adapter saved with the policy (`adapter/adapter_config.json`). Without a
reference the KL fields are null and `kl_note` says why. `sampling` holds the settings the samples were drawn
with; for a policy from a run with the in-run monitor on, `monitor_sampling` holds the monitor's, and
`sampling_note` says when they differ (then `kl_k3` and the run's `monitor/kl_k3` do not compare).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from isdaa.config import EvalConfig, ModelConfig, TrainConfig, load_config
from isdaa.data.prompts import load_prompts, tokenize_completions, tokenize_prompts
from isdaa.errors import InputError
from isdaa.eval.sampled import SampledEval, Sampling, ScoredSamples, sample_and_score, summarize
from isdaa.eval.stats import is_finite_number, mean_se
from isdaa.eval.winrate import win_rate
from isdaa.generation.sampling import eos_token_ids
from isdaa.generation.scorers import get_scorer
from isdaa.modeling.loading import load_policy, load_tokenizer, third_party_progress_bars
from isdaa.runtime import json_ready, write_json

__all__ = ["evaluate"]

BASELINES = ("auto", "chosen", "reference", "none")
DTYPES = ("float32", "bfloat16", "float16")
# the tokenizer loader's option names -> eval's (the tokenizer comes from the policy directory)
TOKENIZER_OPTIONS = {"model.tokenizer": "policy", "model.name_or_path": "policy", "model.pad_token": "pad_token"}
GOLD_KEYS = ("gold_mean", "gold_se", "baseline_gold_mean", "baseline_gold_se", "win_rate", "win_rate_se")
BASE = "base"  # `reference: base`: the policy's own base model (see the module docstring)
NO_REFERENCE_NOTE = (
    "kl is null: no reference model to measure it against; pass --reference <model directory>, or --reference base "
    "for the policy's own base model (the model.name_or_path or model.init of the run that trained it)"
)
# the sampling settings `isdaa eval` and the in-run monitor each record, in the order printed
SAMPLING_KEYS = ("n_samples", "max_new_tokens", "temperature", "top_p", "prompts", "max_prompts", "seed",
                 "max_prompt_length")


# ------------------------------------------------------------------------------------------ validation
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


def _check_path(option: str, path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{option}: {path} does not exist (expected a local model directory or .gguf file)")
    if p.is_dir() and not (p / "config.json").is_file():
        hint = f"; for a run directory, its final/ ({p / 'final'})" if (p / "final" / "config.json").is_file() else ""
        raise InputError(f"{option}: {path} has no config.json (expected a save_pretrained directory{hint})")


# ------------------------------------------------------------------------------------------ the policy's run
def _run_config(policy: str | None) -> tuple[TrainConfig, Path] | None:
    """(the config, its path) of the run the policy directory belongs to — `config.yaml` one level up, as a
    run's `final/` and `best/` have it — or None (not a run's model, or a config this version cannot read)."""
    if policy is None:
        return None
    path = Path(policy).resolve().parent / "config.yaml"
    if not path.is_file():
        return None
    try:
        return load_config(TrainConfig, path), path
    except InputError:
        return None


def _adapter_base(policy: str) -> str | None:
    """The base model a LoRA adapter saved with the policy names (`adapter/` as `final/` has it, or the
    directory itself), or None."""
    for adapter in (Path(policy) / "adapter", Path(policy)):
        path = adapter / "adapter_config.json"
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path") or None
            except (OSError, ValueError, AttributeError):
                return None
    return None


def base_reference(config: EvalConfig) -> tuple[ModelConfig, int, str]:
    """`reference: base`: (the model config to load it with, its init seed, what it is) — see the module
    docstring. InputError when the policy records no base model, or the one it records is not here."""
    if config.policy is None:
        raise InputError("reference: 'base' needs policy (a model directory whose run recorded its base model)")
    run = _run_config(config.policy)
    if run is not None and run[0].model.init is not None:
        cfg, path = run
        return (ModelConfig(init=dict(cfg.model.init), dtype=config.dtype), cfg.seed,
                f"model.init of {path} rebuilt with seed {cfg.seed}")
    if run is not None:
        base, source = run[0].model.name_or_path, f"model.name_or_path in {run[1]}"
    else:
        base, source = _adapter_base(config.policy), f"the LoRA adapter's base_model_name_or_path in {config.policy}"
    if base is None:
        raise InputError(
            f"reference: 'base' needs the policy's base model, and {config.policy} records none (expected a run's "
            "final/ or best/ with the run's config.yaml one level up, or a LoRA adapter); pass --reference "
            "<model directory>"
        )
    if not Path(base).exists():
        raise InputError(
            f"reference: 'base' is {base} ({source}), which does not exist from here; run from the directory the "
            "run was trained in, or pass --reference <its directory>"
        )
    _check_path("reference", base)
    return ModelConfig(name_or_path=base, dtype=config.dtype), 0, f"{base} ({source})"


def _check_models(config: EvalConfig, policy_model, reference_model, tokenizer) -> bool:
    """Model paths exist (or models are given); returns whether there is a reference."""
    if policy_model is None:
        if config.policy is None:
            raise InputError("policy: required (a local model directory)")
        _check_path("policy", config.policy)
    elif tokenizer is None:
        raise InputError("evaluate: a tokenizer is required with an in-memory policy_model")
    if reference_model is None and config.reference not in (None, BASE):
        _check_path("reference", config.reference)
    return reference_model is not None or config.reference is not None


def _resolve_prompts(config: EvalConfig, prompts, baseline_texts) -> tuple[list, list[str] | None]:
    """The prompts to evaluate (at most max_prompts) and one baseline text per prompt, or None."""
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
    return prompts, baseline_texts


def _resolved_baseline(baseline: str, baseline_texts, has_reference: bool) -> str:
    """`auto`: the data's chosen responses when there are some (a preference-data file), else reference samples
    when there is a reference (a prompt file: .txt, or prompt-only .jsonl / .json), else none."""
    if baseline != "auto":
        return baseline
    return "chosen" if baseline_texts is not None else "reference" if has_reference else "none"


def _check_baseline_and_output(config: EvalConfig, scorer, baseline_texts, has_reference: bool) -> None:
    if scorer is not None and config.baseline == "chosen" and baseline_texts is None:
        raise InputError(
            "baseline: 'chosen' needs chosen responses; give a preference-data file as prompts, "
            "or set baseline to reference or none"
        )
    if config.baseline == "reference" and not has_reference:
        raise InputError("baseline: 'reference' needs a reference model (option reference)")
    if config.output is not None and Path(config.output).is_dir():
        raise InputError(f"output: {config.output} is a directory; expected a .json file path")


# ------------------------------------------------------------------------------------------ loading
def _device(config: EvalConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def _load_model(option: str, path: str, config: EvalConfig, device: torch.device):
    try:
        model = load_policy(ModelConfig(name_or_path=path, dtype=config.dtype))
    except InputError as exc:
        raise InputError(str(exc).replace("model.name_or_path", option, 1)) from None
    model.requires_grad_(False)
    return model.to(device).eval()


def _load_tokenizer(config: EvalConfig):
    """The policy's tokenizer by the one pad rule (`load_tokenizer`), its messages in eval's option names."""
    try:
        return load_tokenizer(ModelConfig(name_or_path=config.policy, pad_token=config.pad_token))
    except InputError as exc:
        message = str(exc)
        for name, option in TOKENIZER_OPTIONS.items():
            message = message.replace(name, option)
        raise InputError(message) from None


def _vocab_size(model) -> int:
    head = model.get_output_embeddings()
    return int(head.weight.shape[0]) if head is not None else int(model.config.vocab_size)


def _load_base(base: tuple[ModelConfig, int, str], device: torch.device):
    model_config, seed, _ = base
    model = load_policy(model_config, seed=seed)
    model.requires_grad_(False)
    return model.to(device).eval()


def _models(config: EvalConfig, policy, reference, tokenizer, base=None) -> tuple:
    """(policy, reference or None, tokenizer): the ones passed in, else loaded from the config's paths (`base`:
    `base_reference`'s answer for `reference: base`)."""
    device = _device(config)
    if policy is None:
        tokenizer = _load_tokenizer(config)
        policy = _load_model("policy", config.policy, config, device)
    if reference is None and base is not None:
        reference = _load_base(base, device)
    elif reference is None and config.reference is not None:
        reference = _load_model("reference", config.reference, config, device)
    if reference is not None and _vocab_size(reference) != _vocab_size(policy):
        raise InputError(
            f"reference: vocabulary size {_vocab_size(reference)} differs from the policy's {_vocab_size(policy)}; "
            "KL needs both models on the same tokenizer"
        )
    return policy, reference, tokenizer


# ------------------------------------------------------------------------------------------ the pipeline
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
    n_prompts, n_samples, n_per_prompt, prompts_truncated, baseline, scorer, reference_model (what the reference
    is, None without one), kl_note (why kl is null, else None), sampling, monitor_sampling, sampling_note,
    elapsed_s, config.
    """
    start = time.perf_counter()
    _check_config(config)
    # validate every input before any model runs
    scorer = None if config.scorer == "none" else get_scorer(config.scorer)
    has_reference = _check_models(config, policy_model, reference_model, tokenizer)
    base = base_reference(config) if reference_model is None and config.reference == BASE else None
    prompts, baseline_texts = _resolve_prompts(config, prompts, baseline_texts)
    config = dataclasses.replace(config, baseline=_resolved_baseline(config.baseline, baseline_texts, has_reference))
    _check_baseline_and_output(config, scorer, baseline_texts, has_reference)

    saved_threads = torch.get_num_threads()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    try:
        with third_party_progress_bars(config.progress):  # transformers' "Loading weights" bars
            policy, reference, tokenizer = _models(config, policy_model, reference_model, tokenizer, base)
        result = _run(config, scorer, policy, reference, tokenizer, prompts, baseline_texts)
    finally:
        torch.set_num_threads(saved_threads)
    result["reference_model"] = _reference_name(config, reference_model, base)
    result["kl_note"] = None if result["reference_model"] else NO_REFERENCE_NOTE
    result.update(sampling_report(config, _run_config(config.policy) if policy_model is None else None))
    result["elapsed_s"] = time.perf_counter() - start
    result["config"] = dataclasses.asdict(config)
    result = json_ready(result)
    if config.output is not None:
        write_json(result, config.output)
    return result


def _reference_name(config: EvalConfig, reference_model, base) -> str | None:
    if reference_model is not None:
        return "a model passed in"
    return base[2] if base is not None else config.reference


def _monitor_sampling(run: TrainConfig) -> dict:
    """The sampling settings of the run's in-run monitor (`isdaa.eval.monitor.Monitor`), in `SAMPLING_KEYS`."""
    m = run.monitor
    return {"n_samples": m.n_samples, "max_new_tokens": m.max_new_tokens or run.data.max_length -
            run.data.max_prompt_length, "temperature": 1.0, "top_p": 1.0, "prompts": m.prompts or run.data.eval_file,
            "max_prompts": m.max_prompts, "seed": m.seed, "max_prompt_length": run.data.max_prompt_length}


def setting_text(value) -> str:
    """A sampling setting as `sampling_note` and `isdaa eval` print it."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _same_setting(key: str, mine, theirs) -> bool:
    if key == "prompts" and mine is not None and theirs is not None:
        return Path(mine).resolve() == Path(theirs).resolve()
    return mine == theirs


def sampling_report(config: EvalConfig, run: tuple[TrainConfig, Path] | None) -> dict:
    """`sampling` (this evaluation's settings), `monitor_sampling` (those of the policy's run's monitor, when the
    policy comes from a run with the monitor on; else None) and `sampling_note` (which differ, and the options
    that match them; None when none differs or there is no monitor to compare with)."""
    mine = {k: getattr(config, k) for k in SAMPLING_KEYS}
    report = {"sampling": mine, "monitor_sampling": None, "sampling_note": None}
    if run is None or run[0].monitor.every == 0:
        return report
    theirs = report["monitor_sampling"] = _monitor_sampling(run[0])
    differ = [k for k in SAMPLING_KEYS if not _same_setting(k, mine[k], theirs[k])]
    if differ:
        report["sampling_note"] = (
            f"these samples are not drawn as the run's monitor draws them ({run[1]}): "
            + ", ".join(f"{k} {setting_text(mine[k])} here, {setting_text(theirs[k])} there" for k in differ)
            + "; kl_k3 and the run's monitor/kl_k3 do not compare; to match, pass "
            + " ".join(f"--{k} {setting_text(theirs[k])}" for k in differ)
        )
    return report


def _run(config: EvalConfig, scorer, policy, reference, tokenizer, prompts, baseline_texts) -> dict:
    prompt_ids, prompt_texts, truncated = tokenize_prompts(tokenizer, prompts, config.max_prompt_length)
    sampling = _sampling(config)
    scored = sample_and_score(policy, tokenizer, prompt_ids, prompt_texts, sampling, reference=reference,
                              scorer=scorer)
    result: dict = {
        "n_prompts": len(prompts),
        "n_samples": len(scored.samples),
        "n_per_prompt": config.n_samples,
        "prompts_truncated": truncated,
        "kl_biased": bool(config.temperature != 1.0 or config.top_p != 1.0),
        "baseline": config.baseline if scorer is not None else None,
        "scorer": config.scorer,
        **dict.fromkeys(GOLD_KEYS),
    }
    result.update(_summary_fields(summarize(scored)))
    if scorer is not None:
        result.update(_gold_fields(config, sampling, scorer, policy, reference, tokenizer, prompt_ids, prompt_texts,
                                   baseline_texts, scored))
    return result


def _sampling(config: EvalConfig) -> Sampling:
    return Sampling(n=config.n_samples, max_new_tokens=config.max_new_tokens, seed=config.seed,
                    batch_size=config.batch_size, temperature=config.temperature, top_p=config.top_p,
                    progress=config.progress, shared_prefill=config.shared_prefill)


def _summary_fields(record: SampledEval) -> dict:
    """The evaluation's result keys: KL, length (every generated token, EOS included), EOS rate, gold, √KL (None
    unless the k3 estimate is finite, as `isdaa eval` has always reported it)."""
    return {
        "kl_k1": record.kl_k1, "kl_k1_se": record.kl_k1_se, "kl_k3": record.kl_k3, "kl_k3_se": record.kl_k3_se,
        "kl_k3_clamped": record.kl_k3_clamped, "length_mean": record.generated_tokens,
        "length_se": record.generated_tokens_se, "finished_frac": record.eos_rate, "gold_mean": record.gold,
        "gold_se": record.gold_se, "sqrt_kl": record.sqrt_kl if is_finite_number(record.kl_k3) else None,
    }



def _gold_fields(config, sampling: Sampling, scorer, policy, reference, tokenizer, prompt_ids, prompt_texts,
                 baseline_texts, scored: ScoredSamples) -> dict:
    """Gold of the baseline, and the samples' win rate against it."""
    samples, scores, groups = scored.samples, scored.gold, scored.prompt_index
    s_prompt_ids = [prompt_ids[s.prompt_index] for s in samples]
    s_prompt_texts = [prompt_texts[s.prompt_index] for s in samples]
    gold = {}
    base_scores = None
    if config.baseline == "chosen":
        eos = eos_token_ids(policy, tokenizer)[0]
        base_ids = tokenize_completions(tokenizer, baseline_texts, eos)
        per_prompt = scorer(prompt_texts, baseline_texts, prompt_ids=prompt_ids, completion_ids=base_ids)
        gold["baseline_gold_mean"], gold["baseline_gold_se"] = mean_se(per_prompt)
        base_scores = [per_prompt[s.prompt_index] for s in samples]
    elif config.baseline == "reference":
        ref_samples = dataclasses.replace(sampling, seed=config.seed + 1).draw(reference, tokenizer, prompt_ids)
        base_scores = scorer(s_prompt_texts, [s.text for s in ref_samples], prompt_ids=s_prompt_ids,
                             completion_ids=[s.completion_ids for s in ref_samples])
        gold["baseline_gold_mean"], gold["baseline_gold_se"] = mean_se(base_scores, groups)
    if base_scores is not None:
        gold["win_rate"], gold["win_rate_se"] = win_rate(scores, base_scores, groups=groups)
    return gold
