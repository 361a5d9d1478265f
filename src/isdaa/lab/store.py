"""What a lab directory keeps between invocations, so that an interrupted sweep resumes where it stopped.

- `prepared.json`: the fingerprint of what the preparation depends on (the world, the reference's and the pairs'
  settings, the largest regime's pair count) next to what it produced (the reference's info, each seed's pair
  files and statistics, the reference's gold). A later sweep with the same fingerprint reuses them (and makes
  pairs only for seeds it has not seen); another fingerprint needs `overwrite`.
- `runs/<regime>/<method>/beta-*/seed-*/record.json`: a finished run's record and the fingerprint of its spec
  (method, β, seed, regime, every training option, the world, the evaluation). A sweep skips a run whose
  record has the fingerprint of the run it would start, so adding methods, β or seeds runs only the new ones.
Both are written atomically; a run killed before its record is written is simply run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from isdaa.runtime import atomic_write_text, json_ready

PREPARED = "prepared.json"
RECORD = "record.json"


def json_default(o):
    """JSON for what `json.dumps` does not know: numpy numbers, paths."""
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def write_json(obj, path: Path) -> Path:
    """Strict JSON (NaN/inf -> null), numpy numbers as numbers, paths as strings; written atomically."""
    return atomic_write_text(path, json.dumps(json_ready(obj), indent=1, default=json_default))


def fingerprint(obj) -> str:
    """A short SHA-256 of `obj` as canonical JSON (sorted keys)."""
    text = json.dumps(json_ready(obj), sort_keys=True, default=json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# LabWorldConfig fields of kind `model` only: left out of a controlled world's settings, so its fingerprints (and
# every record and prepared.json written before these fields existed) stay as they were
MODEL_WORLD_FIELDS = ("model", "prompts", "eval_prompts", "n_eval_prompts", "gold", "label_scorer", "chat",
                      "max_new_tokens", "batch_size", "shared_prefill")


def preparation_key(world_settings: dict, config, n_pairs: int) -> str:
    """The fingerprint of what the reference, the behaviour policy and the pairs depend on (`world_settings`: the
    world's `settings()`)."""
    return fingerprint({"world": world_settings, "reference": dataclasses.asdict(config.reference),
                        "pairs": dataclasses.asdict(config.pairs), "n_pairs": int(n_pairs)})


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_prepared(out: Path, key: str) -> dict | None:
    """The saved preparation of `out` when it has fingerprint `key` and its files still exist, else None."""
    saved = _read_json(Path(out) / PREPARED)
    if not saved or saved.get("key") != key or not Path(saved["reference"]["path"]).is_dir():
        return None
    for seed, entry in saved["pairs"].items():  # (a directory prepared before `file` was recorded)
        entry.setdefault("file", str(Path(out) / "pairs" / f"seed-{seed}.jsonl"))
    return saved if all(Path(e["file"]).is_file() for e in saved["pairs"].values()) else None


def prepared_key_of(out: Path) -> str | None:
    """The fingerprint `out` was prepared with (None: not a lab directory)."""
    saved = _read_json(Path(out) / PREPARED)
    return saved.get("key") if saved else None


def save_prepared(out: Path, key: str, prepared: dict) -> Path:
    """Write `prepared.json` (the key plus what the preparation produced)."""
    return write_json({"key": key, **prepared}, Path(out) / PREPARED)


def spec_key(spec) -> str:
    """The fingerprint of one run (a `RunSpec`): everything that decides its numbers."""
    return fingerprint({"meta": spec.meta(), "train": spec.train_keys, "world": spec.world,
                        "eval_samples": spec.eval_samples})


def load_record(spec) -> dict | None:
    """The finished run's record when its fingerprint is this spec's, else None."""
    rec = _read_json(spec.run_dir / RECORD)
    if not rec or rec.get("spec_key") != spec_key(spec):
        return None
    rec.pop("spec_key")
    return rec


def save_record(spec, record: dict) -> Path:
    """Write the run's `record.json` with its spec's fingerprint."""
    return write_json({**record, "spec_key": spec_key(spec)}, spec.run_dir / RECORD)
