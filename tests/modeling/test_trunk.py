"""LoRA on the top layers (`lora.layers`) and the frozen trunk's cache (`lora.cache_trunk`).

The cache's forward equals the full forward (log-probs and LoRA gradients, atol 1e-5), each sequence's trunk runs
once, nothing below the adapted layers gets a gradient, and a run with the cache trains the weights of a run
without it (atol 1e-5).
"""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file

import isdaa
from conftest import TINY_INIT, WORDS
from isdaa.config import LoraConfig
from isdaa.data import Example, collate
from isdaa.errors import InputError
from isdaa.modeling.loading import apply_lora
from isdaa.modeling.logprobs import batch_logps
from isdaa.modeling.tiny import tiny_llama
from isdaa.modeling.trunk import TrunkCache, decoder_layer_count


def _examples(n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    tok = lambda k: [rng.randrange(3, 40) for _ in range(k)]  # noqa: E731
    return [Example(tok(rng.randrange(1, 9)), tok(rng.randrange(1, 6)) + [2], tok(rng.randrange(0, 6)) + [2])
            for _ in range(n)]


def _lora_model(layers: int):
    model = tiny_llama(40, hidden_size=32, num_layers=4, num_heads=4, seed=0)
    lora = LoraConfig(enabled=True, r=4, target_modules=["q_proj", "v_proj", "down_proj"], layers=layers)
    model = apply_lora(model, lora, seed=0)
    with torch.no_grad():  # adapters away from their zero init, so that they change the log-probs
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    return model


def test_lora_layers_adapt_only_the_top_layers():
    model = _lora_model(layers=2)
    adapted = {int(n.split(".layers.")[1].split(".")[0]) for n, p in model.named_parameters() if p.requires_grad}
    assert adapted == {2, 3} and decoder_layer_count(model) == 4
    with pytest.raises(InputError, match="lora.layers: 5 is more than the model's 4"):
        apply_lora(tiny_llama(40, hidden_size=32, num_layers=4, num_heads=4, seed=0),
                   LoraConfig(enabled=True, r=4, layers=5))


def test_cached_trunk_gives_the_full_forward_logps_and_gradients():
    model = _lora_model(layers=2)
    batch = collate(_examples(6), 0)
    plain = batch_logps(model, batch)
    loss = plain["chosen_logps"].sum() - 0.5 * plain["rejected_logps"].sum()
    plain_grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])

    cache = TrunkCache(first_trained=2)
    for _ in range(2):  # the second pass reads every trunk from the cache
        cached = cache.batch_logps(model, batch)
        assert len(cache) == 12
        for k in plain:
            torch.testing.assert_close(cached[k], plain[k], rtol=1e-5, atol=1e-5, msg=k)
    loss = cached["chosen_logps"].sum() - 0.5 * cached["rejected_logps"].sum()
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    for a, b in zip(grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_trunk_runs_once_per_sequence():
    model = _lora_model(layers=1)
    calls = []
    first = model.get_base_model().model.layers[0]
    hook = first.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    cache = TrunkCache(first_trained=3)
    examples = _examples(8)
    cache.batch_logps(model, collate(examples[:4], 0))
    cache.batch_logps(model, collate(examples[2:6], 0))  # 2 pairs seen, 2 new: only the 4 new rows run
    cache.batch_logps(model, collate(examples[:6], 0))  # all seen
    hook.remove()
    assert calls == [8, 4]


def test_a_run_with_the_cache_trains_the_weights_of_a_run_without(tiny_config, tmp_path, monkeypatch):
    base = {"model.init": dict(TINY_INIT, num_hidden_layers=3, vocab_size=len(WORDS) + 8), "lora.enabled": True,
            "lora.r": 4, "lora.layers": 1, "optim.lr": 5e-3, "max_steps": 4, "epochs": 2}
    isdaa.train(tiny_config(output_dir=str(tmp_path / "plain"), **base))
    calls = []
    real = TrunkCache.batch_logps
    monkeypatch.setattr(TrunkCache, "batch_logps", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    isdaa.train(tiny_config(output_dir=str(tmp_path / "cached"), **{"lora.cache_trunk": True}, **base))
    assert len(calls) >= 4  # every step's policy forward went through the cache
    wa = load_file(str(tmp_path / "plain" / "final" / "adapter" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "cached" / "final" / "adapter" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and all(".layers.2." in k for k in wa)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=0, msg=k)


@pytest.mark.parametrize("overrides, message", [
    ({"lora.cache_trunk": True, "lora.enabled": True}, "lora.cache_trunk: needs lora.layers > 0"),
    ({"lora.layers": 1}, "lora.layers: only with lora.enabled true"),
])
def test_settings_that_cannot_work_are_refused(tiny_config, tmp_path, overrides, message):
    with pytest.raises(InputError, match=message):
        isdaa.train(tiny_config(output_dir=str(tmp_path / "run"), **overrides))
    assert not (tmp_path / "run").exists()
