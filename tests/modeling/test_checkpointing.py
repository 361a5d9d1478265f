"""isdaa's per-layer activation checkpointing (isdaa.modeling.checkpointing) keeps prompt sharing.

Properties: the same log-probs and gradients as without checkpointing (fp32, atol 1e-5 — in practice the
recomputation repeats the same float operations, so the values agree to ~1e-7), on both the shared-prompt
and the concatenated forward; the prompt runs through the model once; the layers are really replayed in the
backward and far fewer tensors are saved for it; the model's KV cache is not appended to a second time.
"""

from __future__ import annotations

import copy

import pytest
import torch

from isdaa.modeling.checkpointing import checkpointed_layers, enable_layer_checkpointing
from isdaa.modeling.logprobs import batch_logps, batch_logps_shared_prompt
from isdaa.modeling.tiny import tiny_llama

torch.set_num_threads(1)

V, PAD = 50, 0
TOL = dict(rtol=0, atol=1e-5)


def model_pair(seed: int = 0):
    """(plain, checkpointed): two copies of one tiny Llama (GQA: 4 heads, 2 KV heads via the config)."""
    plain = tiny_llama(V, hidden_size=32, num_layers=3, num_heads=4, seed=seed).float().train()
    ckpt = copy.deepcopy(plain)
    assert enable_layer_checkpointing(ckpt) == 3
    return plain, ckpt


def shared_batch(seed: int = 1, b: int = 3):
    """A shared-prompt batch (prompts left-padded, completions right-padded) of `b` random pairs."""
    g = torch.Generator().manual_seed(seed)

    def pad(lengths, side):
        t = max(lengths)
        ids = torch.full((len(lengths), t), PAD)
        mask = torch.zeros(len(lengths), t, dtype=torch.long)
        for i, n in enumerate(lengths):
            sl = slice(t - n, t) if side == "left" else slice(0, n)
            ids[i, sl] = torch.randint(3, V, (n,), generator=g)
            mask[i, sl] = 1
        return ids, mask

    return (*pad([7, 3, 9][:b], "left"), *pad([4, 1, 6][:b], "right"), *pad([2, 5, 3][:b], "right"))


def concatenated(shared):
    """The same pairs as `collate` rows: prompt+completion, right-padded, chosen rows then rejected rows."""
    p_ids, p_mask, c_ids, c_mask, r_ids, r_mask = shared
    rows = []
    for comp_ids, comp_mask in ((c_ids, c_mask), (r_ids, r_mask)):
        for i in range(p_ids.shape[0]):
            p, c = p_ids[i][p_mask[i].bool()].tolist(), comp_ids[i][comp_mask[i].bool()].tolist()
            rows.append((p + c, len(p)))
    t = max(len(s) for s, _ in rows)
    ids = torch.tensor([s + [PAD] * (t - len(s)) for s, _ in rows])
    am = torch.tensor([[1] * len(s) + [0] * (t - len(s)) for s, _ in rows])
    cm = torch.tensor([[0] * n + [1] * (len(s) - n) + [0] * (t - len(s)) for s, n in rows])
    return {"input_ids": ids, "attention_mask": am, "completion_mask": cm}


def value_and_grads(model, fn):
    model.zero_grad(set_to_none=True)
    out = fn(model)
    loss = (out["chosen_logps"] - 0.5 * out["rejected_logps"]).sum()
    loss.backward()
    return {k: v.detach() for k, v in out.items()}, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_same(a, b):
    (va, ga), (vb, gb) = a, b
    for k in va:
        torch.testing.assert_close(va[k], vb[k], **TOL, msg=k)
    assert ga.keys() == gb.keys()
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], **TOL, msg=n)


@pytest.mark.parametrize("path", ["shared", "concatenated"])
def test_same_logps_and_gradients_as_without_checkpointing(path):
    plain, ckpt = model_pair()
    shared = shared_batch()
    if path == "shared":
        fn = lambda m: batch_logps_shared_prompt(m, *shared, chunk_size=4)  # noqa: E731
    else:
        batch = concatenated(shared)
        fn = lambda m: batch_logps(m, batch, chunk_size=4)  # noqa: E731
    ref = value_and_grads(plain, fn)
    got = value_and_grads(ckpt, fn)
    assert all(g.abs().max() > 0 for n, g in ref[1].items() if "layers" in n)  # the test has something to compare
    assert_same(got, ref)


def test_shared_prompt_with_checkpointing_equals_concatenated_without():
    """The path the trainer now takes under checkpointing gives the numbers of the plain concatenated forward."""
    plain, ckpt = model_pair(seed=2)
    shared = shared_batch(seed=5)
    ref = value_and_grads(plain, lambda m: batch_logps(m, concatenated(shared)))
    got = value_and_grads(ckpt, lambda m: batch_logps_shared_prompt(m, *shared))
    assert_same(got, ref)


def test_prompt_runs_once_and_layers_are_replayed_in_backward():
    _, ckpt = model_pair()
    shared = shared_batch()
    embed_shapes = []
    ckpt.model.embed_tokens.register_forward_hook(lambda mod, args, out: embed_shapes.append(tuple(args[0].shape)))
    layer_calls = []
    cls_forward = type(ckpt.model.layers[0]).forward

    def counting_forward(self, *args, **kwargs):
        layer_calls.append(torch.is_grad_enabled())
        return cls_forward(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(ckpt.model.layers[0]), "forward", counting_forward)
        out = batch_logps_shared_prompt(ckpt, *shared)
        forwards = len(layer_calls)
        out["chosen_logps"].sum().backward()
    p_ids, _, c_ids, _, r_ids, _ = shared
    b = p_ids.shape[0]
    # one forward of the B prompts, one of the 2B completions: the prompt is not repeated
    assert embed_shapes == [(b, p_ids.shape[1]), (2 * b, max(c_ids.shape[1], r_ids.shape[1]))]
    assert forwards == 2 * 3  # 3 layers, two model calls
    assert len(layer_calls) == 2 * forwards  # each layer call replayed once in the backward


def saved_bytes(model, fn) -> int:
    """Bytes of the tensors autograd saves for the backward outside checkpointed regions (where they live)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(model)
    (out["chosen_logps"].sum()).backward()
    return total


def test_checkpointing_saves_far_less_for_the_backward():
    plain = tiny_llama(V, hidden_size=64, num_layers=4, num_heads=4, seed=0).train()
    ckpt = copy.deepcopy(plain)
    enable_layer_checkpointing(ckpt)
    shared = shared_batch()
    fn = lambda m: batch_logps_shared_prompt(m, *shared, chunk_size=4)  # noqa: E731
    with_ckpt, without = saved_bytes(ckpt, fn), saved_bytes(plain, fn)
    assert with_ckpt < 0.25 * without, (with_ckpt, without)


def test_model_cache_is_not_appended_twice():
    """After forward + backward, every cache layer holds prompt + completion tokens exactly once."""
    _, ckpt = model_pair()
    p_ids, p_mask, c_ids, c_mask, r_ids, r_mask = shared_batch()
    out = ckpt(input_ids=p_ids, attention_mask=p_mask, use_cache=True)
    cache = out.past_key_values
    out.logits.sum().backward()
    assert [layer.keys.shape[-2] for layer in cache.layers] == [p_ids.shape[1]] * 3


def test_eval_and_no_grad_run_the_layers_once():
    _, ckpt = model_pair()
    shared = shared_batch()
    ckpt.eval()
    with torch.no_grad():
        ref = batch_logps_shared_prompt(ckpt, *shared)
    ckpt.train()
    with torch.no_grad():
        again = batch_logps_shared_prompt(ckpt, *shared)
    for k in ref:
        torch.testing.assert_close(again[k], ref[k], **TOL)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # raised inside peft
def test_lora_under_checkpointing_matches():
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    base, _ = model_pair()
    plain = peft.get_peft_model(copy.deepcopy(base), config)
    ckpt = copy.deepcopy(plain)
    enable_layer_checkpointing(ckpt)
    shared = shared_batch()
    fn = lambda m: batch_logps_shared_prompt(m, *shared)  # noqa: E731
    got, ref = value_and_grads(ckpt, fn), value_and_grads(plain, fn)
    assert_same(got, ref)
    assert len(checkpointed_layers(ckpt)) == 3


def test_refuses_on_top_of_transformers_checkpointing():
    model = tiny_llama(V, seed=0)
    model.activation_checkpointing_enable()
    with pytest.raises(ValueError, match="transformers' gradient checkpointing"):
        enable_layer_checkpointing(model)
