"""`model.init`: keys checked against LlamaConfig (did you mean; a missing space after ':'), values coerced to
LlamaConfig's types, the parameter count estimated from the config and a model too big for the machine refused
before anything is allocated (issue 23, finding 3)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from isdaa.config import ModelConfig
from isdaa.errors import InputError
from isdaa.modeling import model_init
from isdaa.modeling.loading import check_model_source, load_policy
from isdaa.modeling.model_init import check_model_fits, llama_config, parameter_count

SMALL = {"vocab_size": 40, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4}


def _refusal(init: dict) -> str:
    with pytest.raises(InputError) as info:
        check_model_source(ModelConfig(init=init))
    return str(info.value)


def test_a_key_with_a_colon_is_a_missing_space():
    assert _refusal(dict(SMALL, **{"hidden_size:32": None})) == (
        "option model.init: unknown LlamaConfig key 'hidden_size:32': YAML reads 'hidden_size:32' as one key "
        "because the space after ':' is missing; write {hidden_size: 32}")


def test_an_unknown_key_gets_a_suggestion():
    assert _refusal(dict(SMALL, hiden_size=64)) == (
        "option model.init: unknown LlamaConfig key 'hiden_size' (did you mean 'hidden_size'?)")


def test_values_are_coerced_to_llama_config_types():
    config = llama_config(dict(SMALL, hidden_size="64", rms_norm_eps=1, use_cache="false", eos_token_id=[2, 3],
                               num_hidden_layers=3.0, rope_parameters={"rope_type": "default", "rope_theta": 500.0}))
    assert config.hidden_size == 64 and config.rms_norm_eps == 1.0 and isinstance(config.rms_norm_eps, float)
    assert config.use_cache is False and config.eos_token_id == [2, 3] and config.num_hidden_layers == 3
    assert config.rope_parameters["rope_theta"] == 500.0
    assert _refusal(dict(SMALL, hidden_size="wide")) == "option model.init.hidden_size: expected int, got 'wide'"


@pytest.mark.parametrize("init", [
    SMALL,
    dict(SMALL, vocab_size=100, hidden_size=64, num_attention_heads=8, num_key_value_heads=2, head_dim=16,
         attention_bias=True, mlp_bias=True, tie_word_embeddings=True),
    {},  # LlamaConfig's defaults: 6.7e9 parameters, counted on the meta device (nothing allocated)
])
def test_parameter_count_matches_the_model(init):
    config = llama_config(init)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert parameter_count(config) == sum(p.numel() for p in model.parameters())


def test_a_model_too_big_for_the_memory_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(model_init, "available_ram", lambda: 10**9)
    monkeypatch.setattr(model_init, "training_memory", lambda: (10**9, "the available RAM"))
    small = llama_config(SMALL)
    assert check_model_fits(small) == parameter_count(small)
    init = {"vocab_size": 40}  # the rest: LlamaConfig's 7B-size defaults
    message = _refusal(init)
    assert message == (
        "option model.init: a Llama of 6,476,599,296 parameters needs at least 103.6 GB for its float32 weights, "
        "gradients and AdamW state, more than the available RAM (1.0 GB); make it smaller (vocab_size, hidden_size, "
        "intermediate_size, num_hidden_layers); not set, so LlamaConfig's defaults: hidden_size=4096, "
        "intermediate_size=11008, num_hidden_layers=32")
    monkeypatch.setattr(LlamaForCausalLM, "__init__", lambda *a, **k: pytest.fail("allocated"))
    with pytest.raises(InputError, match="103.6 GB"):
        load_policy(ModelConfig(init=init))


def test_on_a_gpu_the_device_memory_bounds_the_training_state(monkeypatch):
    monkeypatch.setattr(model_init, "available_ram", lambda: 10**12)
    monkeypatch.setattr(model_init, "training_memory", lambda: (2 * 10**9, "the memory of cuda:0"))
    config = llama_config(dict(SMALL, vocab_size=32000, hidden_size=1024, intermediate_size=4096,
                               num_hidden_layers=16))
    with pytest.raises(InputError, match=r"for its bfloat16 weights, gradients and AdamW state, more than the "
                                         r"memory of cuda:0 \(2.0 GB\)"):
        check_model_fits(config, "bfloat16", given=config.to_dict())


def test_the_estimate_is_logged_when_the_model_is_built(capsys):
    load_policy(ModelConfig(init=SMALL))
    assert capsys.readouterr().out == (
        "isdaa: model.init: a random Llama of 23,200 parameters (0.4 MB for its float32 weights, gradients and "
        "AdamW state)\n")


def test_the_memory_left_is_read_from_the_machine():
    assert model_init.available_ram() > 0
