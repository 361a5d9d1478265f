"""Runtime helpers of a run: torch threads, the process group, atomic file writes.

- Threads are set deliberately: oversubscribed cores make sampling many times slower.
- Accelerate only forms a multi-process CPU group (gloo) when asked with `cpu=True`; without a GPU we ask,
  so `torchrun --nproc_per_node N -m isdaa.cli train ...` runs data-parallel on CPU as well.
- Atomic writes: a temporary file in the same directory, fsync, then rename over the target, so a reader (or
  a crash) never sees a half-written file and good data is never replaced by a torn one. Durable as well:
  the file (or every file of a directory, `durable_rename`) is fsynced before the rename and the parent
  directory after it, so the rename also holds against a power cut.
- Failed writes (`failing_write`): what the writers raise on a full disk (OSError ENOSPC, torch.save's
  RuntimeError, safetensors' error) becomes one `WriteFailed` line, the temporary output removed.
- `DirectoryLock`: one run per output directory (an exclusive `flock`, released by the kernel when the
  process dies, so a killed run never leaves a stale lock).
- JSON has no NaN or infinity: `json_ready` is the one place that replaces them (by null, or by what the caller
  asks, e.g. the strings "nan"/"inf" that `metrics.jsonl` keeps visible).
- `read_metrics`: the one reader of a run's `metrics.jsonl` (the training layer writes it, eval reads it back).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from safetensors import SafetensorError

from isdaa.errors import WriteFailed

# what writers raise when the disk is full: OSError (ENOSPC, EDQUOT, EIO), torch.save's RuntimeError
# ("file write failed", "unexpected pos"), safetensors' own error ("No space left on device (os error 28)")
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


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
        fsync_path(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def fsync_path(path: str | os.PathLike) -> None:
    """fsync one file, or one directory (which makes its entries, e.g. a rename into it, durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file under directory `root`, then every directory, deepest first."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


def durable_rename(src: Path, dst: Path) -> Path:
    """Rename file or directory `src` to `dst` after fsyncing all of it, then fsync `dst`'s directory: after a
    power cut `dst` is absent (or the old one) or complete, never torn."""
    fsync_tree(src) if src.is_dir() else fsync_path(src)
    src.rename(dst)
    fsync_path(dst.parent)
    return dst


def _free_space(path: Path) -> str:
    """The free space of the file system holding `path` (its nearest existing ancestor), for a message."""
    while not path.exists() and path != path.parent:
        path = path.parent
    free, units = float(shutil.disk_usage(path).free), ["B", "KiB", "MiB", "GiB", "TiB"]
    while free >= 1024 and len(units) > 1:
        free /= 1024
        units.pop(0)
    return f"{free:.1f} {units[0]}"


@contextlib.contextmanager
def failing_write(what: str, target: Path, advice: str, *, temporary: Path | None = None):
    """Run a write of `what` (`target`): a `WRITE_ERRORS` error becomes `WriteFailed` (one line: the target, the
    cause, the free space, then `advice`), after `temporary` (a file or directory) is removed."""
    try:
        yield
    except WRITE_ERRORS as exc:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True) if temporary.is_dir() else temporary.unlink(missing_ok=True)
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())[:200]
        raise WriteFailed(
            f"cannot write {what} {target} ({cause}; {_free_space(target)} free there); {advice}"
        ) from exc


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


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a `metrics.jsonl` file, or of the one in run directory `path` ([] when there is none); a
    line torn by a crash is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    records = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def write_json(obj: dict, path: str | os.PathLike) -> Path:
    """Write `obj` as indented strict JSON (non-finite floats -> null) to `path` atomically."""
    return atomic_write_text(path, json.dumps(json_ready(obj), indent=2, allow_nan=False) + "\n")


class DirectoryLock:
    """An exclusive `flock` on `<directory>/.lock`, held while a run writes there. The kernel drops it when the
    process ends, however it ends; the file (which names the holder's process id) is removed on `release`."""

    NAME = ".lock"

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / self.NAME
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock (creating the directory). None on success; else who holds it ("process N"), and
        nothing is written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip()
                os.close(fd)
                return f"process {holder}" if holder else "another process"
            except OSError:  # e.g. ENOLCK: a file system without locks
                os.close(fd)
                raise
            if self._still_linked(fd):
                break
            os.close(fd)  # the holder removed the file between our open and flock: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return None

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the file, then drop the lock (in this order: a run waiting on the old file retries)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
