"""A random-kill soak: one `isdaa train` SIGKILLed at 10 random moments and restarted each time with the same
command, then left to finish: the final weights and per-step losses are those of an uninterrupted run, bit for
bit (CPU).

Unlike `test_crash_resume.py` (kills at chosen points), the moments are drawn at random (the seed is printed;
`SOAK_SEED=<n>` replays a run): eight in the training phase (a uniform delay after the attempt's set-up wrote
`config.yaml`, over the uninterrupted run's training time scaled by the share of steps the attempt has left, so
kills land in steps, checkpoint writes, pruning, evaluation and `final/`), two in the set-up before it
(imports, data, reference cache, lock).
While the directory holds no complete checkpoint (an attempt killed before the first one) the command has
`--overwrite`, so it starts over; every later one is the plain command, which resumes from the newest complete
checkpoint. An attempt that ends by itself leaves a finished run, which the same command leaves as it is: its
`final/` is then removed, so that the next attempt redoes the steps after the last checkpoint (and can be
killed there). Each kill's moment and what it left is printed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isdaa.training import checkpoint as ckpt

from test_crash_resume import MAX_STEPS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # ~12 starts of `isdaa train`: 2-3 min on 2 idle cores

KILLS = 10
IN_SETUP = 2  # of the kills, those drawn in the set-up phase


def _command(run: Path, tokenizer_dir, pairs_file) -> list[str]:
    from test_crash_resume import _args

    started = ckpt.list_checkpoints(run) or (run / "final").is_dir()
    return [sys.executable, "-m", "isdaa.cli", *_args(run, tokenizer_dir, pairs_file), "--save_every", "1",
            "--eval_every", "5", "--data.eval_file", str(pairs_file), "--plots", "false",
            *([] if started else ["--overwrite"])]


def _phases(cmd: list[str], run: Path, env: dict) -> tuple[float, float]:
    """(set-up seconds, training seconds) of an uninterrupted run: until `config.yaml` appears, then to the exit."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    setup = None
    while proc.poll() is None:
        if setup is None and (run / "config.yaml").exists():
            setup = time.monotonic() - started
        time.sleep(0.01)
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    return setup, time.monotonic() - started - setup


def _left(run: Path) -> str:
    """What a kill left: the last logged step, the complete and the torn checkpoints, final/."""
    steps = []
    for line in (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []:
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            steps.append(f"a torn line after {steps[-1] if steps else None}")
    complete = [s for s, _ in ckpt.list_checkpoints(run)]
    torn = [p.name for p in ckpt.torn_checkpoints(run)]
    return (f"last logged step {steps[-1] if steps else None}, checkpoints {complete}, torn {torn}, "
            f"final/ {'yes' if (run / 'final').is_dir() else 'no'}")


def _kill_at_random(cmd: list[str], run: Path, env: dict, in_setup: bool, setup_s: float, train_s: float, rng) -> str:
    """Start the command, SIGKILL it at a random moment of the chosen phase; what happened, as one line."""
    started = time.monotonic()
    resumes_at = ckpt.list_checkpoints(run)[-1][0] if ckpt.list_checkpoints(run) else 0
    left = 1 - resumes_at / MAX_STEPS  # the share of the uninterrupted run's training this attempt redoes
    marker = run / "config.yaml"
    before = marker.stat().st_mtime if marker.exists() else 0.0
    log_path = run.parent / "attempt.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if in_setup:
            delay = rng.uniform(0, setup_s)
            time.sleep(delay)
            where = f"{delay:.2f}s after start (set-up)"
        else:
            while proc.poll() is None and not (marker.exists() and marker.stat().st_mtime > before):
                time.sleep(0.005)
            delay = rng.uniform(0, train_s * left)  # within what is left to train, most likely
            time.sleep(delay)
            where = f"{delay:.2f}s into training"
        if proc.poll() is not None:
            assert proc.returncode == 0, log_path.read_text()[-3000:]  # ended by itself: it must have succeeded
            return f"{where}: had already finished, not killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return f"{where} ({time.monotonic() - started:.1f}s): {_left(run)}"


def test_ten_random_sigkills_then_exact_result(tmp_path, tokenizer_dir, pairs_file):
    from test_crash_resume import _assert_same_run, _env

    seed = int(os.environ.get("SOAK_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    print(f"soak seed {seed}")
    env = _env()
    base, run = tmp_path / "base", tmp_path / "run"
    setup_s, train_s = _phases(_command(base, tokenizer_dir, pairs_file), base, env)
    print(f"uninterrupted: set-up {setup_s:.1f}s, training {train_s:.1f}s")
    in_setup = set(rng.sample(range(KILLS), IN_SETUP))
    killed, attempts = 0, 0
    while killed < KILLS:  # a moment drawn after a (resumed, shorter) attempt already ended is drawn again
        attempts += 1
        assert attempts <= 3 * KILLS, f"only {killed} of {attempts} attempts were killed before they ended"
        outcome = _kill_at_random(_command(run, tokenizer_dir, pairs_file), run, env, killed in in_setup, setup_s,
                                  train_s, rng)
        killed += "not killed" not in outcome
        print(f"attempt {attempts}, kill {killed}: {outcome}")
        if "not killed" in outcome:  # finished: the same command would leave it as it is (docs/reliability.md);
            shutil.rmtree(run / "final")  # without final/ the next attempt redoes the steps after the last checkpoint
    done = subprocess.run(_command(run, tokenizer_dir, pairs_file), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ckpt.torn_checkpoints(run) == []
    _assert_same_run(run, base)
