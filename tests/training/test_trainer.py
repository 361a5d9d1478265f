"""End-to-end training on a tiny random Llama: learning, exact resume, gradient accumulation, outputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import isdaa
from isdaa.runtime import read_metrics


def _weights(run_dir):
    return load_file(str(run_dir / "final" / "model.safetensors"))


def _assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        if atol == 0.0:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


@pytest.mark.parametrize("weighting", ["none", "is"])
def test_loss_falls_and_accuracy_rises(tiny_config, weighting):
    cfg = tiny_config(max_steps=40, **{"objective.weighting": weighting, "objective.beta": 0.5})
    result = isdaa.train(cfg)
    hist = [m for m in read_metrics(cfg.output_dir) if "loss" in m]
    assert len(hist) == 40
    first, last = hist[0], hist[-1]
    assert last["loss"] < 0.5 * first["loss"]
    assert last["rewards/accuracies"] == 1.0 and first["rewards/accuracies"] < 1.0
    assert hist[0]["weights/mean"] == pytest.approx(1.0)  # pi = mu at the first step
    if weighting == "none":
        assert all(m["weights/mean"] == 1.0 for m in hist)
    else:
        assert any(abs(m["weights/mean"] - 1.0) > 1e-3 for m in hist)
    # the final model reloads with plain transformers and gives the trained log-probs
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(result.final_dir)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_metrics_keys_follow_design(tiny_config):
    cfg = tiny_config(max_steps=2)
    isdaa.train(cfg)
    m = read_metrics(cfg.output_dir)[-1]
    for key in ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected", "weights/mean", "weights/min", "weights/max", "weights/ess", "weights/clipped_frac",
                "weights/raw_log_mean", "kl/chosen", "kl/rejected", "lengths/chosen", "lengths/rejected",
                "throughput/pairs_per_s", "throughput/tokens_per_s"]:
        assert key in m, key


class _Crash:
    """Raise after the checkpoint of step `at` has been written (as a crash would)."""

    def __init__(self, at):
        self.at = at

    def on_log(self, step, metrics):
        if step == self.at + 1:
            raise RuntimeError("simulated crash")


def test_resume_is_exact(tiny_config, tmp_path):
    straight = tiny_config(max_steps=8, output_dir=str(tmp_path / "a"), **{"optim.scheduler": "cosine"})
    isdaa.train(straight)
    interrupted = tiny_config(max_steps=8, save_every=4, output_dir=str(tmp_path / "b"), **{"optim.scheduler": "cosine"})
    with pytest.raises(RuntimeError, match="simulated crash"):
        isdaa.train(interrupted, callbacks=[_Crash(4)])
    assert (tmp_path / "b" / "checkpoints" / "step-4").is_dir()
    result = isdaa.train(interrupted)  # resume="auto" picks step-4
    assert result.steps == 8
    _assert_same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    steps = [m["step"] for m in read_metrics(tmp_path / "b") if "loss" in m]
    assert steps == list(range(1, 9))  # the log reads as if the run never stopped


def test_gradient_accumulation_matches_large_batch(tiny_config, tmp_path):
    big = tiny_config(batch_size=8, grad_accum=1, max_steps=4, output_dir=str(tmp_path / "big"))
    small = tiny_config(batch_size=4, grad_accum=2, max_steps=4, output_dir=str(tmp_path / "small"))
    isdaa.train(big)
    isdaa.train(small)
    # same pairs per step, same update; differences are float summation order only
    _assert_same_weights(_weights(tmp_path / "big"), _weights(tmp_path / "small"), atol=1e-5)


def test_reference_cache_hit_and_invalidation(tiny_config, tmp_path, pairs_file):

    cache = tmp_path / "cache"
    cfg = tiny_config(max_steps=2, ref_cache_dir=str(cache), output_dir=str(tmp_path / "r1"))
    isdaa.train(cfg)
    files = sorted(cache.iterdir())
    assert len(files) == 1
    isdaa.train(tiny_config(max_steps=2, ref_cache_dir=str(cache), output_dir=str(tmp_path / "r2")))
    assert sorted(cache.iterdir()) == files  # hit: nothing new written
    isdaa.train(tiny_config(max_steps=2, seed=1, ref_cache_dir=str(cache), output_dir=str(tmp_path / "r3")))
    assert len(list(cache.iterdir())) == 2  # another reference (seed) -> miss
    a = json.loads((tmp_path / "r1" / "metrics.jsonl").read_text().splitlines()[0])
    assert "loss" in a


def test_cached_and_live_reference_agree(tiny_config, tmp_path):
    isdaa.train(tiny_config(max_steps=4, precompute_ref=True, output_dir=str(tmp_path / "pre")))
    isdaa.train(tiny_config(max_steps=4, precompute_ref=False, output_dir=str(tmp_path / "live")))
    _assert_same_weights(_weights(tmp_path / "pre"), _weights(tmp_path / "live"), atol=1e-6)


def test_lora_trains_adapter_and_saves_merged(tiny_config, tmp_path):
    cfg = tiny_config(max_steps=6, **{"lora.enabled": True, "lora.r": 4, "optim.lr": 5e-3})
    result = isdaa.train(cfg)
    hist = [m for m in read_metrics(cfg.output_dir) if "loss" in m]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert (result.final_dir / "adapter" / "adapter_config.json").is_file()
    assert (result.final_dir / "model.safetensors").is_file()


class _InjectInf:
    """Make the policy's output non-finite on the first `n` training forwards."""

    def __init__(self, n):
        self.n = n

    def on_train_begin(self, model, tokenizer):
        def hook(module, args, output):
            if module.training and self.n > 0:
                self.n -= 1
                return output * float("inf")
            return output

        model.get_input_embeddings().register_forward_hook(hook)  # once per forward


def test_non_finite_steps_are_skipped_then_stop(tiny_config, tmp_path):
    from isdaa.errors import TrainingStopped

    cfg = tiny_config(max_steps=6, output_dir=str(tmp_path / "skip"))
    result = isdaa.train(cfg, callbacks=[_InjectInf(2)])
    assert result.skipped_steps == 2
    hist = [m for m in read_metrics(cfg.output_dir) if "loss" in m]
    assert hist[1]["skipped_steps"] == 2 and hist[-1]["skipped_steps"] == 2
    stop = tiny_config(max_steps=10, max_bad_steps=3, output_dir=str(tmp_path / "stop"))
    with pytest.raises(TrainingStopped, match="3 consecutive"):
        isdaa.train(stop, callbacks=[_InjectInf(100)])
    assert (tmp_path / "stop" / "checkpoints" / "step-3").is_dir()
