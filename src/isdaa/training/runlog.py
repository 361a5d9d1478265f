"""The run directory's `metrics.jsonl`: one JSON object per logged step.

On resume from step N the file is rewritten (atomically) to keep exactly the lines with step <= N, so a
resumed run's log reads as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan; keep them visible as strings
    return value


class MetricsLog:
    def __init__(self, path: str | Path, *, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash while appending: it belongs to a step being redone
            if record.get("step", 0) <= step:
                kept.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def aggregate(records: list[dict]) -> dict:
    """Combine per-micro-batch metric dicts: min of `*/min`, max of `*/max`, mean of the rest."""
    out = {}
    for key in records[0]:
        values = [r[key] for r in records if key in r]
        if key.endswith("/min"):
            out[key] = min(values)
        elif key.endswith("/max"):
            out[key] = max(values)
        else:
            out[key] = sum(values) / len(values)
    return out
