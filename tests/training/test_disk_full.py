"""A full disk: a checkpoint or `final/` that cannot be written gives one `error:` line and exit 1; the previous
complete checkpoint stays intact and loadable, the torn temporary directory is removed, and once space is freed
the same command resumes and ends with the weights of an uninterrupted run.

Two ways to fill the disk: a fault-injecting `os.fsync` that fails with ENOSPC for the files being written (fast;
what NFS and quota'd file systems report at fsync), and a real, small tmpfs (slow; needs root to mount it,
skipped with the reason otherwise), sized from an uninterrupted run so that the step-4 checkpoint, or `final/`,
does not fit.
"""

from __future__ import annotations

import errno
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from isdaa.cli import main
from isdaa.training import checkpoint as ckpt

ARGS = ["--max_steps", "6", "--save_every", "2", "--keep_last", "2"]


def _final(run: Path) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def args_of(tokenizer_dir, pairs_file):
    from test_lock import _train_args

    return lambda run: [a for a in _train_args(run, tokenizer_dir, pairs_file) if a != "--overwrite"] + ARGS


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tokenizer_dir, pairs_file):
    """The final weights of the run of `args_of` without a fault."""
    from test_lock import _train_args

    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main([*_train_args(run, tokenizer_dir, pairs_file), *ARGS]) == 0
    return _final(run)


@pytest.fixture
def full_disk_at(monkeypatch):
    """`full_disk_at(marker)`: from now on, fsync of a file whose path contains `marker` fails with ENOSPC."""
    real_fsync = os.fsync

    def start(marker: str):
        def fsync(fd):
            path = os.readlink(f"/proc/self/fd/{fd}")
            if marker in path and os.path.isfile(path):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    yield start
    monkeypatch.setattr(os, "fsync", real_fsync)


@pytest.mark.parametrize("fails, marker, resume_step", [("checkpoint", "step-4.tmp-write", 2), ("final", "final.tmp", 4)])
def test_failed_write_keeps_the_previous_checkpoint(fails, marker, resume_step, args_of, full_disk_at, uninterrupted,
                                                    tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"

    full_disk_at(marker)
    assert main(args_of(run)) == 1
    err = capsys.readouterr().err
    kept = run / "checkpoints" / f"step-{resume_step}"
    target = run / "checkpoints" / "step-4" if fails == "checkpoint" else run / "final"
    what = "checkpoint" if fails == "checkpoint" else "the model"
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: cannot write {what} {target} (No space left on device; ")
    assert err.endswith(f"free there); the checkpoint {kept} is intact: free space, then run the same command to "
                        "resume from it\n")
    assert ckpt.latest_checkpoint(run) == kept and ckpt.torn_checkpoints(run) == []
    assert not (run / "final").exists() and not (run / "final.tmp").exists()

    monkeypatch.undo()  # space is back
    assert main(args_of(run)) == 0
    assert f"isdaa: resuming from {kept} (step {resume_step})" in capsys.readouterr().out
    _assert_same(_final(run), uninterrupted)


# ---- slow: a real full disk (tmpfs) ---------------------------------------------------------------------


def _pages(*paths: Path) -> int:
    """What the files under `paths` take on a tmpfs (whole 4 KiB pages)."""
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return sum(math.ceil(f.stat().st_size / 4096) * 4096 for f in files)


@pytest.fixture
def tmpfs(tmp_path):
    """`tmpfs(size)` mounts a fresh tmpfs of `size` bytes and returns it; `.resize(mount, size)`; unmounted at the end."""
    mounts = []

    class Mounts:
        def __call__(self, size: int) -> Path:
            point = tmp_path / f"disk{len(mounts)}"
            point.mkdir()
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here (root needed): {done.stderr.strip()}")
            mounts.append(point)
            return point

        def resize(self, point: Path, size: int) -> None:
            subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], check=True)

    yield Mounts()
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.slow
def test_real_full_disk_for_checkpoint_and_final(tmpfs, tmp_path, tokenizer_dir, pairs_file):
    from test_crash_resume import _args, _cli

    def args(run, keep_last):
        return [*_args(run, tokenizer_dir, pairs_file), "--max_steps", "6", "--keep_last", str(keep_last), "--plots", "false"]

    base = tmp_path / "base"
    assert _cli(args(base, 2)).returncode == 0
    ckpt_size = _pages(base / "checkpoints" / "step-4")
    final_size = _pages(base / "final")
    misc = _pages(base / "config.yaml", base / "metrics.jsonl", base / "ref-cache") + 4096  # + the lock file
    cases = [
        # keep_last 1: step-2 fits, step-4 (written next to it) does not
        ("checkpoint", 1, misc + ckpt_size + ckpt_size // 2, "step-4", 2),
        # keep_last 2: both checkpoints fit, final/ after them does not
        ("the model", 2, misc + 2 * ckpt_size + final_size // 2, "final", 4),
    ]
    for what, keep_last, size, target, resume_step in cases:
        disk = tmpfs(size)
        run = disk / "run"
        failed = _cli(args(run, keep_last))
        kept = run / "checkpoints" / f"step-{resume_step}"
        target_path = run / "checkpoints" / target if target.startswith("step") else run / target
        assert failed.returncode == 1, failed.stderr[-3000:]
        assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
        assert failed.stderr.startswith(f"error: cannot write {what} {target_path} (")
        assert f"the checkpoint {kept} is intact" in failed.stderr
        assert ckpt.latest_checkpoint(run) == kept and ckpt.torn_checkpoints(run) == []
        assert not (run / "final").exists() and not (run / "final.tmp").exists()

        tmpfs.resize(disk, 4 * size)  # space freed
        again = _cli(args(run, keep_last))
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"isdaa: resuming from {kept} (step {resume_step})" in again.stdout
        _assert_same(_final(run), _final(base))
