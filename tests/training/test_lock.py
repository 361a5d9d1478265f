"""One run per output directory: an exclusive `flock` on `<output_dir>/.lock`, held by the main process for
the whole run and dropped by the kernel when the process dies. A second `isdaa train` on a directory in use
exits 2 with one line naming the other process, and touches nothing of the first run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_INIT, WORDS
from isdaa.cli import main
from isdaa.runtime import DirectoryLock
from isdaa.training.trainer import fit

# another run holding the lock, as `DirectoryLock.acquire` takes it (without importing torch: starts in 50 ms)
_HOLDER = r"""
import fcntl, os, sys, time

os.makedirs(sys.argv[1], exist_ok=True)
fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, f"{os.getpid()}\n".encode())
print("locked", flush=True)
time.sleep(3600)
"""


def _snapshot(root: Path) -> dict:
    """Every path under `root` with its bytes (directories: None)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def _fake_run(run: Path) -> None:
    """What a run in progress has written: a complete checkpoint, one being written, its log."""
    for name, state in (("step-2", True), ("step-4.tmp-write", False)):
        d = run / "checkpoints" / name
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"weights")
        if state:
            (d / "trainer_state.json").write_text(json.dumps({"step": 2}))
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.7}\n')


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of `tmp_path / "run"` (started on demand); killed at the end."""
    procs = []

    def start(run: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _train_args(run: Path, tokenizer_dir: Path, pairs_file: Path) -> list[str]:
    """`isdaa train` of the tiny model, 2 steps, `--overwrite`."""
    return ["train", "--output_dir", str(run), "--model.init", json.dumps(dict(TINY_INIT, vocab_size=len(WORDS) + 8)),
            "--model.tokenizer", str(tokenizer_dir), "--data.train_file", str(pairs_file),
            "--data.max_length", "32", "--data.max_prompt_length", "16", "--batch_size", "8", "--max_steps", "2",
            "--progress", "false", "--num_threads", "1", "--plots", "false", "--overwrite"]


def test_second_run_refused_while_the_first_holds_the_directory(tokenizer_dir, pairs_file, tmp_path, holder, capsys):
    run = tmp_path / "run"
    _fake_run(run)
    other = holder(run)
    before = _snapshot(run)
    code = main(_train_args(run, tokenizer_dir, pairs_file))  # --overwrite, which would delete the first run's files
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: option output_dir: {run} is in use by another isdaa run (process {other.pid});")
    assert _snapshot(run) == before  # nothing touched: not the torn checkpoint, not the lock file

    other.send_signal(signal.SIGKILL)  # the kernel drops a dead process's lock: no stale lock
    other.wait()
    assert main(_train_args(run, tokenizer_dir, pairs_file) + ["--resume", "never"]) == 0  # the fake checkpoint: start over
    assert (run / "final" / "model.safetensors").is_file() and not (run / DirectoryLock.NAME).exists()


def test_the_lock_is_held_during_the_run_and_released_after(tiny_config, tmp_path):
    """During the run another lock attempt names this process; afterwards the file is gone and the next run in
    the same process (the lab trains many) takes it again."""
    run = tmp_path / "run"
    seen = []

    class TryLock:
        def on_log(self, step, metrics):
            seen.append(DirectoryLock(run).acquire())

    fit(tiny_config(output_dir=str(run), max_steps=2), callbacks=[TryLock()])
    assert seen == [f"process {os.getpid()}"] * 2
    assert not (run / DirectoryLock.NAME).exists()
    fit(tiny_config(output_dir=str(run), max_steps=2, overwrite=True, resume="never"))


def test_plots_are_written_while_the_lock_is_held(tiny_config, tmp_path, monkeypatch):
    """`isdaa train`'s plots/ and summary.md come before the lock is released: no second run can start in the
    directory while they are written."""
    from isdaa.training import run as training_run

    run, seen = tmp_path / "run", []
    monkeypatch.setattr(training_run, "plot_runs", lambda dirs: seen.append(DirectoryLock(dirs[0]).acquire()))
    training_run.train(tiny_config(output_dir=str(run), max_steps=1, plots=True))
    assert seen == [f"process {os.getpid()}"]


def test_refused_start_leaves_the_directory_as_it_was(tiny_config, tmp_path, capsys):
    """A refusal after the lock was taken (not empty, no --overwrite) removes the lock file again; a directory
    created only for the lock is removed too."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    before = _snapshot(run)
    with pytest.raises(Exception, match="is not empty and holds no checkpoint"):
        fit(tiny_config(output_dir=str(run)))
    assert _snapshot(run) == before

    fresh = tmp_path / "fresh"
    with pytest.raises(Exception, match="is not a complete checkpoint"):
        fit(tiny_config(output_dir=str(fresh), resume=str(tmp_path / "nowhere")))
    assert not fresh.exists()


def test_lock_primitive(tmp_path):
    """Exclusive between two opens (also in one process), released on `release`, retaken afterwards; a stale
    lock file (a killed run) does not block."""
    (tmp_path / DirectoryLock.NAME).write_text("12345\n")  # left by a SIGKILLed run: no flock on it
    first, second = DirectoryLock(tmp_path), DirectoryLock(tmp_path)
    assert first.acquire() is None
    assert (tmp_path / DirectoryLock.NAME).read_text() == f"{os.getpid()}\n"
    assert second.acquire() == f"process {os.getpid()}"
    first.release()
    assert not (tmp_path / DirectoryLock.NAME).exists()
    assert second.acquire() is None
    second.release()


def test_a_waiter_on_a_removed_lock_file_locks_the_new_one(tmp_path, monkeypatch):
    """The holder removes the file on release: a run that opened the old file and got its lock after the
    release must notice the file is gone and lock a fresh one (else two runs would both 'hold' the lock)."""
    import fcntl

    holder = DirectoryLock(tmp_path)
    assert holder.acquire() is None
    original_flock, calls = fcntl.flock, []

    def flock_after_release(fd, op):  # the holder releases between our open and our flock
        calls.append(fd)
        if len(calls) == 1:
            holder.release()
        return original_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock_after_release)
    newcomer = DirectoryLock(tmp_path)
    assert newcomer.acquire() is None
    assert len(calls) == 2  # the first lock was on the unlinked file: retried on a new one
    monkeypatch.setattr(fcntl, "flock", original_flock)
    assert DirectoryLock(tmp_path).acquire() == f"process {os.getpid()}"
    newcomer.release()


# ---- slow: a real first run, caught in the middle of writing a checkpoint --------------------------------

_PAUSE = r"""
import os, sys, time
from pathlib import Path
import accelerate

marker, go = Path(os.environ["PAUSE_MARKER"]), Path(os.environ["PAUSE_GO"])
orig_save = accelerate.Accelerator.save_state


def save_state(self, output_dir=None, **kw):
    out = orig_save(self, output_dir, **kw)
    if Path(output_dir).name == "step-4.tmp-write":
        marker.write_text(str(os.getpid()))
        while not go.exists():  # paused with a torn checkpoint on disk, until the test lets us go
            time.sleep(0.05)
    return out


accelerate.Accelerator.save_state = save_state
from isdaa.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_second_cli_run_cannot_touch_a_run_in_progress(tmp_path, tokenizer_dir, pairs_file):
    from test_crash_resume import _args, _cli, _env

    run, marker, go = tmp_path / "run", tmp_path / "marker", tmp_path / "go"
    args = _args(run, tokenizer_dir, pairs_file)
    env = dict(_env(), PAUSE_MARKER=str(marker), PAUSE_GO=str(go))
    first = subprocess.Popen([sys.executable, "-c", _PAUSE, *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
            time.sleep(0.05)
        before = _snapshot(run)
        assert "checkpoints/step-4.tmp-write/model.safetensors" in before
        for extra in (["--overwrite"], ["--resume", "never", "--overwrite"]):  # each would delete or resume
            second = _cli(args + extra)
            assert second.returncode == 2, second.stderr[-2000:]
            assert second.stderr == (f"error: option output_dir: {run} is in use by another isdaa run (process "
                                     f"{first.pid}); wait for it to end or choose another output_dir\n")
            assert _snapshot(run) == before
        go.write_text("")
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (run / "final" / "model.safetensors").is_file() and not (run / DirectoryLock.NAME).exists()
