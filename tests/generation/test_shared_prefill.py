"""`sample_completions(shared_prefill=True)` (isdaa's decoding loop, each prompt prefilled once) and
`isdaa.modeling.prompt_cache` (completions scored on a kept prompt cache).

Closed properties: the sampled log-probs equal the teacher-forced ones; the first token's frequencies match the
model's softmax (and top-p's renormalised one); completions end at their first EOS; a kept cache scores exactly
what `score_logps` scores, at every use; nothing depends on the group size but the random stream.
"""

import pytest
import torch

from isdaa.generation import sample_completions, score_logps
from isdaa.modeling.prompt_cache import PromptCache, completion_logps

def _draw(model, tok, prompts, **kw):
    args = dict(n=4, max_new_tokens=30, batch_size=6, seed=3, progress=False, shared_prefill=True)
    return sample_completions(model, tok, prompts, **{**args, **kw})


def test_samples_end_at_eos_and_carry_their_teacher_forced_logps(sampling_setup):
    model, tok, prompts = sampling_setup
    samples = _draw(model, tok, prompts)
    assert [(s.prompt_index, s.sample_index) for s in samples] == [(i, j) for i in range(3) for j in range(4)]
    finished = [s for s in samples if s.finished]
    assert finished and len(finished) < len(samples)  # rows left the batch at EOS while others went on
    eos = tok.eos_token_id
    for s in samples:
        assert (s.completion_ids[-1] == eos) == s.finished and eos not in s.completion_ids[:-1]
        assert s.finished or len(s.completion_ids) == 30
    teacher = score_logps(model, [prompts[s.prompt_index] for s in samples], [s.completion_ids for s in samples])
    torch.testing.assert_close(teacher, torch.tensor([s.sampled_logp for s in samples], dtype=torch.float32),
                               atol=1e-4, rtol=0)
    assert [s.completion_ids for s in _draw(model, tok, prompts)] == [s.completion_ids for s in samples]


@pytest.mark.parametrize("top_p", [1.0, 0.5])
def test_first_tokens_follow_the_model_distribution(sampling_setup, top_p):
    model, tok, prompts = sampling_setup
    n = 4000
    samples = _draw(model, tok, prompts[:1], n=n, max_new_tokens=1, batch_size=n, top_p=top_p)
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([prompts[0]])).logits[0, -1].float().softmax(-1)
    if top_p < 1:
        order = probs.argsort(descending=True)
        keep = order[: int((probs[order].cumsum(0) < top_p).sum()) + 1]
        probs = torch.zeros_like(probs).index_fill(0, keep, 1.0) * probs
        probs = probs / probs.sum()
    counts = torch.bincount(torch.tensor([s.completion_ids[0] for s in samples]), minlength=len(probs)).double()
    assert float((counts / n - probs).abs().max()) < 4 * float((probs * (1 - probs) / n).sqrt().max()) + 1e-9
    assert bool((counts[probs == 0] == 0).all())


def test_kept_prompt_cache_scores_what_score_logps_scores(sampling_setup):
    model, tok, prompts = sampling_setup
    samples = _draw(model, tok, prompts, seed=5)
    index, completions = [s.prompt_index for s in samples], [s.completion_ids for s in samples]
    expected = score_logps(model, [prompts[i] for i in index], completions)
    cache = PromptCache.encode(model, prompts, group_size=2, pad_id=tok.pad_token_id)
    for batch_size in (5, 64):  # twice on the same cache: a use leaves it as it was
        got = completion_logps(model, cache, index, completions, batch_size=batch_size)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-6)  # sums of ~30 tokens: fp32 rounding


def test_pairs_with_shared_prefill_carry_the_teacher_forced_behaviour_logps(sampling_setup):
    from isdaa.generation import generate_pairs
    from isdaa.generation.pairs import _add_behaviour_logps

    model, tok, _ = sampling_setup
    prompts = ["w1 w2 w3", "w5", "w7 w8 w9 w10 w11 w12 w13", "w20 w21"] * 3
    rows = generate_pairs(model, tok, prompts, scorer="length", max_new_tokens=12, batch_size=6, seed=1,
                          shared_prefill=True)
    assert len(rows) >= 8
    fresh = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]
    _add_behaviour_logps(fresh, model, tok, batch_size=5, progress=False)  # the concatenated teacher-forced pass
    for got, want in zip(rows, fresh):
        for side in ("behavior_chosen_logps", "behavior_rejected_logps"):
            assert got[side] == pytest.approx(want[side], abs=1e-4)


def test_scoring_on_the_cache_is_in_eval_mode_and_restores_the_mode():
    """A model in training mode with dropout scores the same numbers twice (no dropout), and stays in training mode."""
    from isdaa.modeling.tiny import tiny_llama, word_tokenizer

    tok = word_tokenizer([f"w{i}" for i in range(20)])
    model = tiny_llama(len(tok), seed=0)
    model.config.attention_dropout = 0.5
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.5
    model.train()
    prompts = [tok("w1 w2 w3")["input_ids"], tok("w4")["input_ids"]]
    completions = [tok("w5 w6")["input_ids"], tok("w7")["input_ids"]]
    runs = [completion_logps(model, PromptCache.encode(model, prompts, group_size=2, pad_id=0), [0, 1], completions)
            for _ in range(2)]
    assert torch.equal(runs[0], runs[1]) and model.training
