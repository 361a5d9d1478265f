"""The monitor under DDP (2 CPU processes, gloo): the prompts are split across processes and the numbers
gathered — every prompt's samples are counted once, KL is 0 at step 0 on both ranks' references, and
best/ is written (a collective save) without a hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import TINY_INIT, WORDS, make_pairs, write_jsonl
from isdaa.runtime import read_metrics

pytestmark = pytest.mark.slow


def test_monitor_two_processes(tokenizer_dir, pairs_file, tmp_path):
    eval_file = write_jsonl(tmp_path / "eval.jsonl", make_pairs(5, seed=2))  # 5 prompts: 3 on rank 0, 2 on rank 1
    out = tmp_path / "run"
    args = [
        "train", "--output_dir", str(out), "--batch_size", "4", "--max_steps", "4", "--progress", "false",
        "--num_threads", "1", "--model.init", str(dict(TINY_INIT, vocab_size=len(WORDS) + 8)),
        "--model.tokenizer", str(tokenizer_dir), "--data.train_file", str(pairs_file), "--data.eval_file",
        str(eval_file), "--data.max_length", "32", "--data.max_prompt_length", "16", "--optim.lr", "3e-3",
        "--monitor.every", "2", "--monitor.n_samples", "3", "--monitor.max_new_tokens", "8",
        "--monitor.scorer", "length", "--monitor.keep_best", "true",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
         "-m", "isdaa.cli", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    records = {m["step"]: m for m in read_metrics(out) if "monitor/kl_k3" in m}
    assert sorted(records) == [0, 2, 4]
    assert all(m["monitor/n_samples"] == 5 * 3 for m in records.values())
    assert records[0]["monitor/kl_k3"] == 0.0 and records[4]["monitor/kl_k3"] > 0
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["monitor/gold"] == max(m["monitor/gold"] for m in records.values())
    assert (out / "plots" / "monitor.png").is_file()
