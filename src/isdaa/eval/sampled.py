"""The one evaluation of a policy from its own samples: what `isdaa eval`, the in-run monitor and the lab's
evaluators all record.

1. `sample_and_score`: `Sampling.n` completions per prompt from the policy (`isdaa.generation.sample_completions`;
   at temperature 1 without top-p they are draws from π_θ itself), their summed log-probs under the policy
   (teacher-forced by `score_logps`, or — `Sampling.policy_logps_from_generate` — the log-probs `generate` drew
   them from, the same numbers at temperature 1 without top-p / top-k) and under the reference (teacher-forced,
   inside `reference_context()`, e.g. a LoRA policy's `disable_adapter`), and their gold scores. Returns the
   per-sample numbers (`ScoredSamples`); nothing passed in is modified.
2. `summarize`: one `SampledEval` record — gold mean ± SE, KL(π_θ‖π_ref) by k1 and k3 (`isdaa.eval.kl`, the only
   place that computes it), the response length, the generated tokens, the EOS rate and the caller's own
   fields (`extra`: a callable of the `ScoredSamples` returning a dict, e.g. the lab world's target counts).
   Every SE is clustered by prompt (`isdaa.eval.stats.mean_se` with the samples' prompt numbers as groups).

Length: `length` is the number of response tokens, the final EOS not counted (`completion_length`: a completion
cut at `max_new_tokens` counts all its tokens). `generated_tokens` counts every generated token, the EOS
included: the number `isdaa eval` reports as `length_mean` and the monitor as `monitor/length`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from isdaa.eval.kl import kl_estimates
from isdaa.eval.stats import mean_se
from isdaa.generation.sampling import Sample, sample_completions, score_logps
from isdaa.modeling.prompt_cache import PromptCache, completion_logps

__all__ = ["Sampling", "ScoredSamples", "SampledEval", "sample_and_score", "summarize", "sampled_eval", "encode_prompts",
           "completion_length"]

KL_FIELDS = ("kl_k1", "kl_k1_se", "kl_k3", "kl_k3_se", "kl_k3_clamped")


@dataclass(frozen=True)
class Sampling:
    """How the policy is sampled: `n` completions per prompt of at most `max_new_tokens` tokens, `batch_size`
    sequences per `generate` call, the RNG seeded with `seed`. Temperature 1 and top_p 1 (the defaults) draw
    from π_θ itself; other values still sample, but the KL estimated from them is biased."""

    n: int
    max_new_tokens: int
    seed: int = 0
    batch_size: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    progress: bool = False
    policy_logps_from_generate: bool = False
    shared_prefill: bool = False

    def draw(self, model, tokenizer, prompt_ids: list[list[int]]) -> list[Sample]:
        """The completions of `model` for `prompt_ids`, prompt by prompt (`shared_prefill`: each prompt run once for
        its n samples, see `isdaa.generation.sample_completions`)."""
        return sample_completions(model, tokenizer, prompt_ids, n=self.n, max_new_tokens=self.max_new_tokens,
                                  temperature=self.temperature, top_p=self.top_p, batch_size=self.batch_size,
                                  seed=self.seed, progress=self.progress,
                                  output_scores=self.policy_logps_from_generate, shared_prefill=self.shared_prefill)


@dataclass(frozen=True)
class ScoredSamples:
    """The per-sample numbers of one evaluation, in sample order: the samples, the number of the prompt each
    was drawn for (the SEs' clusters), their summed log-probs under the policy and the reference (None without
    a reference) and their gold scores (None without a scorer)."""

    samples: list[Sample]
    prompt_index: list[int]
    policy_logps: list[float] | None = None
    ref_logps: list[float] | None = None
    gold: list[float] | None = None


@dataclass(frozen=True)
class SampledEval:
    """One evaluation (see the module docstring). KL fields are None without a reference, gold ones without a
    scorer; `extra` holds the caller's own fields."""

    n_samples: int
    length: float
    length_se: float
    generated_tokens: float
    generated_tokens_se: float
    eos_rate: float
    gold: float | None = None
    gold_se: float | None = None
    kl_k1: float | None = None
    kl_k1_se: float | None = None
    kl_k3: float | None = None
    kl_k3_se: float | None = None
    kl_k3_clamped: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def sqrt_kl(self) -> float | None:
        """√KL (k3, negative values read as 0): the x axis of the gold-vs-KL frontier."""
        return None if self.kl_k3 is None else math.sqrt(max(self.kl_k3, 0.0))


def completion_length(sample: Sample) -> int:
    """The response's tokens, its final EOS not counted."""
    return len(sample.completion_ids) - int(sample.finished)


def sample_and_score(policy, tokenizer, prompt_ids: list[list[int]], prompt_texts: list, sampling: Sampling, *,
                     reference=None, reference_context: Callable = contextlib.nullcontext, scorer=None,
                     prompt_labels: Sequence[int] | None = None,
                     reference_prompts: PromptCache | None = None) -> ScoredSamples:
    """Sample `policy` and score the samples (step 1 of the module docstring). `prompt_texts` are what the
    scorer sees; `prompt_labels` number the prompts for the SEs' clusters (default: their positions);
    `reference_prompts`: the reference's cache of these prompts (`PromptCache.encode`, kept by a caller that
    evaluates the same prompts again), so that the reference runs only the completions' tokens."""
    samples = sampling.draw(policy, tokenizer, prompt_ids)
    labels = list(range(len(prompt_ids))) if prompt_labels is None else list(prompt_labels)
    row_prompts = [prompt_ids[s.prompt_index] for s in samples]
    completions = [s.completion_ids for s in samples]
    policy_logps = ref_logps = gold = None
    if reference is not None:
        policy_logps, ref_logps = _logps(policy, reference, reference_context, prompt_ids, samples, sampling,
                                         reference_prompts)
    if scorer is not None:
        gold = list(scorer([prompt_texts[s.prompt_index] for s in samples], [s.text for s in samples],
                           prompt_ids=row_prompts, completion_ids=completions)) if samples else []
    return ScoredSamples(samples, [labels[s.prompt_index] for s in samples], policy_logps, ref_logps, gold)


def _logps(policy, reference, reference_context, prompt_ids, samples, sampling: Sampling,
           reference_prompts: PromptCache | None):
    """(policy, reference) summed log-probs of the samples, as float lists: teacher-forced over prompt + completion
    (`score_logps`), or — `sampling.shared_prefill` — on each prompt's KV cache (`completion_logps`: the prompts run
    once, the reference's from `reference_prompts` when given); the policy's are the sampler's own under
    `policy_logps_from_generate`."""
    if not samples:
        return [], []
    index = [s.prompt_index for s in samples]
    completions = [s.completion_ids for s in samples]
    if sampling.policy_logps_from_generate:
        policy_logps = [s.sampled_logp for s in samples]
    else:
        policy_logps = _scored(policy, prompt_ids, index, completions, sampling, None, "policy logps")
    with reference_context():
        ref_logps = _scored(reference, prompt_ids, index, completions, sampling, reference_prompts, "reference logps")
    return policy_logps, ref_logps


def _scored(model, prompt_ids, index, completions, sampling: Sampling, prompts: PromptCache | None, desc: str):
    """The summed log-probs of `completions` (completion k given prompt `index[k]`) under `model`, as a list."""
    if sampling.shared_prefill or prompts is not None:
        if prompts is None:
            prompts = encode_prompts(model, prompt_ids, sampling)
        return completion_logps(model, prompts, index, completions, batch_size=sampling.batch_size).tolist()
    return score_logps(model, [prompt_ids[i] for i in index], completions, batch_size=sampling.batch_size,
                       progress=sampling.progress, desc=desc).tolist()


def encode_prompts(model, prompt_ids, sampling: Sampling) -> PromptCache:
    """`model`'s KV cache of `prompt_ids`, grouped as the sampler groups them (batch_size // n prompts)."""
    pad_id = getattr(getattr(model, "config", None), "pad_token_id", None)
    return PromptCache.encode(model, prompt_ids, group_size=max(1, sampling.batch_size // sampling.n),
                              pad_id=0 if pad_id is None else int(pad_id))


def summarize(scored: ScoredSamples, extra: Callable[[ScoredSamples], dict] | None = None) -> SampledEval:
    """The `SampledEval` of `scored` (step 2 of the module docstring)."""
    groups = scored.prompt_index
    samples = scored.samples
    length, length_se = mean_se([float(completion_length(s)) for s in samples], groups)
    tokens, tokens_se = mean_se([float(len(s.completion_ids)) for s in samples], groups)
    kl = dict.fromkeys(KL_FIELDS)
    if scored.ref_logps is not None and samples:
        estimates = kl_estimates(scored.policy_logps, scored.ref_logps, groups=groups)
        kl = {k: estimates[k] for k in KL_FIELDS}
    gold, gold_se = mean_se(scored.gold, groups) if scored.gold is not None else (None, None)
    return SampledEval(
        n_samples=len(samples), length=length, length_se=length_se, generated_tokens=tokens,
        generated_tokens_se=tokens_se, eos_rate=float(np.mean([s.finished for s in samples])) if samples else math.nan,
        gold=gold, gold_se=gold_se, **kl, extra=extra(scored) if extra is not None else {},
    )


def sampled_eval(policy, tokenizer, prompt_ids: list[list[int]], prompt_texts: list, sampling: Sampling, *,
                 reference=None, reference_context: Callable = contextlib.nullcontext, scorer=None,
                 extra: Callable[[ScoredSamples], dict] | None = None,
                 reference_prompts: PromptCache | None = None) -> SampledEval:
    """`summarize(sample_and_score(...), extra)`: one evaluation of `policy` on the prompts."""
    scored = sample_and_score(policy, tokenizer, prompt_ids, prompt_texts, sampling, reference=reference,
                              reference_context=reference_context, scorer=scorer, reference_prompts=reference_prompts)
    return summarize(scored, extra)
