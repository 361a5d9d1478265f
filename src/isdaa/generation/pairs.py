"""Generating preference pairs from a model and a gold scorer: `isdaa pairs`.

    rows = generate_pairs(model, tokenizer, prompts, scorer="vader", label="bt", bt_temperature=0.1, seed=0)
    write_pairs(rows, "pairs.jsonl")

For each prompt, `n_per_prompt` completions are sampled from `model` (the behaviour policy) at `temperature`
/ `top_p` (with `isdaa.eval.sample_completions`: plain model distribution at T = 1, top-p 1, no top-k).
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
completion **as `isdaa.data` tokenises the row** (text re-tokenised + EOS; `isdaa.eval.score_logps`),
which is exactly what the trainer compares its policy log-probs with. For a completion cut at
`max_new_tokens` this is the log-prob of the text followed by EOS, as the trainer sees it.
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

from isdaa.data.validation import ROLES
from isdaa.training.runtime import atomic_write_text
from isdaa.errors import InputError

__all__ = ["LABELS", "generate_pairs", "write_pairs", "load_prompt_file", "bt_probability", "pairs_main"]

LABELS = ("bt", "argmax")
SCORE_COLUMNS = ["score_chosen", "score_rejected"]


def bt_probability(s_a, s_b, temperature: float):
    """P(a ≻ b) = σ((s_a − s_b) / temperature), elementwise, without overflow (floats or numpy arrays)."""
    if temperature <= 0:
        raise ValueError(f"label temperature must be > 0, got {temperature}")
    z = (np.asarray(s_a, dtype=np.float64) - np.asarray(s_b, dtype=np.float64)) / temperature
    p = 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1/(1+e^-z)
    return float(p) if p.ndim == 0 else p


def load_prompt_file(path: str | os.PathLike) -> list:
    """Prompts from a `.txt` file (one per non-blank line) or a `.jsonl` / `.json` file of objects with a
    `prompt` field (a string or a list of {role, content} messages; other fields are ignored)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"prompts: {path} does not exist or is not a file (expected a .txt, .jsonl or .json prompt file)")
    suffix = p.suffix.lower()
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"prompts: {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"prompts: {path}: cannot read ({exc.strerror or exc})") from None
    if suffix == ".txt":
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
        if not prompts:
            raise InputError(f"prompts: {path} has no prompts (expected one prompt per line)")
        return prompts
    if suffix not in (".jsonl", ".ndjson", ".json"):
        raise InputError(f"prompts: {path}: unsupported file type {p.suffix or p.name!r}; expected .txt, .jsonl or .json")
    items: list[tuple[str, object]] = []
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"prompts: {path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        items = [(f"item {k + 1}", obj) for k, obj in enumerate(data)]
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise InputError(f"prompts: {path}: line {n}: invalid JSON ({exc.msg}); expected one object per line") from None
    prompts = []
    for where, obj in items:
        if not isinstance(obj, dict) or "prompt" not in obj:
            raise InputError(f"prompts: {path}: {where}: expected an object with a 'prompt' field")
        prompts.append(_check_prompt(obj["prompt"], f"prompts: {path}: {where}: field 'prompt'"))
    if not prompts:
        raise InputError(f"prompts: {path} has no prompts")
    return prompts


def _check_prompt(prompt, where: str):
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InputError(f"{where}: empty; expected text")
        return prompt
    if isinstance(prompt, list) and prompt:
        for k, msg in enumerate(prompt):
            if not (isinstance(msg, dict) and msg.get("role") in ROLES and isinstance(msg.get("content"), str)):
                raise InputError(f"{where}[{k}]: expected a {{role, content}} message (role one of {', '.join(ROLES)})")
        return [dict(m) for m in prompt]
    raise InputError(f"{where}: expected a string or a non-empty list of {{role, content}} messages")


def _resolve_scorer(scorer) -> Callable:
    from isdaa.generation.scorers import _checked, get_scorer

    if isinstance(scorer, str):
        if scorer == "none":
            raise InputError("scorer: pair generation needs a gold scorer (e.g. vader), not 'none'")
        return get_scorer(scorer)
    if callable(scorer):
        return _checked(getattr(scorer, "__name__", "scorer"), scorer)
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
) -> list[dict]:
    """Sample, score and label preference pairs (see the module docstring); returns TRL rows.

    `scorer`: a registered name (`vader`, `length`, `lab`, `hf-rm:<dir>`, `module:function`) or a callable
    with the scorer signature. `prompts`: strings or message lists. `stats`, when given, is filled with
    counts and score summaries. Deterministic given (seed, batch_size, inputs, model).
    """
    import torch

    from isdaa.data import tokenize_rows
    from isdaa.data.prompts import tokenize_prompts
    from isdaa.generation.sampling import sample_completions, score_logps

    start = time.perf_counter()
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
    score = _resolve_scorer(scorer)
    prompts = [_check_prompt(p, f"prompts: prompt {i + 1}") for i, p in enumerate(prompts)]
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

    prompt_ids, prompt_texts, _ = tokenize_prompts(tokenizer, prompts, 10**9)
    samples = sample_completions(
        model, tokenizer, prompt_ids, n=n_per_prompt, max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, batch_size=batch_size, seed=seed, progress=progress,
    )
    scores = score(
        [prompt_texts[s.prompt_index] for s in samples],
        [s.text for s in samples],
        prompt_ids=[prompt_ids[s.prompt_index] for s in samples],
        completion_ids=[s.completion_ids for s in samples],
    )

    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    kept_scores: list[tuple[float, float]] = []
    identical = empty = ties = 0
    for i in range(len(prompts)):
        group = list(range(i * n_per_prompt, (i + 1) * n_per_prompt))
        for a, b in zip(group[0::2], group[1::2]):
            u = float(rng.random())  # drawn for every candidate pair: labels do not shift when one is left out
            ta, tb = samples[a].text, samples[b].text
            if not ta.strip() or not tb.strip():
                empty += 1
                continue
            if ta == tb:
                identical += 1
                continue
            sa, sb = scores[a], scores[b]
            if label == "argmax":
                if sa == sb:
                    ties += 1
                    continue
                a_wins = sa > sb
            else:
                a_wins = u < bt_probability(sa, sb, float(bt_temperature))
            (c, sc), (r, sr) = ((ta, sa), (tb, sb)) if a_wins else ((tb, sb), (ta, sa))
            if conversational:
                row = {"prompt": prompts[i], "chosen": [{"role": "assistant", "content": c}],
                       "rejected": [{"role": "assistant", "content": r}]}
            else:
                row = {"prompt": prompts[i], "chosen": c, "rejected": r}
            rows.append(row)
            kept_scores.append((sc, sr))

    if rows:
        examples, dropped = tokenize_rows(rows, tokenizer, max_length=10**9, max_prompt_length=None, source="generated pairs")
        if dropped or len(examples) != len(rows):  # cannot happen: identical texts were left out above
            raise RuntimeError(f"generated pairs: {dropped} rows dropped by tokenisation")
        n = len(examples)
        logps = score_logps(
            model,
            [e.prompt_ids for e in examples] * 2,
            [e.chosen_ids for e in examples] + [e.rejected_ids for e in examples],
            batch_size=batch_size,
            progress=progress,
            desc="behaviour logps",
        ).double()
        if not torch.isfinite(logps).all():
            raise RuntimeError("generated pairs: non-finite behaviour log-probs")
        for k, row in enumerate(rows):
            row["behavior_chosen_logps"] = float(logps[k])
            row["behavior_rejected_logps"] = float(logps[n + k])
            if with_scores:
                row["score_chosen"], row["score_rejected"] = kept_scores[k]

    if stats is not None:
        chosen = [c for c, _ in kept_scores]
        rejected = [r for _, r in kept_scores]
        stats.update(
            n_prompts=len(prompts),
            n_samples=len(samples),
            n_pairs=len(rows),
            left_out_identical=identical,
            left_out_empty=empty,
            left_out_ties=ties,
            finished_frac=float(np.mean([s.finished for s in samples])),
            sample_score_mean=float(np.mean(scores)),
            chosen_score_mean=float(np.mean(chosen)) if chosen else None,
            rejected_score_mean=float(np.mean(rejected)) if rejected else None,
            chosen_higher_frac=float(np.mean([c > r for c, r in kept_scores])) if kept_scores else None,
            conversational=conversational,
            label=label,
            bt_temperature=float(bt_temperature) if label == "bt" else None,
            seconds=time.perf_counter() - start,
        )
    return rows


def write_pairs(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write rows as JSONL (UTF-8, one object per line) atomically."""
    return atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows))


def pairs_main(config) -> dict:
    """What `isdaa pairs` runs, from a `PairsConfig`: validate, load, generate, write; returns the stats."""
    from isdaa.generation.scorers import get_scorer
    from isdaa.modeling.loading import load_policy, load_tokenizer
    from isdaa.training.runtime import set_threads

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
    prompts = load_prompt_file(config.prompts)
    if config.max_prompts:
        prompts = prompts[: config.max_prompts]
    if config.scorer == "none":
        raise InputError("option scorer: pair generation needs a gold scorer (e.g. vader), not 'none'")
    scorer = get_scorer(config.scorer)  # resolve (and fail) before any model loads
    set_threads(config.num_threads)
    tokenizer = load_tokenizer(config.model)
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
        from isdaa.config import to_dict
        from isdaa.eval import write_json

        write_json({**stats, "config": to_dict(config)}, config.stats_out)
    return stats
