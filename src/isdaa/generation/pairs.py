"""Generating preference pairs from a model and a gold scorer: `isdaa pairs`.

    rows = generate_pairs(model, tokenizer, prompts, scorer="vader", label="bt", bt_temperature=0.1, seed=0)
    write_pairs(rows, "pairs.jsonl")

For each prompt, `n_per_prompt` completions are sampled from `model` (the behaviour policy) at `temperature`
/ `top_p` (with `isdaa.generation.sampling.sample_completions`: plain model distribution at T = 1, top-p 1,
no top-k).
Completions k = 0, 1 form a pair, then 2, 3, and so on (disjoint pairs, so each completion is an
independent draw from the behaviour policy; an odd last one is left out). Each pair is labelled from the
gold scores s_a, s_b of its two completions:

- `label="bt"`: Bradley–Terry, a is chosen with probability σ((s_a − s_b) / bt_temperature) (a seeded
  draw). Ties are coin flips, as the model says. bt_temperature → 0 gives the argmax label.
- `label="argmax"`: the higher-scored completion is chosen; tied pairs are left out.

Pairs whose two completions are the same text, or where one is empty, are left out (they cannot be
training rows). Rows are TRL format — plain text, or conversational when the prompts are message lists or
`chat=True` (a string prompt becomes one user message, rendered with the tokenizer's chat template) — with
`behavior_chosen_logps` / `behavior_rejected_logps`: the behaviour model's summed log-probs of each
completion **as `isdaa.data` tokenises the row** (text re-tokenised + EOS;
`isdaa.generation.sampling.score_logps`), which is exactly what the trainer compares its policy log-probs
with. For a completion cut at `max_new_tokens` this is the log-prob of the text followed by EOS, as the
trainer sees it.
Keep `data.max_length` in training above prompt + `max_new_tokens` + 1 tokens so nothing is truncated.

`with_scores=True` adds `score_chosen` / `score_rejected` columns (then train with
`data.extra_columns: [score_chosen, score_rejected]`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from isdaa.config import to_dict
from isdaa.data import tokenize_rows
from isdaa.data.prompts import check_prompt, load_prompt_file, tokenize_prompts
from isdaa.errors import InputError
from isdaa.generation.sampling import Sample, sample_completions, score_logps
from isdaa.generation.scorers import checked_scorer, get_scorer
from isdaa.modeling.loading import load_policy, load_tokenizer, third_party_progress_bars
from isdaa.modeling.prompt_cache import PromptCache, completion_logps
from isdaa.runtime import atomic_write_text, set_threads, write_json

__all__ = ["LABELS", "generate_pairs", "pairs_in_rounds", "write_pairs", "bt_probability", "pairs_main"]

LABELS = ("bt", "argmax")


def bt_probability(s_a, s_b, temperature: float):
    """P(a ≻ b) = σ((s_a − s_b) / temperature), elementwise, without overflow (floats or numpy arrays)."""
    if temperature <= 0:
        raise ValueError(f"label temperature must be > 0, got {temperature}")
    z = (np.asarray(s_a, dtype=np.float64) - np.asarray(s_b, dtype=np.float64)) / temperature
    p = 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1/(1+e^-z)
    return float(p) if p.ndim == 0 else p


def _resolve_scorer(scorer) -> Callable:
    if isinstance(scorer, str):
        if scorer == "none":
            raise InputError("scorer: pair generation needs a gold scorer (e.g. vader), not 'none'")
        return get_scorer(scorer)
    if callable(scorer):
        return checked_scorer(getattr(scorer, "__name__", "scorer"), scorer)
    raise InputError(f"scorer: expected a scorer name or a callable, got {type(scorer).__name__}")


def generate_pairs(
    model,
    tokenizer,
    prompts: Sequence,
    *,
    scorer,
    n_per_prompt: int = 2,
    label: str = "bt",
    bt_temperature: float = 1.0,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    chat: bool = False,
    with_scores: bool = False,
    progress: bool = False,
    stats: dict | None = None,
    shared_prefill: bool = False,
) -> list[dict]:
    """Sample, score and label preference pairs (see the module docstring); returns TRL rows.

    `scorer`: a registered name (`vader`, `length`, `lab`, `hf-rm:<dir>`, `module:function`) or a callable
    with the scorer signature. `prompts`: strings or message lists. `stats`, when given, is filled with
    counts and score summaries. Deterministic given (seed, batch_size, inputs, model). `shared_prefill`: each
    prompt runs once for its samples (`sample_completions(shared_prefill=True)`) and once for the behaviour
    log-probs of its pair's two completions.
    """
    start = time.perf_counter()
    _check_options(label, n_per_prompt, max_new_tokens, batch_size, bt_temperature, temperature, top_p)
    score = _resolve_scorer(scorer)
    prompts, conversational = _normalised_prompts(prompts, tokenizer, chat)
    prompt_ids, prompt_texts, _ = tokenize_prompts(tokenizer, prompts, 10**9)
    samples = sample_completions(
        model, tokenizer, prompt_ids, n=n_per_prompt, max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, batch_size=batch_size, seed=seed, progress=progress, shared_prefill=shared_prefill,
    )
    scores = score(
        [prompt_texts[s.prompt_index] for s in samples],
        [s.text for s in samples],
        prompt_ids=[prompt_ids[s.prompt_index] for s in samples],
        completion_ids=[s.completion_ids for s in samples],
    )
    rows, kept_scores, left_out = _labelled_pairs(
        prompts, samples, scores, n_per_prompt=n_per_prompt, label=label, bt_temperature=bt_temperature,
        conversational=conversational, seed=seed,
    )
    if rows:
        _add_behaviour_logps(rows, model, tokenizer, batch_size=batch_size, progress=progress,
                             prompt_once=shared_prefill)
        if with_scores:
            for row, (sc, sr) in zip(rows, kept_scores):
                row["score_chosen"], row["score_rejected"] = sc, sr
    if stats is not None:
        stats.update(
            **_pair_stats(prompts, samples, scores, kept_scores, left_out),
            conversational=conversational,
            label=label,
            bt_temperature=float(bt_temperature) if label == "bt" else None,
            seconds=time.perf_counter() - start,
        )
    return rows


def pairs_in_rounds(draw_round: Callable[[np.random.Generator, int, int], list[dict]], n_pairs: int, *, seed: int,
                    max_rounds: int, who: str, why: str) -> list[dict]:
    """`n_pairs` rows from rounds of `draw_round(rng, need, round_seed)`, each returning at most `need` rows (its
    sampler, scorer and labeller are the caller's: `generate_pairs` for a real model, the lab's controlled world
    its own): `rng` = `default_rng(seed)` is shared by the rounds (prompt draws), round k samples with seed
    `seed·1_000_003 + k`. RuntimeError ("`who` produced only ... (`why`)") when `max_rounds` rounds fall short."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for round_ in range(max_rounds):
        if len(rows) >= n_pairs:
            break
        rows += draw_round(rng, n_pairs - len(rows), seed * 1_000_003 + round_)
    if len(rows) < n_pairs:
        raise RuntimeError(f"{who} produced only {len(rows)} usable pairs in {max_rounds} rounds ({why})")
    return rows


def _check_options(label, n_per_prompt, max_new_tokens, batch_size, bt_temperature, temperature, top_p) -> None:
    if label not in LABELS:
        raise InputError(f"option label: expected one of {', '.join(LABELS)}, got {label!r}")
    for name, value in (("n_per_prompt", n_per_prompt), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"option {name}: expected an integer >= 1, got {value!r}")
    if n_per_prompt < 2:
        raise InputError(f"option n_per_prompt: a pair needs two completions per prompt, got {n_per_prompt}")
    if not (isinstance(bt_temperature, (int, float)) and bt_temperature > 0 and math.isfinite(bt_temperature)):
        raise InputError(f"option bt_temperature: expected a finite number > 0, got {bt_temperature!r}")
    if not temperature > 0:
        raise InputError(f"option temperature: must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise InputError(f"option top_p: must be in (0, 1], got {top_p}")


def _normalised_prompts(prompts: Sequence, tokenizer, chat: bool) -> tuple[list, bool]:
    """(checked prompts, all of one kind, as message lists when `chat`; whether they are conversational)."""
    prompts = [check_prompt(p, f"prompts: prompt {i + 1}") for i, p in enumerate(prompts)]
    if not prompts:
        raise InputError("prompts: no prompts")
    if chat:
        prompts = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]
    kinds = {isinstance(p, str) for p in prompts}
    if len(kinds) > 1:
        raise InputError("prompts: a mix of strings and message lists; expected all of one kind (or chat=True)")
    conversational = kinds == {False}
    if conversational and not getattr(tokenizer, "chat_template", None):
        raise InputError("prompts: message lists (or chat=True) need a tokenizer with a chat template")
    return prompts, conversational


def _labelled_pairs(
    prompts: list, samples: list[Sample], scores: list[float], *, n_per_prompt: int, label: str,
    bt_temperature: float, conversational: bool, seed: int,
) -> tuple[list[dict], list[tuple[float, float]], dict[str, int]]:
    """(rows, (chosen score, rejected score) per row, counts of the pairs left out by reason): completions
    2k and 2k + 1 of each prompt form a candidate pair, labelled by `label`."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    kept_scores: list[tuple[float, float]] = []
    left_out = {"identical": 0, "empty": 0, "ties": 0}
    for i, prompt in enumerate(prompts):
        group = list(range(i * n_per_prompt, (i + 1) * n_per_prompt))
        for a, b in zip(group[0::2], group[1::2]):
            u = float(rng.random())  # drawn for every candidate pair: labels do not shift when one is left out
            (ta, sa), (tb, sb) = (samples[a].text, scores[a]), (samples[b].text, scores[b])
            reason = _left_out_reason(ta, tb, sa, sb, label)
            if reason is not None:
                left_out[reason] += 1
                continue
            a_wins = sa > sb if label == "argmax" else u < bt_probability(sa, sb, float(bt_temperature))
            (c, sc), (r, sr) = ((ta, sa), (tb, sb)) if a_wins else ((tb, sb), (ta, sa))
            rows.append(_pair_row(prompt, c, r, conversational))
            kept_scores.append((sc, sr))
    return rows, kept_scores, left_out


def _left_out_reason(text_a: str, text_b: str, score_a: float, score_b: float, label: str) -> str | None:
    """Why a candidate pair cannot be a training row ("empty", "identical", an argmax "ties"), or None."""
    if not text_a.strip() or not text_b.strip():
        return "empty"
    if text_a == text_b:
        return "identical"
    if label == "argmax" and score_a == score_b:
        return "ties"
    return None


def _pair_row(prompt, chosen: str, rejected: str, conversational: bool) -> dict:
    if conversational:
        return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _add_behaviour_logps(rows: list[dict], model, tokenizer, *, batch_size: int, progress: bool,
                         prompt_once: bool = False) -> None:
    """Set each row's `behavior_chosen_logps` / `behavior_rejected_logps`: the model's summed log-probs of the
    completions as `isdaa.data` tokenises the row (`prompt_once`: each row's prompt run once for both)."""
    examples, dropped = tokenize_rows(rows, tokenizer, max_length=10**9, max_prompt_length=None, source="generated pairs")
    if dropped or len(examples) != len(rows):  # cannot happen: identical texts were left out
        raise RuntimeError(f"generated pairs: {dropped} rows dropped by tokenisation")
    n = len(examples)
    completions = [e.chosen_ids for e in examples] + [e.rejected_ids for e in examples]
    if prompt_once:
        logps = _prompt_once_logps(model, [e.prompt_ids for e in examples], completions, batch_size,
                                   tokenizer.pad_token_id).double()
    else:
        logps = score_logps(model, [e.prompt_ids for e in examples] * 2, completions, batch_size=batch_size,
                            progress=progress, desc="behaviour logps").double()
    if not torch.isfinite(logps).all():
        raise RuntimeError("generated pairs: non-finite behaviour log-probs")
    for k, row in enumerate(rows):
        row["behavior_chosen_logps"] = float(logps[k])
        row["behavior_rejected_logps"] = float(logps[n + k])


def _prompt_once_logps(model, prompt_ids: list[list[int]], completions: list[list[int]], batch_size: int,
                       pad_id: int) -> torch.Tensor:
    """Summed log-probs of completions k and n + k given prompt k (n prompts), `batch_size // 2` prompts at a time,
    each run once (`isdaa.modeling.prompt_cache`)."""
    n, group = len(prompt_ids), max(1, batch_size // 2)
    out = torch.zeros(2 * n, dtype=torch.float32)
    for start in range(0, n, group):
        rows = list(range(start, min(start + group, n)))
        cache = PromptCache.encode(model, [prompt_ids[k] for k in rows], group_size=len(rows), pad_id=pad_id)
        local = list(range(len(rows))) * 2
        picked = rows + [n + k for k in rows]
        out[torch.tensor(picked)] = completion_logps(model, cache, local, [completions[k] for k in picked],
                                                     batch_size=batch_size)
    return out


def _pair_stats(prompts: list, samples: list[Sample], scores: list[float], kept_scores: list[tuple[float, float]],
                left_out: dict[str, int]) -> dict:
    """Counts and score summaries of a generation (the first keys of `generate_pairs`' `stats`)."""
    chosen = [c for c, _ in kept_scores]
    rejected = [r for _, r in kept_scores]
    return dict(
        n_prompts=len(prompts),
        n_samples=len(samples),
        n_pairs=len(kept_scores),
        left_out_identical=left_out["identical"],
        left_out_empty=left_out["empty"],
        left_out_ties=left_out["ties"],
        finished_frac=float(np.mean([s.finished for s in samples])),
        sample_score_mean=float(np.mean(scores)),
        chosen_score_mean=float(np.mean(chosen)) if chosen else None,
        rejected_score_mean=float(np.mean(rejected)) if rejected else None,
        chosen_higher_frac=float(np.mean([c > r for c, r in kept_scores])) if kept_scores else None,
    )


def write_pairs(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write rows as JSONL (UTF-8, one object per line) atomically."""
    return atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows))


def pairs_main(config) -> dict:
    """What `isdaa pairs` runs, from a `PairsConfig`: validate, load, generate, write; returns the stats."""
    out = _check_pairs_config(config)
    prompts = load_prompt_file(config.prompts)
    if config.max_prompts:
        prompts = prompts[: config.max_prompts]
    if config.scorer == "none":
        raise InputError("option scorer: pair generation needs a gold scorer (e.g. vader), not 'none'")
    scorer = get_scorer(config.scorer)  # resolve (and fail) before any model loads
    set_threads(config.num_threads)
    tokenizer = load_tokenizer(config.model)
    with third_party_progress_bars(config.progress):
        model = load_policy(config.model, seed=config.seed)
    model.requires_grad_(False)
    model.eval()
    stats: dict = {}
    rows = generate_pairs(
        model, tokenizer, prompts, scorer=scorer, n_per_prompt=config.n_per_prompt, label=config.label,
        bt_temperature=config.bt_temperature, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
        top_p=config.top_p, seed=config.seed, batch_size=config.batch_size, chat=config.chat,
        with_scores=config.with_scores, progress=config.progress, stats=stats,
    )
    if not rows:
        raise InputError(
            f"no pairs: all {stats['n_prompts'] * (config.n_per_prompt // 2)} candidate pairs were left out "
            f"({stats['left_out_identical']} identical, {stats['left_out_empty']} empty, {stats['left_out_ties']} ties)"
        )
    write_pairs(rows, out)
    stats["out"] = str(out)
    if config.stats_out:
        write_json({**stats, "config": to_dict(config)}, config.stats_out)
    return stats


def _check_pairs_config(config) -> Path:
    """The output path, after the checks of a `PairsConfig` that need no file read (InputError otherwise)."""
    if config.out is None:
        raise InputError("option out: required (the .jsonl file to write)")
    out = Path(config.out)
    if out.is_dir():
        raise InputError(f"option out: {out} is a directory; expected a .jsonl file path")
    if out.suffix.lower() not in (".jsonl", ".ndjson"):
        raise InputError(f"option out: {out}: expected a .jsonl file name")
    if config.prompts is None:
        raise InputError("option prompts: required (a .txt file, one prompt per line, or a .jsonl with 'prompt')")
    if config.stats_out is not None and Path(config.stats_out).is_dir():
        raise InputError(f"option stats_out: {config.stats_out} is a directory; expected a .json file path")
    if config.model.name_or_path is None:
        raise InputError("option model: required (a local model directory or .gguf file)")
    if config.label not in LABELS:
        raise InputError(f"option label: expected one of {', '.join(LABELS)}, got {config.label!r}")
    if config.n_per_prompt < 2:
        raise InputError(f"option n_per_prompt: a pair needs two completions per prompt, got {config.n_per_prompt}")
    if not config.bt_temperature > 0:
        raise InputError(f"option bt_temperature: must be > 0, got {config.bt_temperature}")
    if config.max_prompts < 0:
        raise InputError(f"option max_prompts: must be >= 0 (0 = all), got {config.max_prompts}")
    return out
