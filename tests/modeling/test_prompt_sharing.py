"""Prompt sharing in training: `collate_shared` layout, and runs with sharing on and off agree.

The shared-prompt forward itself (log-probs and gradients equal to the concatenated forward) is tested in
test_logprobs.py; here: the batch layout by hand, the trainer's choice of path, and end-to-end equality of
weights (atol 1e-5) and logged losses (rel 1e-5) between `prompt_sharing` on and off.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import isdaa
import isdaa.training.trainer as trainer_mod
from conftest import TINY_INIT, WORDS, write_jsonl
from isdaa.data import SHARED_KEYS, Example, collate, collate_shared
from isdaa.modeling.logprobs import batch_logps, batch_logps_shared_prompt
from isdaa.runtime import read_metrics
from isdaa.modeling.tiny import tiny_llama

# ------------------------------------------------------------------------------------------ collate_shared


def test_collate_shared_by_hand():
    a = Example([5, 6, 7], [8, 2], [9, 10, 2], ref_chosen_logps=-1.0, ref_rejected_logps=-2.0, weight=0.5)
    b = Example([11], [12, 13, 14, 2], [2], ref_chosen_logps=-3.0, ref_rejected_logps=-4.0)
    batch = collate_shared([a, b], pad_token_id=0)
    # prompts LEFT-padded: the last column is every prompt's last token
    assert batch["prompt_ids"].tolist() == [[5, 6, 7], [0, 0, 11]]
    assert batch["prompt_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    # completions RIGHT-padded, each to its own width
    assert batch["chosen_ids"].tolist() == [[8, 2, 0, 0], [12, 13, 14, 2]]
    assert batch["chosen_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["rejected_ids"].tolist() == [[9, 10, 2], [2, 0, 0]]
    assert batch["rejected_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    for k in SHARED_KEYS:
        assert batch[k].dtype == torch.long, k
    # optional columns: present only when every example has them, (B,) float32
    assert batch["ref_chosen_logps"].tolist() == [-1.0, -3.0]
    assert batch["ref_rejected_logps"].dtype == torch.float32
    assert "weight" not in batch and "behavior_chosen_logps" not in batch
    assert set(batch) == set(SHARED_KEYS) | {"ref_chosen_logps", "ref_rejected_logps"}


def test_collate_shared_refuses_empty_inputs():
    with pytest.raises(ValueError, match="at least one"):
        collate_shared([], 0)
    with pytest.raises(ValueError, match="pad_token_id"):
        collate_shared([Example([1], [2], [3])], None)
    with pytest.raises(ValueError, match="non-empty prompt"):
        collate_shared([Example([], [2], [3])], 0)


def test_collate_shared_gives_the_concatenated_logps():
    rng = random.Random(0)
    tok = lambda n: [rng.randrange(3, 40) for _ in range(n)]  # noqa: E731
    examples = [Example(tok(rng.randrange(1, 9)), tok(rng.randrange(1, 6)) + [2], tok(rng.randrange(0, 6)) + [2])
                for _ in range(5)]
    model = tiny_llama(40, hidden_size=32, num_layers=2, num_heads=4, seed=0)
    plain = batch_logps(model, collate(examples, 0))
    shared_batch = collate_shared(examples, 0)
    shared = batch_logps_shared_prompt(model, *(shared_batch[k] for k in SHARED_KEYS))
    for k in plain:
        torch.testing.assert_close(shared[k], plain[k], rtol=1e-5, atol=1e-5, msg=k)


# ------------------------------------------------------------------------------------------ training


def _long_prompt_pairs(n: int, seed: int = 0) -> list[dict]:
    """Learnable pairs (chosen has 'good', rejected 'bad') with 64-90 word prompts: above the sharing threshold."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = f"topic{rng.randrange(4)} " + " ".join(f"w{rng.randrange(24)}" for _ in range(rng.randrange(64, 90)))
        filler = [f"w{rng.randrange(24)}" for _ in range(rng.randrange(1, 6))]
        rows.append({"prompt": prompt, "chosen": " ".join(["good"] + filler),
                     "rejected": " ".join(["bad"] + filler[: rng.randrange(1, len(filler) + 1)])})
    return rows


@pytest.fixture(scope="module")
def long_pairs(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("long")
    return write_jsonl(d / "train.jsonl", _long_prompt_pairs(32)), write_jsonl(d / "eval.jsonl", _long_prompt_pairs(8, 1))


@pytest.fixture
def long_config(tiny_config, long_pairs):
    train_file, eval_file = long_pairs

    def make(**overrides):
        base = {
            "model.init": dict(TINY_INIT, vocab_size=len(WORDS) + 8, max_position_embeddings=160),
            "data.train_file": str(train_file), "data.eval_file": str(eval_file),
            "data.max_length": 128, "data.max_prompt_length": 100, "batch_size": 4, "grad_accum": 2,
            "eval_batch_size": 8, "max_steps": 4, "eval_every": 2, "objective.weighting": "is",
        }
        base.update(overrides)
        return tiny_config(**base)

    return make


class _Spy:
    """Count the calls of the two log-prob paths inside the trainer module."""

    def __init__(self, monkeypatch):
        self.shared = self.plain = 0
        real_shared, real_plain = trainer_mod.batch_logps_shared_prompt, trainer_mod.batch_logps

        def shared(*a, **k):
            self.shared += 1
            return real_shared(*a, **k)

        def plain(*a, **k):
            self.plain += 1
            return real_plain(*a, **k)

        monkeypatch.setattr(trainer_mod, "batch_logps_shared_prompt", shared)
        monkeypatch.setattr(trainer_mod, "batch_logps", plain)


def _losses(run_dir) -> list[float]:
    return [m["loss"] for m in read_metrics(run_dir) if "loss" in m]


def _eval_losses(run_dir) -> list[float]:
    return [m["eval/loss"] for m in read_metrics(run_dir) if "eval/loss" in m]


def _assert_same_run(a: Path, b: Path, atol: float = 1e-5) -> None:
    wa, wb = load_file(str(a / "final" / "model.safetensors")), load_file(str(b / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0, msg=k)
    la, lb = _losses(a), _losses(b)
    assert len(la) == len(lb) > 0
    assert la == pytest.approx(lb, rel=1e-5, abs=1e-6)
    ea, eb = _eval_losses(a), _eval_losses(b)
    assert len(ea) == len(eb) > 0
    assert ea == pytest.approx(eb, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("precompute_ref", [True, False])
def test_sharing_on_and_off_train_the_same(long_config, tmp_path, monkeypatch, precompute_ref):
    """Tolerance: weights atol 1e-5 (lr 1e-3, 4 steps x 2 micro-batches); losses rel 1e-5."""
    off = long_config(prompt_sharing=False, precompute_ref=precompute_ref, output_dir=str(tmp_path / "off"))
    spy = _Spy(monkeypatch)
    isdaa.train(off)
    assert spy.shared == 0 and spy.plain > 0
    on = long_config(prompt_sharing=True, precompute_ref=precompute_ref, output_dir=str(tmp_path / "on"))
    spy = _Spy(monkeypatch)
    isdaa.train(on)
    assert spy.plain == 0 and spy.shared > 0  # every forward (train, eval, reference) took the shared path
    _assert_same_run(tmp_path / "off", tmp_path / "on")


def test_sharing_is_the_default_for_long_prompts_and_keys_the_cache(long_config, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    spy = _Spy(monkeypatch)
    isdaa.train(long_config(max_steps=1, ref_cache_dir=str(cache), output_dir=str(tmp_path / "a")))
    assert spy.shared > 0 and spy.plain == 0
    first = sorted(cache.iterdir())
    assert len(first) == 2  # train and eval sets
    isdaa.train(long_config(max_steps=1, ref_cache_dir=str(cache), prompt_sharing=False, output_dir=str(tmp_path / "b")))
    # the two layouts differ by float rounding: separate cache entries, so each run is reproducible bit for bit
    assert len(list(cache.iterdir())) == 4
    isdaa.train(long_config(max_steps=1, ref_cache_dir=str(cache), output_dir=str(tmp_path / "c")))
    assert len(list(cache.iterdir())) == 4  # hit


def test_short_prompts_use_the_concatenated_path(tiny_config, tmp_path, monkeypatch):
    spy = _Spy(monkeypatch)
    isdaa.train(tiny_config(max_steps=1, output_dir=str(tmp_path / "short")))  # prompts of ~4 tokens
    assert spy.shared == 0 and spy.plain > 0


def test_gradient_checkpointing_keeps_sharing_and_trains_the_same(long_config, tmp_path, monkeypatch):
    """isdaa's per-layer checkpointing keeps the KV cache: the shared path is taken, and the run ends with
    the weights (atol 1e-5) and losses (rel 1e-5) of the run without checkpointing."""
    isdaa.train(long_config(output_dir=str(tmp_path / "plain")))
    spy = _Spy(monkeypatch)
    isdaa.train(long_config(**{"model.gradient_checkpointing": True}, output_dir=str(tmp_path / "gc")))
    assert spy.shared > 0 and spy.plain == 0
    _assert_same_run(tmp_path / "plain", tmp_path / "gc")


def test_sharing_with_lora(long_config, tmp_path, monkeypatch):
    """The adapter-disabled policy is the reference: the shared path must run under disable_adapter too."""
    lora = {"lora.enabled": True, "lora.r": 4, "optim.lr": 5e-3, "precompute_ref": False}
    torch.manual_seed(0)  # peft initialises the adapter from the global RNG (apply_lora does not seed it)
    isdaa.train(long_config(prompt_sharing=False, output_dir=str(tmp_path / "off"), **lora))
    spy = _Spy(monkeypatch)
    torch.manual_seed(0)
    isdaa.train(long_config(prompt_sharing=True, output_dir=str(tmp_path / "on"), **lora))
    assert spy.shared > 0 and spy.plain == 0
    _assert_same_run(tmp_path / "off", tmp_path / "on")


def test_resume_is_exact_with_sharing(long_config, tmp_path):
    class Crash:
        def on_log(self, step, metrics):
            if step == 3:
                raise RuntimeError("simulated crash")

    isdaa.train(long_config(max_steps=4, output_dir=str(tmp_path / "a")))
    b = long_config(max_steps=4, save_every=2, output_dir=str(tmp_path / "b"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        isdaa.train(b, callbacks=[Crash()])
    isdaa.train(b)
    wa = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ------------------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_two_processes_with_sharing_match_one(tokenizer_dir, long_pairs, tmp_path):
    """DDP calls the model twice per micro-batch on the shared path: gradients still average exactly."""
    import os

    train_file, _ = long_pairs

    def args(out, batch_size):
        return ["train", "--output_dir", str(out), "--batch_size", str(batch_size), "--max_steps", "3",
                "--progress", "false", "--num_threads", "1",
                "--model.init", str(dict(TINY_INIT, vocab_size=len(WORDS) + 8, max_position_embeddings=160)),
                "--model.tokenizer", str(tokenizer_dir), "--data.train_file", str(train_file),
                "--data.max_length", "128", "--data.max_prompt_length", "100", "--optim.lr", "1e-3"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "isdaa.cli", *args(tmp_path / "one", 8)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29541", "-m", "isdaa.cli", *args(tmp_path / "two", 4)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "final" / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


@pytest.mark.slow
def test_benchmark_quick_smoke(tmp_path):
    """`benchmarks/train_throughput.py --quick` end to end (tiny shapes, 2 steps); needs trl (`.[bench]`)."""
    pytest.importorskip("trl")
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"
    out = subprocess.run(
        [sys.executable, str(script), "--quick", "--reps", "1", "--steps", "2", "--length-scale", "0.05", "--threads", "1",
         "--shape", "hh", "--work-dir", str(tmp_path / "work"), "--json", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ratio pairs_per_s isdaa/trl-pre" in out.stdout
    import json

    result = json.loads((tmp_path / "r.json").read_text())
    (summary,) = result["summaries"]
    assert set(summary["variants"]) == {"isdaa", "isdaa-is", "trl-pre", "trl-live"}
    assert len({round(r["tokens_per_pair"], 3) for r in result["runs"]}) == 1  # the same tokens for every trainer
    assert all(r["peak_rss_mb"] > 0 and r["pairs_per_s"] > 0 for r in result["runs"])


@pytest.mark.slow
def test_profile_step_runs_with_checkpointing():
    """`benchmarks/profile_step.py` runs one step of the small model with per-layer checkpointing and reports its
    phases and memory high-water mark (it broke once when the benchmark's set-up moved)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "profile_step.py"
    out = subprocess.run([sys.executable, str(script), "--model", "small", "--shape", "hh", "--steps", "1", "--ops", "0",
                          "--threads", "1", "--checkpointing"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "checkpointing True" in out.stdout and "VmHWM" in out.stdout
    for phase in ("forward (log-probs)", "backward", "clip + AdamW step"):
        assert phase in out.stdout
