"""Preemption: SIGTERM / SIGUSR1 / Ctrl-C during training finish the current optimizer step, save a complete
checkpoint of it, stop with one line and exit 128 + the signal number; the same command resumes and ends with
the weights of an uninterrupted run, bit for bit (CPU).

Fast tests send the signal from inside the run (a callback's `on_log`, at a random step: the step is drawn
from a seeded RNG and printed). The slow ones send it from outside to a `python -m isdaa.cli train` process
(stalled for a moment in a chosen step by a test-only bootstrap, nothing in `src/` patched), and under
torchrun to rank 1 only: both ranks must save the same step.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_INIT, WORDS
from isdaa.cli import main
from isdaa.config import TrainConfig, load_config
from isdaa.errors import RunInterrupted
from isdaa.training import checkpoint as ckpt
from isdaa.training.signals import StopSignals
from isdaa.training.trainer import fit

STEPS = 8


class SignalAt:
    """Sends `signum` to this process while step `step` is being logged (i.e. in the middle of the run)."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_log(self, step, metrics):
        if step == self.step:
            os.kill(os.getpid(), self.signum)


def _final(run: Path) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


def _assert_equal_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _config(run_dir: Path, tokenizer_dir: Path, pairs_file: Path) -> TrainConfig:
    return load_config(TrainConfig, None, {
        "output_dir": str(run_dir), "seed": 2, "batch_size": 4, "grad_accum": 2, "max_steps": STEPS, "log_every": 1,
        "progress": False, "num_threads": 1, "model.init": dict(TINY_INIT, vocab_size=len(WORDS) + 8),
        "model.tokenizer": str(tokenizer_dir), "data.train_file": str(pairs_file), "data.max_length": 32,
        "data.max_prompt_length": 16, "optim.lr": 1e-3, "optim.warmup_ratio": 0.25, "objective.beta": 0.2,
        "objective.weighting": "is",
    })


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tokenizer_dir, pairs_file):
    """(a config maker, the final weights of the uninterrupted run)."""
    def config(run_dir):
        return _config(run_dir, tokenizer_dir, pairs_file)

    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    fit(config(run))
    return config, _final(run)


@pytest.mark.parametrize("signum, code, what", [
    (signal.SIGTERM, 143, "preempted (SIGTERM)"),
    (signal.SIGUSR1, 138, "preempted (SIGUSR1)"),
    (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
])
def test_signal_saves_the_step_and_resume_is_exact(signum, code, what, uninterrupted, tmp_path):
    config, reference = uninterrupted
    at = random.Random(int(signum)).randrange(1, STEPS - 1)  # a random step, not the last
    print(f"signal {signum} at step {at}")
    run = tmp_path / "run"
    before = signal.getsignal(signum)
    with pytest.raises(RunInterrupted) as stopped:
        fit(config(run), callbacks=[SignalAt(at, signum)])
    assert signal.getsignal(signum) is before  # the handler is put back
    path = run / "checkpoints" / f"step-{at}"
    assert stopped.value.exit_code == code
    assert str(stopped.value) == f"{what} at step {at}; checkpoint {path}; run the same command to resume"
    assert ckpt.list_checkpoints(run) == [(at, path)] and ckpt.read_state(path)["step"] == at
    assert not (run / "final").exists()

    result = fit(config(run))  # the same call again: resumes from the signal's checkpoint
    assert result.steps == STEPS
    _assert_equal_weights(_final(run), reference)


def test_cli_prints_one_line_and_exits_143(tmp_path, tokenizer_dir, pairs_file, capsys, monkeypatch):
    """Through `isdaa train`: one `isdaa: preempted ...` line on stderr and the exit code of SIGTERM."""
    from test_crash_resume import _args

    from isdaa.training.trainer import Trainer

    original_init = Trainer.__init__

    def init_with_signal(self, config, inputs, callbacks=()):  # the CLI run gets the test's in-run signal
        original_init(self, config, inputs, [*callbacks, SignalAt(3, signal.SIGTERM)])

    monkeypatch.setattr(Trainer, "__init__", init_with_signal)
    code = main([*_args(tmp_path / "run", tokenizer_dir, pairs_file), "--plots", "false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 143
    assert err == [f"isdaa: preempted (SIGTERM) at step 3; checkpoint {tmp_path / 'run' / 'checkpoints' / 'step-3'}; "
                   "run the same command to resume"]


def test_signal_at_the_last_step_just_finishes(uninterrupted, tmp_path):
    """Nothing is left to resume after the last step: the run writes `final/` and returns normally."""
    config, reference = uninterrupted
    result = fit(config(tmp_path / "run"), callbacks=[SignalAt(STEPS, signal.SIGTERM)])
    assert result.steps == STEPS and ckpt.list_checkpoints(tmp_path / "run") == []
    _assert_equal_weights(_final(tmp_path / "run"), reference)


def test_stop_signals_record_and_restore():
    """Handlers only record (the first signal is kept); a second Ctrl-C raises at once; on exit the previous
    handlers are back."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == signal.SIGUSR1
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler raises before this ends
    assert {s: signal.getsignal(s) for s in previous} == previous


# ---- slow: a real signal from outside, one process and two ----------------------------------------------

_BOOT = r"""
import os, sys, time
from pathlib import Path

at, marker, rank = int(os.environ["STALL_AT"]), Path(os.environ["STALL_MARKER"]), os.environ.get("RANK", "0")

import accelerate

orig_backward, calls = accelerate.Accelerator.backward, [0]


def backward(self, loss, **kw):
    orig_backward(self, loss, **kw)
    calls[0] += 1
    if calls[0] == 2 * (at - 1) + 1 and rank == os.environ.get("STALL_RANK", "0"):  # grad_accum = 2
        marker.write_text(str(os.getpid()))
        time.sleep(2)  # the test signals us here, in the middle of step `at`


accelerate.Accelerator.backward = backward
from isdaa.cli import main

sys.exit(main(sys.argv[1:]))
"""


def _slow_args(run, tokenizer_dir, pairs_file, *extra):
    from test_crash_resume import _args

    return [*_args(run, tokenizer_dir, pairs_file), "--save_every", "0", "--plots", "false", *extra]


def _signal_when_stalled(cmd: list[str], env: dict, marker: Path, signum: int) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() or not marker.read_text():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the stall point was never reached"
            time.sleep(0.05)
        os.kill(int(marker.read_text()), signum)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
def test_sigterm_from_outside_then_same_command(tmp_path, tokenizer_dir, pairs_file):
    from test_crash_resume import MAX_STEPS, _cli, _env

    at = random.Random().randrange(2, MAX_STEPS - 2)
    print(f"SIGTERM in step {at}")
    base, run = tmp_path / "base", tmp_path / "run"
    assert _cli(_slow_args(base, tokenizer_dir, pairs_file)).returncode == 0
    marker = tmp_path / "marker"
    env = dict(_env(), STALL_AT=str(at), STALL_MARKER=str(marker))
    proc = _signal_when_stalled([sys.executable, "-c", _BOOT, *_slow_args(run, tokenizer_dir, pairs_file)], env, marker,
                                signal.SIGTERM)
    path = run / "checkpoints" / f"step-{at}"
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"isdaa: preempted (SIGTERM) at step {at}; checkpoint {path}; run the same command to resume")
    assert ckpt.is_complete(path)
    again = _cli(_slow_args(run, tokenizer_dir, pairs_file))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {path} (step {at})" in again.stdout
    _assert_equal_weights(_final(run), _final(base))


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_at_the_same_step(tmp_path, tokenizer_dir, pairs_file):
    """torchrun, 2 processes: SIGTERM to rank 1 only; rank 0 learns it through the all-reduce, both save the
    same step (one checkpoint with both ranks' RNG states), and a torchrun rerun resumes from it."""
    from test_crash_resume import _env

    at, run, marker = 5, tmp_path / "run", tmp_path / "marker"
    boot = tmp_path / "boot.py"
    boot.write_text(_BOOT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29547", str(boot),
           *_slow_args(run, tokenizer_dir, pairs_file, "--batch_size", "2")]
    env = dict(_env(), STALL_AT=str(at), STALL_MARKER=str(marker), STALL_RANK="1")
    proc = _signal_when_stalled(cmd, env, marker, signal.SIGTERM)
    path = run / "checkpoints" / f"step-{at}"
    line = f"isdaa: preempted (SIGTERM) at step {at}; checkpoint {path}; run the same command to resume"
    assert proc.returncode != 0
    # each rank prints the line (torchrun may stop the second before it prints): the same step on both
    assert line in proc.stderr and "preempted (SIGTERM) at step" not in proc.stderr.replace(line, ""), proc.stderr[-3000:]
    assert ckpt.is_complete(path) and ckpt.list_checkpoints(run) == [(at, path)]
    assert {p.name for p in path.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}
    rerun = [*cmd[:6], "29548", "-m", "isdaa.cli", *cmd[8:]]
    again = subprocess.run(rerun, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {path} (step {at})" in again.stdout
    assert (run / "final" / "model.safetensors").is_file()
