"""SIGTERM / SIGUSR1 from the first line of `isdaa` (issue 23, finding 11): before the trainer's own handler is
installed (imports, model loading, set-up) a stop signal ends the command with one line and exit code 128 + the
signal number, not the default action (-15, no message); the trainer's handler takes over for the steps and
hands back after them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import isdaa.cli
from isdaa.cli import main
from isdaa.training.signals import StopSignals

REPO = Path(__file__).resolve().parents[2]
MESSAGE = "isdaa: stopped by SIGTERM outside a run's training steps (nothing saved at this stop)"


def _catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum` (the SigCgt mask of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _command_that_runs(monkeypatch, body):
    monkeypatch.setattr(isdaa.cli, "command_function", lambda command: lambda args: body())


def _sigterm_self() -> None:
    """SIGTERM to this process, once a handler is there (without one, pytest itself would be killed)."""
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "no SIGTERM handler in the command"
    os.kill(os.getpid(), signal.SIGTERM)


def test_a_sigterm_before_the_steps_exits_143_with_one_line(monkeypatch, capsys):
    before = signal.getsignal(signal.SIGTERM)

    def body():
        _sigterm_self()
        time.sleep(5)  # interrupted by the handler at once
        return 0

    _command_that_runs(monkeypatch, body)
    assert main(["train"]) == 143
    assert capsys.readouterr().err == MESSAGE + "\n"
    assert signal.getsignal(signal.SIGTERM) is before  # in-process callers get their handler back


def test_the_trainer_handler_takes_over_and_hands_back(monkeypatch, capsys):
    seen = {}

    def body():
        with StopSignals() as stop:  # what the trainer does around its steps
            os.kill(os.getpid(), signal.SIGTERM)
            seen["recorded"] = stop.received
        _sigterm_self()  # after the steps (final model, plots): the entry handler again
        time.sleep(5)
        return 0

    _command_that_runs(monkeypatch, body)
    assert main(["train"]) == 143
    assert seen["recorded"] == signal.SIGTERM  # recorded by the trainer's handler, not raised
    assert capsys.readouterr().err == MESSAGE + "\n"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the signal mask from /proc")
def test_sigterm_during_the_imports_of_a_real_command(tmp_path):
    """`python -m isdaa.cli train ...` is sent SIGTERM as soon as it handles the signal: that is while it still
    imports torch and transformers (well under a second after start), long before the trainer's handler."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "isdaa.cli", "train", "--config", "examples/tiny-is-dpo.yaml", "--output_dir", str(run),
         "--progress", "false"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    try:
        while not _catches(proc.pid, signal.SIGTERM):
            assert proc.poll() is None and time.monotonic() - start < 60, "the process never handled SIGTERM"
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, (proc.returncode, err[-2000:])
    assert err.splitlines()[-1] == MESSAGE and "Traceback" not in err
    assert not (run / "checkpoints").exists()
