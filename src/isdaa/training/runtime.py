"""Runtime helpers of a run: torch threads, the process group, atomic file writes.

- Threads are set deliberately: oversubscribing 2 cores made sampling ~25x slower here.
- Accelerate only forms a multi-process CPU group (gloo) when asked with `cpu=True`; without a GPU we ask,
  so `torchrun --nproc_per_node N -m isdaa.cli train ...` runs data-parallel on CPU as well.
- Atomic writes: a temporary file in the same directory, fsync, then rename over the target, so a reader (or
  a crash) never sees a half-written file and good data is never replaced by a torn one.
- JSON has no NaN or infinity: `json_ready` is the one place that replaces them (by null, or by what the caller
  asks, e.g. the strings "nan"/"inf" that `metrics.jsonl` keeps visible).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState


def set_threads(n: int = 0) -> int:
    """Use `n` threads, or (n = 0) min(available cores, 2) — never more threads than cores."""
    if n <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        n = max(1, min(cores, 2))
    torch.set_num_threads(n)
    return n


def use_cpu() -> bool:
    """Whether Accelerate must be told `cpu=True` (no GPU: the gloo process group)."""
    return not torch.cuda.is_available()


def process_state() -> PartialState:
    """The process group as Accelerate sees it (formed on first call)."""
    return PartialState(cpu=use_cpu())


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically: temporary sibling, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def json_ready(obj, nonfinite: Callable[[float], object] = lambda value: None):
    """A copy of `obj` (dicts, lists, tuples, floats, numpy floats) whose NaN/±inf floats are replaced by
    `nonfinite(value)` (default: None, i.e. JSON null); other values are returned as they are."""
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else nonfinite(value)
    if isinstance(obj, dict):
        return {k: json_ready(v, nonfinite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v, nonfinite) for v in obj]
    return obj


def write_json(obj: dict, path: str | os.PathLike) -> Path:
    """Write `obj` as indented strict JSON (non-finite floats -> null) to `path` atomically."""
    return atomic_write_text(path, json.dumps(json_ready(obj), indent=2, allow_nan=False) + "\n")
