"""isdaa.modeling.logprobs against a naive per-sequence, full-logits reference (float32, tolerance 1e-5)."""

from __future__ import annotations

import pytest
import torch

from isdaa.modeling.logprobs import (
    batch_logps,
    batch_logps_shared_prompt,
    mean_logps,
    position_ids_from_mask,
    sequence_logps,
)
from isdaa.modeling.tiny import tiny_llama

torch.set_num_threads(1)

V = 50
PAD = 0
TOL = dict(rtol=0, atol=1e-5)


def make_model(attn: str = "sdpa", seed: int = 0):
    """Tiny Llama (RoPE: relative positions) or, with attn="gpt2", a tiny GPT-2 (absolute positions, tied
    head), where wrong position ids for left padding change the result."""
    if attn == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return GPT2LMHeadModel(config).float()
    model = tiny_llama(V, hidden_size=32, num_layers=2, num_heads=4, seed=seed).float()
    model.set_attn_implementation(attn)
    return model


def make_pairs(seed: int = 1):
    """Three (prompt, chosen, rejected) triples of token lists with different lengths."""
    g = torch.Generator().manual_seed(seed)

    def toks(n):
        return torch.randint(3, V, (n,), generator=g).tolist()

    return [
        (toks(2), toks(4), toks(1)),
        (toks(6), toks(1), toks(5)),
        (toks(3), toks(7), toks(3)),
    ]


def pack(seqs, layout):
    """seqs: list of (prompt, completion) token lists → input_ids, attention_mask, completion_mask (N, T).

    layout "right": prompt+completion right-padded; "left": left-padded; "both": prompt left-padded to the
    longest prompt, completion right-padded to the longest completion (padding in the middle of the batch).
    """
    rows = []
    if layout == "both":
        p_max = max(len(p) for p, _ in seqs)
        c_max = max(len(c) for _, c in seqs)
        for p, c in seqs:
            lp, lc = p_max - len(p), c_max - len(c)
            rows.append(([PAD] * lp + p + c + [PAD] * lc, [0] * lp + [1] * (len(p) + len(c)) + [0] * lc,
                         [0] * (lp + len(p)) + [1] * len(c) + [0] * lc))
    else:
        t = max(len(p) + len(c) for p, c in seqs)
        for p, c in seqs:
            ids, am, cm = p + c, [1] * (len(p) + len(c)), [0] * len(p) + [1] * len(c)
            pad = t - len(ids)
            if layout == "right":
                rows.append((ids + [PAD] * pad, am + [0] * pad, cm + [0] * pad))
            else:
                rows.append(([PAD] * pad + ids, [0] * pad + am, [0] * pad + cm))
    return tuple(torch.tensor([r[i] for r in rows]) for i in range(3))


def naive_logps(model, seqs):
    """Each sequence alone, no padding, full logits, log_softmax, loop over the response tokens."""
    summed, lengths = [], []
    for p, c in seqs:
        ids = torch.tensor([p + c])
        logp = torch.log_softmax(model(input_ids=ids).logits.float()[0], dim=-1)  # (T, V)
        total = torch.zeros(())
        for t in range(len(p), len(p) + len(c)):
            total = total + logp[t - 1, ids[0, t]]
        summed.append(total)
        lengths.append(len(c))
    return torch.stack(summed), torch.tensor(lengths, dtype=torch.float32)


def all_seqs(pairs):
    """The 2B (prompt, completion) sequences in batch order: chosen rows, then rejected rows."""
    return [(p, c) for p, c, _ in pairs] + [(p, r) for p, _, r in pairs]


def grads(model, value_fn):
    """Gradients of a random-weighted sum of the (N,) output w.r.t. every trainable parameter."""
    model.zero_grad()
    values = value_fn()
    w = torch.linspace(0.5, 1.5, values.shape[0])
    (values * w).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_grads_close(g1, g2, atol=1e-5):
    assert g1.keys() == g2.keys()
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=0, atol=atol, msg=name)


# ------------------------------------------------------------------------------------------------ tests


def test_position_ids_from_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0]])
    expected = torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 2, 2], [0, 0, 1, 2, 2]])
    assert torch.equal(position_ids_from_mask(mask), expected)


@pytest.mark.parametrize("attn", ["sdpa", "eager", "gpt2"])
@pytest.mark.parametrize("layout", ["right", "left", "both"])
def test_sequence_logps_matches_naive(layout, attn):
    model = make_model(attn)
    seqs = all_seqs(make_pairs())
    ids, am, cm = pack(seqs, layout)
    summed, lengths = sequence_logps(model, ids, am, cm)
    ref, ref_len = naive_logps(model, seqs)
    assert summed.dtype == torch.float32 and summed.shape == (len(seqs),)
    torch.testing.assert_close(summed, ref, **TOL)
    assert torch.equal(lengths, ref_len)


def test_padding_side_does_not_change_result():
    model = make_model()
    seqs = all_seqs(make_pairs())
    results = [sequence_logps(model, *pack(seqs, layout))[0] for layout in ("right", "left", "both")]
    torch.testing.assert_close(results[0], results[1], **TOL)
    torch.testing.assert_close(results[0], results[2], **TOL)


def test_chunk_size_and_recompute_do_not_change_values_or_gradients():
    model = make_model()
    seqs = all_seqs(make_pairs())
    batch = pack(seqs, "left")
    big = sequence_logps(model, *batch, chunk_size=4096)[0]
    one = sequence_logps(model, *batch, chunk_size=1)[0]
    three = sequence_logps(model, *batch, chunk_size=3, recompute=True)[0]
    # equal up to fp32 round-off of differently blocked matmuls
    torch.testing.assert_close(one, big, **TOL)
    torch.testing.assert_close(three, big, **TOL)
    g_big = grads(model, lambda: sequence_logps(model, *batch, chunk_size=4096)[0])
    g_one = grads(model, lambda: sequence_logps(model, *batch, chunk_size=1)[0])
    g_rec = grads(model, lambda: sequence_logps(model, *batch, chunk_size=3, recompute=True)[0])
    assert_grads_close(g_one, g_big)
    assert_grads_close(g_rec, g_big)


@pytest.mark.parametrize("layout", ["right", "left"])
def test_gradients_match_naive(layout):
    model = make_model()
    seqs = all_seqs(make_pairs())
    batch = pack(seqs, layout)
    g_fast = grads(model, lambda: sequence_logps(model, *batch, chunk_size=2)[0])
    g_ref = grads(model, lambda: naive_logps(model, seqs)[0])
    assert any(g.abs().sum() > 0 for g in g_ref.values())
    assert_grads_close(g_fast, g_ref)


def test_lm_head_only_sees_response_rows():
    """The full (N, T, V) logits are never built: the head runs on the N last rows + M response rows."""
    model = make_model()
    seqs = all_seqs(make_pairs())
    ids, am, cm = pack(seqs, "right")
    calls = []
    handle = model.lm_head.register_forward_hook(lambda mod, inp, out: calls.append(out.shape[:-1].numel()))
    try:
        sequence_logps(model, ids, am, cm, chunk_size=4)
    finally:
        handle.remove()
    n, m = ids.shape[0], int(cm.sum())
    assert sum(calls) == n + m  # logits_to_keep=1 row per sequence, then the response rows
    assert max(calls[1:]) <= 4


def test_no_response_tokens_gives_zero_not_nan():
    model = make_model()
    seqs = [([5, 6, 7], [8, 9]), ([5, 6, 7, 8], [])]
    ids, am, cm = pack(seqs, "right")
    summed, lengths = sequence_logps(model, ids, am, cm)
    assert summed[1].item() == 0.0 and lengths.tolist() == [2.0, 0.0]
    torch.testing.assert_close(summed[:1], naive_logps(model, seqs[:1])[0], **TOL)
    summed.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    torch.testing.assert_close(mean_logps(summed, lengths), torch.stack([summed[0] / 2, torch.tensor(0.0)]))


def test_bad_masks_raise():
    model = make_model()
    ids, am, cm = pack([([5, 6], [7]), ([5], [7, 8, 9])], "right")
    first = cm.clone()
    first[0, 0] = 1
    with pytest.raises(ValueError, match="position 0"):
        sequence_logps(model, ids, am, first)
    on_pad = cm.clone()
    on_pad[0, -1] = 1  # row 0 is padded at the end
    with pytest.raises(ValueError, match="padding"):
        sequence_logps(model, ids, am, on_pad)


def test_batch_logps_splits_chosen_and_rejected():
    model = make_model()
    pairs = make_pairs()
    ids, am, cm = pack(all_seqs(pairs), "right")
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = batch_logps(model, {"input_ids": ids, "attention_mask": am, "completion_mask": cm})
    finally:
        handle.remove()
    assert len(calls) == 1  # one forward over the 2B rows
    ref_c, len_c = naive_logps(model, [(p, c) for p, c, _ in pairs])
    ref_r, len_r = naive_logps(model, [(p, r) for p, _, r in pairs])
    torch.testing.assert_close(out["chosen_logps"], ref_c, **TOL)
    torch.testing.assert_close(out["rejected_logps"], ref_r, **TOL)
    assert torch.equal(out["chosen_lengths"], len_c) and torch.equal(out["rejected_lengths"], len_r)


PEFT_WARNING = "ignore:.*is_gradient_checkpointing.*:FutureWarning"  # raised inside peft.get_peft_model


@pytest.mark.filterwarnings(PEFT_WARNING)
def test_peft_lora_model_matches_naive():
    peft = pytest.importorskip("peft")
    base = make_model()
    seqs = all_seqs(make_pairs())
    batch = pack(seqs, "left")
    base_logps = sequence_logps(base, *batch)[0].detach()
    # init_lora_weights=False: random A and B, so the adapter changes the outputs
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = peft.get_peft_model(base, config)
    summed, lengths = sequence_logps(model, *batch, chunk_size=3)
    ref, ref_len = naive_logps(model, seqs)
    assert (summed - base_logps).abs().max() > 1e-3  # the adapter is active
    torch.testing.assert_close(summed, ref, **TOL)
    assert torch.equal(lengths, ref_len)
    g_fast = grads(model, lambda: sequence_logps(model, *batch, chunk_size=3)[0])
    g_ref = grads(model, lambda: naive_logps(model, seqs)[0])
    assert g_fast and all("lora_" in n for n in g_fast)
    assert_grads_close(g_fast, g_ref)


# ---------------------------------------------------------------------------------------- shared prompt


def shared_inputs(pairs, prompt_side="left"):
    """Prompts padded on `prompt_side`, completions right-padded: (prompt_ids, prompt_mask, chosen_ids, ...)."""

    def pad(seqs, side):
        t = max(len(s) for s in seqs)
        ids, mask = [], []
        for s in seqs:
            k = t - len(s)
            ids.append([PAD] * k + s if side == "left" else s + [PAD] * k)
            mask.append([0] * k + [1] * len(s) if side == "left" else [1] * len(s) + [0] * k)
        return torch.tensor(ids), torch.tensor(mask)

    return (
        *pad([p for p, _, _ in pairs], prompt_side),
        *pad([c for _, c, _ in pairs], "right"),
        *pad([r for _, _, r in pairs], "right"),
    )


@pytest.mark.parametrize("attn", ["sdpa", "gpt2"])
@pytest.mark.parametrize("prompt_side", ["left", "right"])
def test_shared_prompt_matches_concatenated(prompt_side, attn):
    """Log-probs to 1e-5 and gradients (every parameter) to 1e-5 against batch_logps on prompt+completion."""
    model = make_model(attn)
    pairs = make_pairs()
    ids, am, cm = pack(all_seqs(pairs), "right")
    batch = {"input_ids": ids, "attention_mask": am, "completion_mask": cm}
    shared = shared_inputs(pairs, prompt_side)
    out = batch_logps_shared_prompt(model, *shared, chunk_size=2)
    ref = batch_logps(model, batch)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], **TOL)

    def stacked(fn):
        return lambda: torch.cat([(d := fn())["chosen_logps"], d["rejected_logps"]])

    g_shared = grads(model, stacked(lambda: batch_logps_shared_prompt(model, *shared, chunk_size=2)))
    g_ref = grads(model, stacked(lambda: batch_logps(model, batch)))
    assert_grads_close(g_shared, g_ref)


@pytest.mark.filterwarnings(PEFT_WARNING)
def test_shared_prompt_on_lora_model():
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = peft.get_peft_model(make_model(), config)
    pairs = make_pairs(seed=3)
    ids, am, cm = pack(all_seqs(pairs), "right")
    out = batch_logps_shared_prompt(model, *shared_inputs(pairs))
    ref = batch_logps(model, {"input_ids": ids, "attention_mask": am, "completion_mask": cm})
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], **TOL)
    out["chosen_logps"].sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_shared_prompt_refuses_gradient_checkpointing():
    model = make_model()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    model.train()
    with pytest.raises(ValueError, match="gradient checkpointing"):
        batch_logps_shared_prompt(model, *shared_inputs(make_pairs()))


def test_recompute_keeps_no_logits_for_backward():
    """recompute=True: no (rows, V) logits are saved for the backward (they are without it)."""
    model = make_model()
    batch = pack(all_seqs(make_pairs()), "right")

    def saved_logit_tensors(recompute):
        shapes = []

        def pack_hook(t):
            shapes.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
            sequence_logps(model, *batch, chunk_size=4, recompute=recompute)
        return [s for s in shapes if len(s) == 2 and s[0] <= 4 and s[1] == V]  # (chunk rows, V)

    assert saved_logit_tensors(recompute=False)
    assert not saved_logit_tensors(recompute=True)
