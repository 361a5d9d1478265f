"""Torch CPU threads, set deliberately: oversubscribing 2 cores made sampling ~25x slower here."""

from __future__ import annotations

import os

import torch


def set_threads(n: int = 0) -> int:
    """Use `n` threads, or (n = 0) min(available cores, 2) — never more threads than cores."""
    if n <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        n = max(1, min(cores, 2))
    torch.set_num_threads(n)
    return n
