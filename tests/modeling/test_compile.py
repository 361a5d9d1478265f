"""`model.compile` (isdaa.modeling.compiling): the MLPs and norms compiled with inductor give the eager log-probs
and gradients (fp32, atol 1e-5 / 1e-4: inductor may reorder float sums), on the shared-prompt path, with and
without layer checkpointing; a deep copy (the frozen reference) computes with its own weights. The runs that
compile are in the slow group (inductor compiles C++ kernels: ~10-60 s on 2 CPU cores)."""

from __future__ import annotations

import copy

import pytest
import torch

from isdaa.modeling.checkpointing import enable_layer_checkpointing
from isdaa.modeling.compiling import compile_blocks, compiled_modules
from isdaa.modeling.logprobs import batch_logps_shared_prompt
from isdaa.modeling.tiny import tiny_llama

V = 50


def shared_batch(seed: int, p: int, c: int, b: int = 2):
    g = torch.Generator().manual_seed(seed)
    ids = [torch.randint(3, V, (b, n), generator=g) for n in (p, c, c + 1)]
    return ids[0], torch.ones_like(ids[0]), ids[1], torch.ones_like(ids[1]), ids[2], torch.ones_like(ids[2])


def test_compile_targets_mlps_and_norms():
    model = tiny_llama(V, num_layers=2, seed=0)
    assert compile_blocks(model) == 2 + 2 * 2 + 1  # 2 MLPs, 2 norms per layer, the final norm
    names = {n for n, m in model.named_modules() if m in compiled_modules(model)}
    assert names == {"model.layers.0.mlp", "model.layers.1.mlp", "model.layers.0.input_layernorm",
                     "model.layers.0.post_attention_layernorm", "model.layers.1.input_layernorm",
                     "model.layers.1.post_attention_layernorm", "model.norm"}
    assert all("self_attn" not in n for n in names)
    with pytest.raises(ValueError, match="nothing|no decoder-layer"):
        compile_blocks(torch.nn.Linear(2, 2))


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [False, True])
def test_compiled_logps_and_gradients_equal_eager(checkpointing):
    torch.set_num_threads(1)
    eager = tiny_llama(V, hidden_size=32, num_layers=2, seed=0).train()
    if checkpointing:
        enable_layer_checkpointing(eager)
    compiled = copy.deepcopy(eager)
    compile_blocks(compiled)
    for seed, (p, c) in enumerate([(7, 3), (9, 5), (6, 4)]):  # changing lengths: the dynamic recompile too
        batch = shared_batch(seed, p, c)
        results = []
        for model in (eager, compiled):
            model.zero_grad(set_to_none=True)
            out = batch_logps_shared_prompt(model, *batch)
            (out["chosen_logps"] - 0.3 * out["rejected_logps"]).sum().backward()
            results.append((out, {n: q.grad.clone() for n, q in model.named_parameters()}))
        (out_e, g_e), (out_c, g_c) = results
        for k in out_e:
            torch.testing.assert_close(out_c[k], out_e[k], rtol=0, atol=1e-5, msg=k)
        for n in g_e:
            torch.testing.assert_close(g_c[n], g_e[n], rtol=1e-4, atol=1e-4, msg=n)


@pytest.mark.slow
def test_a_deep_copy_computes_with_its_own_weights():
    """The frozen reference is `copy.deepcopy(policy)`: after the policy's weights change, the copy must still
    give the old log-probs (a compiled wrapper bound to the original module would give the new ones)."""
    torch.set_num_threads(1)
    policy = tiny_llama(V, hidden_size=32, num_layers=2, seed=0).eval()
    eager_before = copy.deepcopy(policy)
    compile_blocks(policy)
    reference = copy.deepcopy(policy)
    with torch.no_grad():
        for q in policy.model.layers[0].mlp.parameters():
            q.mul_(1.5)
        policy.model.norm.weight.mul_(0.5)
        batch = shared_batch(0, 6, 3)
        ref, before, after = (batch_logps_shared_prompt(m, *batch) for m in (reference, eager_before, policy))
    torch.testing.assert_close(ref["chosen_logps"], before["chosen_logps"], rtol=0, atol=1e-5)
    assert (after["chosen_logps"] - before["chosen_logps"]).abs().max() > 1e-3
