"""`data.group_by_length`: length-grouped steps, still a pure function of (seed, epoch).

Properties of the order (`EpochOrder` / `length_grouped`): a permutation (every pair once per epoch), the
same for the same (seed, epoch) and different across epochs, each step's group sorted and far less padded
than the plain order, a step's pairs independent of how the global batch is split into processes and
micro-batches; end to end: exact resume, and gradient accumulation equal to the larger batch.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import isdaa
from isdaa.data import Example, length
from isdaa.training.data_order import GROUPING_WINDOW, EpochOrder, length_grouped
from isdaa.runtime import read_metrics
from test_trainer import _Crash


def variable_examples(n: int, seed: int = 0) -> list[Example]:
    """Prompts 50-800 tokens, completions 10-300 (the lengths matter, not the ids)."""
    rng = random.Random(seed)
    return [Example([5] * rng.randint(50, 800), [6] * rng.randint(10, 300), [7] * rng.randint(10, 300))
            for _ in range(n)]


def padding_fraction(examples, order, batch: int) -> float:
    """Pad slots / all slots of the shared-prompt layout (prompts padded to the longest prompt, the 2B
    completions to the longest completion) over the full batches of `order`."""
    pad = slots = 0
    for start in range(0, len(order) // batch * batch, batch):
        ex = [examples[i] for i in order[start : start + batch]]
        p = max(len(e.prompt_ids) for e in ex)
        c = max(max(len(e.chosen_ids), len(e.rejected_ids)) for e in ex)
        real = sum(len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in ex)
        slots += batch * p + 2 * batch * c
        pad += batch * p + 2 * batch * c - real
    return pad / slots


def test_grouped_order_is_a_deterministic_permutation():
    examples = variable_examples(203)  # not a multiple of the group
    order = EpochOrder(examples, seed=3, epoch=1, group=8, shared_prompt=True).order
    assert sorted(order) == list(range(203))  # every pair exactly once per epoch
    assert EpochOrder(examples, seed=3, epoch=1, group=8, shared_prompt=True).order == order  # pure in (seed, epoch)
    assert EpochOrder(examples, seed=3, epoch=2, group=8, shared_prompt=True).order != order
    assert EpochOrder(examples, seed=4, epoch=1, group=8, shared_prompt=True).order != order
    assert sorted(EpochOrder(examples, seed=3, epoch=1, group=8).order) == list(range(203))
    plain = EpochOrder(examples, seed=3, epoch=1).order
    assert order[-(203 % 8):] == plain[-(203 % 8):]  # the leftover pairs come last, as in the plain order


def concatenated_padding(examples, order, batch: int) -> float:
    """Pad slots / all slots of the concatenated layout (2B rows padded to the longest prompt + completion)."""
    pad = slots = 0
    for start in range(0, len(order) // batch * batch, batch):
        ex = [examples[i] for i in order[start : start + batch]]
        t = max(length(e) for e in ex)
        slots += 2 * batch * t
        pad += 2 * batch * t - sum(2 * len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in ex)
    return pad / slots


def test_groups_are_sorted_and_padding_drops_in_both_layouts():
    examples = variable_examples(512)
    plain = EpochOrder(examples, seed=0, epoch=0).order
    shared = EpochOrder(examples, seed=0, epoch=0, group=8, shared_prompt=True).order
    prompt_lengths = [len(e.prompt_ids) for e in examples]
    assert padding_fraction(examples, shared, 8) < 0.5 * padding_fraction(examples, plain, 8)
    concat = EpochOrder(examples, seed=0, epoch=0, group=8).order
    for start in range(0, 512, 8):
        group = [length(examples[i]) for i in concat[start : start + 8]]
        assert group == sorted(group, reverse=True)
    assert concatenated_padding(examples, concat, 8) < 0.25 * concatenated_padding(examples, plain, 8)
    # the two-level sort: each step's prompts lie in one strip of the prompt-sorted window
    spans = [max(prompt_lengths[i] for i in shared[s : s + 8]) - min(prompt_lengths[i] for i in shared[s : s + 8])
             for s in range(0, 512, 8)]
    assert max(spans) < 200  # prompts span 50-800: a strip is an eighth of the window


def test_a_step_holds_the_same_pairs_however_the_global_batch_is_split():
    """One process with batch 8 = two processes with batch 4 = batch 4 with grad_accum 2: the group is the
    step's global batch, so each step is the same set of pairs (Accelerate gives process i batches i, i+N, ...)."""
    examples = variable_examples(160)
    order = EpochOrder(examples, seed=1, epoch=0, group=8, shared_prompt=True).order
    steps = [set(order[s : s + 8]) for s in range(0, 160, 8)]
    two_procs = [order[s : s + 4] for s in range(0, 160, 4)]  # loader batches; process i takes i, i+2, ...
    for k, step in enumerate(steps):
        assert set(two_procs[2 * k]) | set(two_procs[2 * k + 1]) == step


def test_groups_are_shuffled_and_windows_bound_the_sort():
    examples = variable_examples(8 * GROUPING_WINDOW * 2)
    lengths = [length(e) for e in examples]
    order = EpochOrder(examples, seed=0, epoch=0, group=8).order
    firsts = [lengths[order[s]] for s in range(0, len(order), 8)]
    plain = EpochOrder(examples, seed=0, epoch=0).order
    window_of = {i: pos // (8 * GROUPING_WINDOW) for pos, i in enumerate(plain)}
    for s in range(0, len(order), 8):  # each step's pairs come from one window of the epoch's permutation
        assert len({window_of[i] for i in order[s : s + 8]}) == 1
    assert firsts != sorted(firsts, reverse=True)  # not one long descending run: the steps are shuffled
    with pytest.raises(ValueError, match="group"):
        length_grouped(list(range(4)), [(1, 0)] * 4, 0, torch.Generator())


# ------------------------------------------------------------------------------------- end to end


def _weights(run):
    return load_file(str(run / "final" / "model.safetensors"))


def test_resume_with_grouping_is_exact(tiny_config, tmp_path):
    grouped = {"data.group_by_length": True, "optim.scheduler": "cosine", "batch_size": 4}
    straight = tiny_config(max_steps=8, output_dir=str(tmp_path / "a"), **grouped)
    isdaa.train(straight)
    interrupted = tiny_config(max_steps=8, save_every=4, output_dir=str(tmp_path / "b"), **grouped)
    with pytest.raises(RuntimeError, match="simulated crash"):
        isdaa.train(interrupted, callbacks=[_Crash(4)])
    isdaa.train(interrupted)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k  # bit-exact
    la = [m["loss"] for m in read_metrics(tmp_path / "a") if "loss" in m]
    assert la == [m["loss"] for m in read_metrics(tmp_path / "b") if "loss" in m]


def test_grouping_changes_the_order_and_accumulation_matches_the_large_batch(tiny_config, tmp_path):
    on = {"data.group_by_length": True}
    isdaa.train(tiny_config(batch_size=8, grad_accum=1, max_steps=4, output_dir=str(tmp_path / "big"), **on))
    isdaa.train(tiny_config(batch_size=4, grad_accum=2, max_steps=4, output_dir=str(tmp_path / "small"), **on))
    isdaa.train(tiny_config(batch_size=8, grad_accum=1, max_steps=4, output_dir=str(tmp_path / "plain")))
    big, small, plain = (_weights(tmp_path / d) for d in ("big", "small", "plain"))
    for k in big:
        torch.testing.assert_close(big[k], small[k], atol=1e-5, rtol=0, msg=k)  # same pairs per step
    assert any(not torch.allclose(big[k], plain[k], atol=1e-5) for k in big)  # grouping did reorder the pairs


def _long_prompt_rows(n: int, seed: int = 0) -> list[dict]:
    """Prompts of 60-100 words (the shared-prompt path), completions of 1-12 words: lengths that vary."""
    rng = random.Random(seed)
    words = lambda k: " ".join(f"w{rng.randrange(24)}" for _ in range(k))  # noqa: E731
    return [{"prompt": f"topic{rng.randrange(4)} " + words(rng.randrange(60, 100)),
             "chosen": "good " + words(rng.randrange(1, 12)), "rejected": "bad " + words(rng.randrange(1, 12))}
            for _ in range(n)]


@pytest.mark.slow
def test_two_processes_match_one_with_grouping_and_checkpointing(tokenizer_dir, tmp_path):
    """2 gloo processes x batch 4 = 1 process x batch 8 with `data.group_by_length` and
    `model.gradient_checkpointing` (shared-prompt path, DDP): weights equal to 1e-6, losses to 1e-6."""
    from conftest import TINY_INIT, WORDS, write_jsonl

    data = write_jsonl(tmp_path / "train.jsonl", _long_prompt_rows(64))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def args(out, batch):
        return ["train", "--output_dir", str(out), "--batch_size", str(batch), "--max_steps", "4", "--progress",
                "false", "--num_threads", "1", "--model.init",
                str(dict(TINY_INIT, vocab_size=len(WORDS) + 8, max_position_embeddings=160)),
                "--model.tokenizer", str(tokenizer_dir), "--data.train_file", str(data), "--data.max_length", "128",
                "--data.max_prompt_length", "110", "--optim.lr", "1e-3", "--weighting", "is",
                "--data.group_by_length", "true", "--model.gradient_checkpointing", "true"]

    one = subprocess.run([sys.executable, "-m", "isdaa.cli", *args(tmp_path / "one", 8)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29541", "-m", "isdaa.cli", *args(tmp_path / "two", 4)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    la = [m["loss"] for m in read_metrics(tmp_path / "one") if "loss" in m]
    lb = [m["loss"] for m in read_metrics(tmp_path / "two") if "loss" in m]
    assert len(la) == len(lb) == 4 and max(abs(x - y) for x, y in zip(la, lb)) < 1e-6
