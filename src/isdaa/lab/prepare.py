"""What every world's preparation shares: the regimes' pair files cut from each seed's pairs, the held-out
prompts file, and the reference's gold reward on the held-out prompts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from isdaa.eval.sampled import completion_length
from isdaa.eval.stats import mean_se
from isdaa.generation import Sample, sample_completions
from isdaa.runtime import atomic_write_text

__all__ = ["regime_files", "write_eval_prompts", "reference_gold"]


def regime_files(pairs: dict, out: Path, regimes: list[dict]) -> dict:
    """Each seed's pairs with `files`: {regime name: a file of its first n_pairs pairs} (written for every regime,
    so a resumed sweep may add regimes)."""
    for seed, entry in pairs.items():
        lines = Path(entry["file"]).read_text(encoding="utf-8").splitlines(keepends=True)
        entry["files"] = {}
        for reg in regimes:
            sub = out / "pairs" / f"{reg['name']}-seed-{seed}.jsonl"
            text = "".join(lines[: reg["n_pairs"]])
            if not sub.is_file() or sub.read_text(encoding="utf-8") != text:  # runs may be reading it
                atomic_write_text(sub, text)
            entry["files"][reg["name"]] = str(sub)
    return pairs


def write_eval_prompts(prompts: list, path: Path) -> Path:
    """The held-out prompts, one per line (`eval_prompts.txt`)."""
    return atomic_write_text(path, "".join(f"{p}\n" for p in prompts))


def reference_gold(model, tokenizer, prompt_ids: list, gold: Callable[[list[Sample]], list[float]], *, n: int,
                   max_new_tokens: int, batch_size: int, seed: int = 99) -> dict:
    """The reference's gold reward on the held-out prompts from `n` samples per prompt (temperature 1, no top-p),
    its SE clustered by prompt, the mean length (tokens, the final EOS left out) and the share that ended with EOS;
    `gold` scores the samples."""
    samples = sample_completions(model, tokenizer, prompt_ids, n=n, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size, seed=seed, progress=False)
    m, se = mean_se(gold(samples), [s.prompt_index for s in samples])
    return {"gold": m, "gold_se": se, "n": len(samples),
            "length": float(np.mean([completion_length(s) for s in samples])),
            "finished": float(np.mean([s.finished for s in samples]))}
