"""The exit of 2-process (gloo) runs: ten torchrun trainings in a row, each with a deadline, so that an
intermittent hang after the final save fails the test (naming the run and its last output) instead of hanging
CI. The known cause, a gloo process group destroyed under a still-alive DDP Reducer, is avoided in
`Trainer.finish` (the DDP wrapper is dropped before `end_training`); the first run
checks that it really is gone at that point (run 0)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY_INIT, WORDS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # 10 runs, each with its own DEADLINE_S

RUNS = 10
DEADLINE_S = 300  # one run takes ~15 s on 2 idle cores, 1-2 min on heavily shared ones


def _torchrun(tmp_path, tokenizer_dir, pairs_file, i: int, script: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29560 + i),
        *script, "train", "--output_dir", str(tmp_path / f"run-{i}"), "--batch_size", "4", "--max_steps", "2",
        "--progress", "false", "--num_threads", "1", "--plots", "false",
        "--model.init", str(dict(TINY_INIT, vocab_size=len(WORDS) + 8)), "--model.tokenizer", str(tokenizer_dir),
        "--data.train_file", str(pairs_file), "--data.max_length", "32", "--data.max_prompt_length", "16",
    ]


def _run_with_deadline(cmd: list[str], log_path) -> tuple[int | None, float]:
    """(exit code, seconds); exit code None when the deadline passed (the whole process group is then killed)."""
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            return proc.wait(timeout=DEADLINE_S), time.monotonic() - started
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None, time.monotonic() - started


_ALIVE = r"""
import sys, weakref
import accelerate
from isdaa.training.trainer import Trainer

refs, finish, end = [], Trainer.finish, accelerate.Accelerator.end_training


def watched_finish(self):
    refs.append(weakref.ref(self.policy))  # the DDP wrapper
    return finish(self)


def checked_end(self):
    print(f"ddp wrapper alive at end_training: {refs[0]() is not None}", flush=True)
    return end(self)


Trainer.finish, accelerate.Accelerator.end_training = watched_finish, checked_end
from isdaa.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_ten_two_process_runs_exit(tmp_path, tokenizer_dir, pairs_file):
    """Run 0 also checks that the DDP wrapper is gone when the process group is destroyed (through a bootstrap
    that watches it); runs 1-9 are plain `isdaa train` under torchrun."""
    watcher = tmp_path / "alive.py"
    watcher.write_text(_ALIVE)
    for i in range(RUNS):
        log = tmp_path / f"run-{i}.log"
        script = [str(watcher)] if i == 0 else ["-m", "isdaa.cli"]
        code, seconds = _run_with_deadline(_torchrun(tmp_path, tokenizer_dir, pairs_file, i, script), log)
        print(f"run {i}: exit {code} after {seconds:.1f}s")
        out = log.read_text()
        assert code is not None, f"run {i} still running after {DEADLINE_S}s; final/ written: " \
                                 f"{(tmp_path / f'run-{i}' / 'final').is_dir()}; output:\n{out[-3000:]}"
        assert code == 0, out[-3000:]
        assert (tmp_path / f"run-{i}" / "final" / "model.safetensors").is_file()
        if i == 0:
            assert out.count("ddp wrapper alive at end_training: False") == 2, out[-3000:]
