"""Preference pairs for the lab: sampled from the REFERENCE, labelled by Bradley–Terry on the gold reward.

For each pair: a training prompt x drawn uniformly from `World.train_prompts()`, two completions a, b ~ π_ref(·|x)
(`isdaa.generation.sample_completions`, temperature 1, no top-p), and a label drawn as

    P(a ≻ b) = σ((r(x, a) − r(x, b)) / T)          T = `label_temperature`

so the labels are noisy exactly as the Bradley–Terry model says (T → 0: always the better one). The rows are
TRL-format JSONL (`prompt`, `chosen`, `rejected`) plus `behavior_chosen_logps` / `behavior_rejected_logps`:
the reference's summed log-probs of the completion tokens + EOS (`isdaa.generation.score_logps`), i.e. the behaviour
policy μ = π_ref that generated the data, and the diagnostic columns `gold_chosen`, `gold_rejected`,
`p_chosen` (the trainer is told to ignore them through `data.extra_columns`).

A sample is kept only if it ended with EOS and its text tokenises back to exactly its ids (so the trainer
sees the sequence the reference produced), and a pair only if its two responses differ (the trainer refuses
identical pairs); a dropped pair is replaced by a fresh draw.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from isdaa.generation import pairs_in_rounds, sample_completions, score_logps, write_pairs
from isdaa.generation.pairs import bt_probability
from isdaa.lab.world import World

EXTRA_COLUMNS = ["gold_chosen", "gold_rejected", "p_chosen"]


def bt_labels(r_a, r_b, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean array: True where a is the chosen response (drawn with probability `bt_probability`)."""
    p = bt_probability(r_a, r_b, temperature)
    return rng.random(p.shape) < p


def completion_words(tokenizer, completion_ids: list[int]) -> list[str]:
    """The response's tokens as words, without the final EOS."""
    ids = list(completion_ids)
    if ids and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    return tokenizer.convert_ids_to_tokens(ids)


def _sample_reference(model, tokenizer, prompts: list[str], *, max_new_tokens: int, seed: int, batch_size: int):
    """Two completions per prompt; returns (prompt ids, samples a, samples b, ok) lists."""
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    samples = sample_completions(
        model, tokenizer, prompt_ids, n=2, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
        progress=False,
    )
    a, b = samples[0::2], samples[1::2]
    eos = tokenizer.eos_token_id

    def valid(s) -> bool:
        if not s.finished or len(s.completion_ids) < 2:  # an empty response (EOS only) is not a response
            return False
        return tokenizer(s.text, add_special_tokens=False)["input_ids"] + [eos] == list(s.completion_ids)

    ok = [valid(x) and valid(y) and x.text != y.text for x, y in zip(a, b)]  # the trainer refuses identical pairs
    return prompt_ids, a, b, ok


def _draw_pairs(world: World, model, tokenizer, rng: np.random.Generator, need: int, seed: int, *,
                label_temperature: float, batch_size: int) -> list[dict]:
    """One round: draw prompts and two reference samples each, keep up to `need` valid pairs, label them."""
    train_prompts = world.train_prompts()
    draw = need + max(8, int(0.03 * need))
    prompts = [train_prompts[i] for i in rng.integers(0, len(train_prompts), size=draw)]
    prompt_ids, a, b, ok = _sample_reference(
        model, tokenizer, prompts, max_new_tokens=world.params.max_len + 1, seed=seed, batch_size=batch_size,
    )
    keep = [i for i in range(draw) if ok[i]][:need]
    if not keep:
        return []
    pids = [prompt_ids[i] for i in keep]
    with torch.no_grad():
        lp_a = score_logps(model, pids, [a[i].completion_ids for i in keep], batch_size=batch_size)
        lp_b = score_logps(model, pids, [b[i].completion_ids for i in keep], batch_size=batch_size)
    r_a = np.array([world.gold_reward(prompts[i], completion_words(tokenizer, a[i].completion_ids)) for i in keep])
    r_b = np.array([world.gold_reward(prompts[i], completion_words(tokenizer, b[i].completion_ids)) for i in keep])
    p_a = bt_probability(r_a, r_b, label_temperature)
    a_wins = rng.random(len(keep)) < p_a
    rows = []
    for k, i in enumerate(keep):
        first = bool(a_wins[k])
        c, r = (a[i], b[i]) if first else (b[i], a[i])
        rows.append({
            "prompt": prompts[i],
            "chosen": c.text,
            "rejected": r.text,
            "behavior_chosen_logps": float(lp_a[k] if first else lp_b[k]),
            "behavior_rejected_logps": float(lp_b[k] if first else lp_a[k]),
            "gold_chosen": float(r_a[k] if first else r_b[k]),
            "gold_rejected": float(r_b[k] if first else r_a[k]),
            "p_chosen": float(p_a[k] if first else 1.0 - p_a[k]),
        })
    return rows


def make_pairs(
    world: World,
    reference_dir: str | Path,
    n_pairs: int,
    out_path: str | Path,
    *,
    label_temperature: float = 0.5,
    seed: int = 0,
    batch_size: int = 512,
) -> dict:
    """Sample `n_pairs` labelled pairs from the reference in `reference_dir` and write them to `out_path`.

    Returns statistics (mean gold of chosen/rejected, lengths, share of labels agreeing with the gold
    reward, the BT flip rate expected from the temperature)."""
    tokenizer = AutoTokenizer.from_pretrained(str(reference_dir))
    model = AutoModelForCausalLM.from_pretrained(str(reference_dir), use_safetensors=True).eval()
    draw_round = functools.partial(_draw_pairs, world, model, tokenizer, label_temperature=label_temperature,
                                   batch_size=batch_size)
    rows = pairs_in_rounds(draw_round, n_pairs, seed=seed, max_rounds=50, who=f"the reference at {reference_dir}",
                           why=f"a valid sample ends with EOS within {world.params.max_len + 1} tokens and holds only "
                               f"words; is it trained?")
    write_pairs(rows, out_path)
    return pair_stats(rows, label_temperature)


def pair_stats(rows: list[dict], label_temperature: float) -> dict:
    """Means of the pairs' gold and lengths, share of ties, and label agreement with the gold reward (observed
    and what Bradley–Terry at `label_temperature` expects)."""
    gc = np.array([r["gold_chosen"] for r in rows])
    gr = np.array([r["gold_rejected"] for r in rows])
    lc = np.array([len(r["chosen"].split()) for r in rows])
    lr = np.array([len(r["rejected"].split()) for r in rows])
    differ = gc != gr
    return {
        "n_pairs": len(rows),
        "label_temperature": label_temperature,
        "gold_chosen": float(gc.mean()),
        "gold_rejected": float(gr.mean()),
        "length_chosen": float(lc.mean()),
        "length_rejected": float(lr.mean()),
        "ties": float(np.mean(~differ)),
        # among pairs whose gold rewards differ: share labelled in the gold reward's direction
        "agreement": float(np.mean(gc[differ] > gr[differ])) if differ.any() else math.nan,
        "expected_agreement": float(np.mean(bt_probability(np.maximum(gc, gr)[differ], np.minimum(gc, gr)[differ],
                                                           label_temperature))) if differ.any() else math.nan,
    }
