"""What a run directory records as it trains: `metrics.jsonl` (one JSON object per logged step) and
`config.yaml` (the resolved config, written atomically).

On resume from step N `metrics.jsonl` is rewritten (atomically) to keep exactly the lines with step <= N, so a
resumed run's log reads as if it had never stopped. A write that fails (disk full) is one line (`WriteFailed`):
a line torn by it is dropped on resume.
"""

from __future__ import annotations

import json
from pathlib import Path

from isdaa.config import config_yaml
from isdaa.runtime import atomic_write_text, failing_write, json_ready

RESUME_ADVICE = "free space, then run the same command to resume from the newest checkpoint"


class MetricsLog:
    """Appends one JSON line per record to `path`; does nothing when not `enabled` (the non-main processes)."""

    def __init__(self, path: str | Path, *, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Rewrite the file (atomically) with only the records of steps <= `step`; a torn line is dropped."""
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
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        """Append `record` as one line; NaN / infinity (a diverged step) are written as "nan" / "inf" strings."""
        if not self.enabled:
            return
        with failing_write("the metrics log", self.path, RESUME_ADVICE), self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(json_ready(record, str)) + "\n")


def write_run_config(cfg, run_dir: str | Path) -> Path:
    """`run_dir/config.yaml`: the resolved config, written atomically (a crash leaves the old file or the new)."""
    path = Path(run_dir) / "config.yaml"
    with failing_write("the config", path, RESUME_ADVICE):
        return atomic_write_text(path, config_yaml(cfg))


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
