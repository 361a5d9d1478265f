"""Atomic checkpoints on top of `accelerate`'s state saving (or, under `distributed: fsdp2`, of
`torch.distributed.checkpoint`: see `sharding.py`).

A checkpoint is `<run>/checkpoints/step-N/`: accelerate's `save_state` (model, optimizer, scheduler, RNG)
plus `trainer_state.json` (step, epoch, data position), written last. It is first written to
`step-N.tmp-*` and renamed into place, so a crash while writing leaves a `.tmp-*` directory that is
never read (and is reported and removed on the next start). Deleting a checkpoint (keep-last pruning,
or replacing one of the same step) removes its state file first, so a crash midway leaves a torn one
too, never one that looks complete but lacks files. Only the newest `keep_last` are kept.

Durable: every file of `step-N.tmp-write` is fsynced before the rename and `checkpoints/` after it, so after a
power cut a `step-N` directory is complete. A write that fails (disk full, I/O error) removes the temporary
directory and raises `WriteFailed` (one line naming the previous checkpoint, which is untouched).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from isdaa.runtime import durable_rename, failing_write

STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TMP_MARK = ".tmp-"  # step-N.tmp-write: a checkpoint being written (never read)
_OURS = re.compile(r"^step-\d+(\.tmp-.*)?$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    """`<run>/checkpoints`."""
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def is_complete(path: str | Path) -> bool:
    """A checkpoint directory that was fully written: it has the state file and is not a temporary one."""
    path = Path(path)
    return path.is_dir() and _TMP_MARK not in path.name and (path / STATE_FILE).is_file()


def torn_checkpoints(run_dir: str | Path) -> list[Path]:
    """Directories left by a crash while writing: temporary `step-N.tmp-*` ones (even when the crash came
    after the state file was written, just before the rename) and `step-N` ones missing the state file
    (a crash while an old checkpoint was being deleted). Other entries of `checkpoints/` are left alone."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _OURS.match(p.name) and not is_complete(p))


def _remove(path: Path) -> None:
    """Delete a checkpoint so that a crash midway leaves a torn one (state file gone first), never a
    'complete' one with missing files."""
    (path / STATE_FILE).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint of the highest step, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def read_state(path: str | Path) -> dict:
    """The trainer's state file of a checkpoint (step, epoch, skipped_steps, bad_streak)."""
    return json.loads((Path(path) / STATE_FILE).read_text())


def resume_advice(run_dir: str | Path) -> str:
    """What to do after a failed write: resume from the newest complete checkpoint, or start over."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return "no complete checkpoint to resume from: free space, then run the same command with --overwrite"
    return f"the checkpoint {latest} is intact: free space, then run the same command to resume from it"


def save_checkpoint(accelerator, run_dir: str | Path, step: int, state: dict, keep_last: int,
                    write_state: Callable[[Path], None] | None = None) -> Path | None:
    """Write `step-N` atomically and durably (all processes must call it; the main process renames and
    prunes). `write_state(directory)` writes the model, optimizer, schedule and RNG (default: accelerate's
    `save_state`; isdaa's FSDP2 writes `torch.distributed.checkpoint` shards). `WriteFailed` if it cannot be
    written (the temporary directory removed)."""
    root = checkpoint_dir(run_dir)
    final = root / f"step-{step}"
    tmp = root / f"step-{step}.tmp-write"
    advice = resume_advice(run_dir)
    if accelerator.is_main_process:
        with failing_write("checkpoint", final, advice):
            root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    with failing_write("checkpoint", final, advice, temporary=tmp):
        if write_state is None:
            accelerator.save_state(str(tmp), safe_serialization=True)
        else:
            write_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with failing_write("checkpoint", final, advice, temporary=tmp):
            (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}))
            if final.exists():
                _remove(final)
            durable_rename(tmp, final)
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            _remove(old)
    accelerator.wait_for_everyone()
    return final


def remove_all(run_dir: str | Path) -> None:
    """Delete every checkpoint of a run, complete or torn (a fresh start with `overwrite`), newest first; other
    entries of `checkpoints/` are kept, and the folder is removed only once empty."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return
    for _, path in reversed(list_checkpoints(run_dir)):
        _remove(path)
    for path in torn_checkpoints(run_dir):
        shutil.rmtree(path, ignore_errors=True)
    if not any(root.iterdir()):
        root.rmdir()


def remove_torn(run_dir: str | Path) -> list[Path]:
    """Delete the torn checkpoints of a run (see `torn_checkpoints`) and return them."""
    torn = torn_checkpoints(run_dir)
    for p in torn:
        shutil.rmtree(p, ignore_errors=True)
    return torn
