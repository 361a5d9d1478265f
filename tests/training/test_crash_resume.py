"""Crash safety: SIGKILL a `python -m isdaa.cli train` process, rerun the same command, and get the
weights of an uninterrupted run, bit for bit (CPU, fixed seed).

The killed process is the CLI itself, started through a small bootstrap (`_BOOT`) that installs a
test-only stall at a chosen point and writes a marker file when it gets there; the test then sends
SIGKILL, so the kill lands at a known point instead of a timing guess. Nothing in `src/` is patched:

- `mid_step`: in the first micro-batch's backward of step N (grad_accum = 2: half the gradient
  accumulated, optimizer not stepped);
- `mid_checkpoint`: after accelerate's `save_state` wrote `step-N.tmp-write/`, before the trainer's state
  file (the directory has model, optimizer, scheduler and RNG files but is incomplete);
- `before_rename`: after the state file was written into `step-N.tmp-write/`, just before the rename.

The rerun (a plain `python -m isdaa.cli train` with the same arguments) must resume from the latest
complete checkpoint (it says so on stdout), report and remove the torn directory, log every step
exactly once, and end with the final weights of the uninterrupted run (`torch.equal`) and the same
per-step losses. The fast tests at the end check the checkpoint bookkeeping without processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_INIT, WORDS
from isdaa.training import checkpoint as ckpt

MAX_STEPS = 12  # 64 pairs / 8 per step = 8 steps per epoch: the run crosses an epoch boundary
SAVE_EVERY = 2

_BOOT = r"""
import os, sys, time
from pathlib import Path

mode, at, marker = os.environ["CRASH_MODE"], int(os.environ["CRASH_AT"]), Path(os.environ["CRASH_MARKER"])


def stall(where):
    marker.write_text(where)
    time.sleep(3600)  # the test kills us here


import accelerate

if mode == "mid_step":
    orig_backward, calls = accelerate.Accelerator.backward, [0]

    def backward(self, loss, **kw):
        orig_backward(self, loss, **kw)
        calls[0] += 1
        if calls[0] == 2 * (at - 1) + 1:  # grad_accum = 2: the first micro-batch of step `at`
            stall(f"backward of step {at}")

    accelerate.Accelerator.backward = backward
elif mode == "mid_checkpoint":
    orig_save = accelerate.Accelerator.save_state

    def save_state(self, output_dir=None, **kw):
        out = orig_save(self, output_dir, **kw)
        if Path(output_dir).name == f"step-{at}.tmp-write":
            stall(f"after save_state of step {at}")
        return out

    accelerate.Accelerator.save_state = save_state
elif mode == "before_rename":
    orig_rename = Path.rename

    def rename(self, target):
        if self.name == f"step-{at}.tmp-write":
            stall(f"before renaming step {at}")
        return orig_rename(self, target)

    Path.rename = rename

from isdaa.cli import main

sys.exit(main(sys.argv[1:]))
"""


def _args(run_dir: Path, tokenizer_dir: Path, pairs_file: Path) -> list[str]:
    return [
        "train", "--output_dir", str(run_dir), "--model.init", json.dumps(dict(TINY_INIT, vocab_size=len(WORDS) + 8)),
        "--model.tokenizer", str(tokenizer_dir), "--data.train_file", str(pairs_file),
        "--data.max_length", "32", "--data.max_prompt_length", "16", "--batch_size", "4", "--grad_accum", "2",
        "--max_steps", str(MAX_STEPS), "--save_every", str(SAVE_EVERY), "--keep_last", "2", "--seed", "3",
        "--optim.lr", "1e-3", "--optim.warmup_ratio", "0.2", "--weighting", "is", "--beta", "0.2",
        "--progress", "false", "--num_threads", "1",
    ]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isdaa.cli", *args], capture_output=True, text=True, env=_env(), timeout=600)


def _run_and_kill(args: list[str], mode: str, at: int, tmp: Path) -> str:
    marker = tmp / f"marker-{mode}"
    env = dict(_env(), CRASH_MODE=mode, CRASH_AT=str(at), CRASH_MARKER=str(marker))
    log = (tmp / f"crash-{mode}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", _BOOT, *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, f"the run ended before the crash point: {(tmp / f'crash-{mode}.log').read_text()}"
            assert time.monotonic() < deadline, "the crash point was never reached"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    return marker.read_text()


def _weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "final" / "model.safetensors"))


def _train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return [r for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tokenizer_dir, pairs_file):
    run = tmp_path_factory.mktemp("baseline") / "run"
    proc = _cli(_args(run, tokenizer_dir, pairs_file))
    assert proc.returncode == 0, proc.stderr
    return run


def _assert_same_run(run: Path, baseline: Path) -> None:
    a, b = _weights(run), _weights(baseline)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == torch.float32
        assert torch.equal(a[k], b[k]), k
    rows, base_rows = _train_rows(run), _train_rows(baseline)
    assert [r["step"] for r in rows] == list(range(1, MAX_STEPS + 1))  # every step logged exactly once
    assert [r["loss"] for r in rows] == [r["loss"] for r in base_rows]
    assert [r["lr"] for r in rows] == [r["lr"] for r in base_rows]


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, at, resume_step",
    [("mid_step", 7, 6), ("mid_checkpoint", 10, 8), ("before_rename", 10, 8)],
)
def test_sigkill_then_resume_is_exact(mode, at, resume_step, baseline, tmp_path, tokenizer_dir, pairs_file):
    run = tmp_path / "run"
    args = _args(run, tokenizer_dir, pairs_file)
    where = _run_and_kill(args, mode, at, tmp_path)
    assert str(at) in where
    torn = run / "checkpoints" / f"step-{at}.tmp-write"
    complete = [p.name for _, p in ckpt.list_checkpoints(run)]
    assert complete == [f"step-{resume_step - SAVE_EVERY}", f"step-{resume_step}"]  # keep_last = 2
    assert not (run / "final").exists()
    if mode != "mid_step":
        assert torn.is_dir() and ckpt.torn_checkpoints(run) == [torn]
        assert ((torn / ckpt.STATE_FILE).is_file()) == (mode == "before_rename")

    proc = _cli(args)  # the same command again
    assert proc.returncode == 0, proc.stderr
    assert f"isdaa: resuming from {run / 'checkpoints' / f'step-{resume_step}'} (step {resume_step})" in proc.stdout
    if mode != "mid_step":
        assert f"ignored an incomplete checkpoint {torn}" in proc.stdout
    else:
        assert "incomplete checkpoint" not in proc.stdout
    assert not torn.exists() and ckpt.torn_checkpoints(run) == []
    assert "Traceback" not in proc.stderr
    _assert_same_run(run, baseline)


@pytest.mark.slow
def test_sigkill_in_first_checkpoint_needs_overwrite(baseline, tmp_path, tokenizer_dir, pairs_file):
    """No complete checkpoint to resume: the rerun refuses (exit 2, one line) rather than guess; with
    `--overwrite` it starts over and still matches the uninterrupted run."""
    run = tmp_path / "run"
    args = _args(run, tokenizer_dir, pairs_file)
    _run_and_kill(args, "mid_checkpoint", SAVE_EVERY, tmp_path)
    assert ckpt.list_checkpoints(run) == [] and len(ckpt.torn_checkpoints(run)) == 1

    refused = _cli(args)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "holds no checkpoint to resume; pass --overwrite" in refused.stderr

    proc = _cli(args + ["--overwrite"])
    assert proc.returncode == 0, proc.stderr
    assert ckpt.torn_checkpoints(run) == []
    _assert_same_run(run, baseline)


# ---- checkpoint bookkeeping, without processes (fast) ------------------------------------------------


def _mk(root: Path, name: str, state: bool) -> Path:
    d = root / "checkpoints" / name
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x")
    if state:
        (d / ckpt.STATE_FILE).write_text(json.dumps({"step": int(name.split("-")[1].split(".")[0])}))
    return d


def test_torn_and_complete_checkpoints(tmp_path):
    done2 = _mk(tmp_path, "step-2", True)
    done4 = _mk(tmp_path, "step-4", True)
    half_deleted = _mk(tmp_path, "step-1", False)  # a crash while pruning an old checkpoint
    tmp_no_state = _mk(tmp_path, "step-6.tmp-write", False)  # a crash inside save_state
    tmp_with_state = _mk(tmp_path, "step-8.tmp-write", True)  # a crash just before the rename
    other = _mk(tmp_path, "notes", False)  # not ours: left alone
    assert [p for _, p in ckpt.list_checkpoints(tmp_path)] == [done2, done4]
    assert ckpt.latest_checkpoint(tmp_path) == done4
    assert ckpt.torn_checkpoints(tmp_path) == sorted([half_deleted, tmp_no_state, tmp_with_state])
    assert ckpt.is_complete(done4) and not ckpt.is_complete(tmp_with_state) and not ckpt.is_complete(half_deleted)
    assert ckpt.remove_torn(tmp_path) == sorted([half_deleted, tmp_no_state, tmp_with_state])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["notes", "step-2", "step-4"]
    assert other.is_dir()


def test_deleting_a_checkpoint_removes_its_state_file_first(tmp_path, monkeypatch):
    """A crash in the middle of deleting a checkpoint must leave a torn one, never a 'complete' one."""
    import shutil

    d = _mk(tmp_path, "step-2", True)
    seen = []
    monkeypatch.setattr(shutil, "rmtree", lambda p, **kw: seen.append((Path(p), (Path(p) / ckpt.STATE_FILE).exists())))
    ckpt._remove(d)
    assert seen == [(d, False)]
    assert ckpt.torn_checkpoints(tmp_path) == [d]


def test_auto_resume_reports_and_removes_torn(tiny_config, tmp_path, capsys):
    """`resume: auto` picks the newest complete checkpoint; torn ones are printed and deleted."""
    from isdaa.training.setup import prepare_inputs, prepare_output_dir

    cfg = tiny_config(output_dir=str(tmp_path / "run"))
    run = tmp_path / "run"
    _mk(run, "step-2", True)
    torn = _mk(run, "step-4.tmp-write", True)
    inputs = prepare_inputs(cfg)
    prepare_output_dir(cfg, inputs)
    out = capsys.readouterr().out
    assert inputs.resume_from == run / "checkpoints" / "step-2"
    assert f"ignored an incomplete checkpoint {torn}" in out and "resuming from" in out
    assert not torn.exists()
