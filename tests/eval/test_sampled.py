"""The one evaluation core (isdaa.eval.sampled): its record is the per-sample numbers reduced once (KL by
`kl_estimates`, SEs clustered by the caller's prompt numbers, one length definition), the caller's fields come
through `extra`, and nothing passed in is modified."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from isdaa.eval.kl import kl_estimates
from isdaa.eval.evaluate import _summary_fields
from isdaa.eval.sampled import (SampledEval, Sampling, completion_length, sample_and_score, sampled_eval,
                                summarize)
from isdaa.eval.stats import mean_se
from isdaa.generation import get_scorer
from isdaa.modeling.tiny import tiny_llama, word_tokenizer

WORDS = "the cat dog sat ran on a mat rug big small red blue".split()
PROMPTS = ["the cat sat", "a big dog ran on the rug", "red"]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    tok = word_tokenizer(WORDS)
    return tiny_llama(len(tok), seed=0), tiny_llama(len(tok), seed=1), tok


def _ids(tok):
    return [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]


def test_record_reduces_the_per_sample_numbers(tiny):
    policy, reference, tok = tiny
    prompt_ids = _ids(tok)
    kept = copy.deepcopy(prompt_ids)
    sampling = Sampling(n=4, max_new_tokens=8, seed=3, batch_size=5)
    scored = sample_and_score(policy, tok, prompt_ids, PROMPTS, sampling, reference=reference,
                              scorer=get_scorer("length"), prompt_labels=[10, 20, 30])
    assert prompt_ids == kept
    assert [s.prompt_index for s in scored.samples] == [i for i in range(3) for _ in range(4)]  # not rewritten
    assert scored.prompt_index == [label for label in (10, 20, 30) for _ in range(4)]
    record = summarize(scored)
    lengths = [len(s.completion_ids) - int(s.finished) for s in scored.samples]
    assert 0 < np.mean([s.finished for s in scored.samples]) < 1, "the test needs finished and cut samples"
    assert record.length == np.mean([completion_length(s) for s in scored.samples]) == np.mean(lengths)
    assert record.generated_tokens == record.gold == np.mean([len(s.completion_ids) for s in scored.samples])
    assert record.length_se == mean_se(lengths, scored.prompt_index)[1]
    assert record.eos_rate == np.mean([s.finished for s in scored.samples])
    kl = kl_estimates(scored.policy_logps, scored.ref_logps, groups=scored.prompt_index)
    assert (record.kl_k1, record.kl_k1_se, record.kl_k3, record.kl_k3_se) == (
        kl["kl_k1"], kl["kl_k1_se"], kl["kl_k3"], kl["kl_k3_se"])
    assert record.kl_k3 > 0 and record.sqrt_kl == math.sqrt(record.kl_k3) and record.n_samples == 12


def test_same_seed_same_record_and_extra_fields(tiny):
    policy, reference, tok = tiny
    sampling = Sampling(n=2, max_new_tokens=6, seed=7)

    def extra(scored):
        return {"first": scored.samples[0].text, "n_prompts": len(set(scored.prompt_index))}

    a = sampled_eval(policy, tok, _ids(tok), PROMPTS, sampling, reference=reference, extra=extra)
    b = sampled_eval(policy, tok, _ids(tok), PROMPTS, sampling, reference=reference, extra=extra)
    assert a == b and a.extra["n_prompts"] == 3 and a.gold is None and a.gold_se is None


def test_without_a_reference_no_kl(tiny):
    policy, _, tok = tiny
    record = sampled_eval(policy, tok, _ids(tok), PROMPTS, Sampling(n=2, max_new_tokens=4), scorer=get_scorer("length"))
    assert record.kl_k3 is None and record.kl_k1 is None and record.sqrt_kl is None and record.gold is not None


def test_policy_logps_from_generate_are_the_teacher_forced_ones(tiny):
    """At temperature 1 without top-p the log-probs `generate` sampled from are the policy's own; the reference
    scored inside `reference_context` (here: the policy itself) gives KL 0 up to float rounding."""
    policy, _, tok = tiny
    entered = []

    class Context:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            return False

    sampling = Sampling(n=3, max_new_tokens=6, seed=1, policy_logps_from_generate=True)
    scored = sample_and_score(policy, tok, _ids(tok), PROMPTS, sampling, reference=policy, reference_context=Context)
    assert entered == [True]
    torch.testing.assert_close(torch.tensor(scored.policy_logps, dtype=torch.float64),
                               torch.tensor(scored.ref_logps, dtype=torch.float64), atol=1e-4, rtol=1e-5)
    assert abs(summarize(scored).kl_k1) < 1e-4


def test_isdaa_eval_reports_no_sqrt_kl_for_a_non_finite_kl():
    """`isdaa eval` reports √KL only for a finite k3 estimate (None for a diverged policy's inf / NaN), while the
    record itself keeps the lab's √max(k3, 0)."""
    for kl in (float("inf"), float("nan")):
        record = SampledEval(n_samples=2, length=1.0, length_se=0.0, generated_tokens=2.0, generated_tokens_se=0.0,
                             eos_rate=1.0, kl_k3=kl)
        assert _summary_fields(record)["sqrt_kl"] is None
    finite = SampledEval(n_samples=2, length=1.0, length_se=0.0, generated_tokens=2.0, generated_tokens_se=0.0,
                         eos_rate=1.0, kl_k3=4.0)
    assert _summary_fields(finite)["sqrt_kl"] == 2.0
