"""A lab sweep's output directory: new, empty, a lab prepared with the same settings (resumed), one whose
preparation was cut short (prepared again), or replaced with `overwrite` — only the lab's own files are removed."""

from __future__ import annotations

import shutil
from pathlib import Path

from isdaa.config import LabConfig
from isdaa.errors import InputError
from isdaa.lab import store

__all__ = ["OWNED", "check_output", "clear_previous"]

OWNED = ("results.json", "results.csv", "report.md", "eval_prompts.txt", "reference", "behavior", "pairs", "runs",
         store.PREPARED)


def check_output(config: LabConfig, key: str) -> Path:
    """The output directory, or InputError (one line) when it holds something else than a lab prepared with
    fingerprint `key`; a preparation cut short is cleared."""
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"option output_dir: {out} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()) or config.overwrite:
        return out
    previous = store.prepared_key_of(out)
    if previous is None and (out / store.PREPARED).exists():
        raise InputError(f"option output_dir: {out / store.PREPARED} is not a readable lab preparation (torn or "
                         f"edited JSON); pass --overwrite to start the lab again, or choose another directory")
    if previous is None and _unfinished_preparation(out):
        clear_previous(out)  # killed while preparing: no run had started, only the preparation is redone
        return out
    if previous is None:
        raise InputError(f"option output_dir: {out} is not empty; pass --overwrite to replace its results, "
                         f"or choose another directory")
    if previous != key:
        raise InputError(f"option output_dir: {out} holds a lab prepared with other world / reference / pairs "
                         f"settings; pass --overwrite to start it again, or choose another directory")
    return out


def _unfinished_preparation(out: Path) -> bool:
    """Whether `out` holds only what a lab's preparation writes before `prepared.json` (a sweep killed while it
    was preparing): no `runs`, no results, nothing the lab does not own."""
    preparation = {"reference", "behavior", "pairs", "eval_prompts.txt"}
    return all(p.name in preparation for p in out.iterdir())


def clear_previous(out: Path) -> None:
    """Remove what an earlier lab run wrote in `out` (only the lab's own files)."""
    if not out.is_dir():
        return
    for name in OWNED:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for p in list(out.glob("frontier_*.png")) + list(out.glob("over_steps_*.png")):
        p.unlink()
