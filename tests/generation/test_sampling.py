import pytest
import torch

from isdaa.generation import sample_completions, score_logps

def test_deterministic_under_seed_and_rng_untouched(sampling_setup):
    model, tok, prompts = sampling_setup
    kw = dict(n=2, max_new_tokens=8, batch_size=4, progress=False)
    torch.manual_seed(123)
    a = sample_completions(model, tok, prompts, seed=7, **kw)
    after = torch.rand(3)
    b = sample_completions(model, tok, prompts, seed=7, **kw)
    c = sample_completions(model, tok, prompts, seed=8, **kw)
    assert [s.completion_ids for s in a] == [s.completion_ids for s in b]
    assert [s.completion_ids for s in a] != [s.completion_ids for s in c]
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # the caller's RNG stream is not consumed
    assert [(s.prompt_index, s.sample_index) for s in a] == [(i, j) for i in range(3) for j in range(2)]


def test_teacher_forced_logps_match_generate(sampling_setup):
    model, tok, prompts = sampling_setup
    # checkpoint generation defaults must not leak into the sampling distribution
    model.generation_config.top_k = 5
    model.generation_config.repetition_penalty = 1.5
    try:
        samples = sample_completions(
            model, tok, prompts, n=4, max_new_tokens=30, batch_size=5, seed=3, progress=False, output_scores=True
        )
    finally:
        model.generation_config.top_k = None
        model.generation_config.repetition_penalty = None
    assert model.training  # mode restored
    eos = tok.eos_token_id
    finished = [s for s in samples if s.finished]
    assert finished and len(finished) < len(samples)  # both kinds are covered
    for s in samples:
        assert (s.completion_ids[-1] == eos) == s.finished
        assert eos not in s.completion_ids[:-1]
        assert s.finished or len(s.completion_ids) == 30
        assert s.text == tok.decode(s.completion_ids, skip_special_tokens=True)
    teacher = score_logps(model, [prompts[s.prompt_index] for s in samples], [s.completion_ids for s in samples], batch_size=3)
    generated = torch.tensor([s.sampled_logp for s in samples], dtype=torch.float32)
    torch.testing.assert_close(teacher, generated, atol=1e-4, rtol=0)


def test_other_temperature_is_not_the_model_distribution(sampling_setup):
    model, tok, prompts = sampling_setup
    samples = sample_completions(
        model, tok, prompts, n=1, max_new_tokens=6, temperature=0.5, batch_size=3, seed=0, progress=False, output_scores=True
    )
    teacher = score_logps(model, [prompts[s.prompt_index] for s in samples], [s.completion_ids for s in samples])
    generated = torch.tensor([s.sampled_logp for s in samples])
    assert (teacher - generated).abs().max() > 1e-2


def test_score_logps_batching_invariant(sampling_setup):
    model, tok, prompts = sampling_setup
    comps = [[5, 6, 2], [7], [8, 9, 10, 11]]
    one = score_logps(model, prompts, comps, batch_size=1)
    many = score_logps(model, prompts, comps, batch_size=3)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        score_logps(model, prompts, comps[:2])
