"""`distributed: fsdp2` on two CPU processes (torchrun, gloo): isdaa's own per-layer `fully_shard`.

- Same weights and per-step losses as one unsharded process with the same global batch, within 5e-6 (float
  summation order: the gradient is reduce-scattered in halves; the DDP test's tolerance is 1e-6, here the largest
  difference seen is ~1.3e-6), with the isdaa-specific parts under sharding: the prompt-shared forward (prompts of
  64+ tokens), grad_accum 2, clipping that bites, the ESS-tempered self-normalised weighting over the global batch
  (α equal to 1e-5), both reference paths (precomputed and cached; or a sharded reference model), and with
  `model.gradient_checkpointing` (per-layer checkpointing inside the sharded layers, prompt sharing kept).
- A SIGTERM on one process at step 2 stops both after a sharded checkpoint (torch.distributed.checkpoint); the
  same command resumes, and the final weights equal the uninterrupted run's, bit for bit.
- `final/` is a plain `save_pretrained` model: it loads in one process with `from_pretrained`.
- LoRA under fsdp2 (the adapter-disabled sharded model as the reference; `final/` merged on the main process)
  equals one plain LoRA process, merged weights and adapter alike.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_INIT, WORDS, make_pairs, write_jsonl
from isdaa.config import TrainConfig, load_config
from isdaa.modeling.tiny import word_tokenizer
from isdaa.runtime import read_metrics
from isdaa.training.setup import prepare_inputs
from isdaa.training.trainer import _use_shared_prompt

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# the test's SIGTERM at step STOP_AT (on the main process), then the CLI as usual
_STOPPING_CLI = r"""
import os, signal, sys
from isdaa.cli import main
from isdaa.training.trainer import Trainer

class StopAt:
    def on_log(self, step, metrics):
        if step == int(os.environ["STOP_AT"]):
            os.kill(os.getpid(), signal.SIGTERM)

original = Trainer.__init__
Trainer.__init__ = lambda self, config, inputs, callbacks=(): original(self, config, inputs, [*callbacks, StopAt()])
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def long_prompts(tmp_path_factory):
    """Pairs whose prompts hold 64+ tokens, so that the trainer runs the prompt-shared forward."""
    rng = random.Random(1)
    rows = make_pairs(64, seed=3)
    for row in rows:
        row["prompt"] += " " + " ".join(f"w{rng.randrange(24)}" for _ in range(rng.randrange(64, 80)))
    return write_jsonl(tmp_path_factory.mktemp("long") / "pairs.jsonl", rows)


def _args(tokenizer_dir, pairs_file, out, batch_size, *extra):
    return [
        "train", "--output_dir", str(out), "--batch_size", str(batch_size), "--grad_accum", "2", "--max_steps", "4",
        "--progress", "false", "--num_threads", "1", "--model.init", str(dict(TINY_INIT, vocab_size=len(WORDS) + 8)),
        "--model.tokenizer", str(tokenizer_dir), "--data.train_file", str(pairs_file), "--data.max_length", "112",
        "--data.max_prompt_length", "96", "--optim.lr", "1e-3", "--optim.max_grad_norm", "0.35",
        "--weighting", "is_ess_norm", "--objective.is_ess_target", "0.9999", *extra,
    ]


def _one(args):
    return subprocess.run([sys.executable, "-m", "isdaa.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=300)


def _two(args, port, script=None, env=None):
    entry = ["-m", "isdaa.cli"] if script is None else [str(script)]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         *entry, *args], env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=300,
    )


def _final(run) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


def _metric(run, key) -> list:
    return [m[key] for m in read_metrics(run) if key in m]


@pytest.mark.parametrize("case", ["precomputed", "sharded_model", "gradient_checkpointing"])
def test_two_sharded_processes_match_one(tokenizer_dir, long_prompts, tmp_path, case):
    extra = {"precomputed": [], "sharded_model": ["--precompute_ref", "false"],
             "gradient_checkpointing": ["--model.gradient_checkpointing", "true"]}[case]
    config = load_config(TrainConfig, None, {
        "model.init": dict(TINY_INIT, vocab_size=len(WORDS) + 8), "model.tokenizer": str(tokenizer_dir),
        "data.train_file": str(long_prompts), "data.max_length": 112, "data.max_prompt_length": 96,
        "model.gradient_checkpointing": case == "gradient_checkpointing"})
    assert _use_shared_prompt(config, prepare_inputs(config).train)  # the prompt-shared forward is under test
    one = _one(_args(tokenizer_dir, long_prompts, tmp_path / "one", 4, *extra))
    assert one.returncode == 0, one.stderr[-2000:]
    two = _two(_args(tokenizer_dir, long_prompts, tmp_path / "two", 2, "--distributed", "fsdp2", *extra), 29541)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _final(tmp_path / "one"), _final(tmp_path / "two")
    assert a.keys() == b.keys() and all(b[k].dtype == torch.float32 for k in b)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 5e-6, worst
    la, lb = _metric(tmp_path / "one", "loss"), _metric(tmp_path / "two", "loss")
    assert len(la) == len(lb) == 4 and max(abs(x - y) for x, y in zip(la, lb)) < 5e-6
    alphas = [_metric(tmp_path / d, "weights/alpha") for d in ("one", "two")]
    assert min(alphas[0][1:]) < 1.0 and max(abs(x - y) for x, y in zip(*alphas)) < 1e-5  # tempering acted, equally
    assert max(_metric(tmp_path / "two", "grad_norm")) > 0.35  # the clip acted


def test_sharded_checkpoint_resumes_exactly_and_final_loads_in_one_process(tokenizer_dir, pairs_file, tmp_path):
    from transformers import AutoModelForCausalLM  # heavy import, needed by this test only

    def args(out):
        return _args(tokenizer_dir, pairs_file, out, 4, "--distributed", "fsdp2", "--save_every", "2",
                     "--data.max_length", "32", "--data.max_prompt_length", "16", "--data.eval_file", str(pairs_file))

    whole = _two(args(tmp_path / "whole"), 29542)
    assert whole.returncode == 0, whole.stderr[-2000:]
    script = tmp_path / "stopping_cli.py"
    script.write_text(_STOPPING_CLI)
    stopped = _two(args(tmp_path / "run"), 29543, script=script, env={"STOP_AT": "2"})
    assert stopped.returncode != 0 and "preempted (SIGTERM) at step 2" in stopped.stdout + stopped.stderr
    assert not (tmp_path / "run" / "final").exists()
    assert (tmp_path / "run" / "checkpoints" / "step-2" / "dcp" / ".metadata").is_file()
    resumed = _two(args(tmp_path / "run"), 29544)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout
    a, b = _final(tmp_path / "whole"), _final(tmp_path / "run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _metric(tmp_path / "whole", "loss") == _metric(tmp_path / "run", "loss")
    held_out = [_metric(tmp_path / d, "eval/loss") for d in ("whole", "run")]  # the sharded no-grad forward
    assert len(held_out[0]) == 2 and held_out[0][-1] == held_out[1][-1]  # steps 0 and 4
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], b[k]) for k in b)
    tok = word_tokenizer(WORDS)
    ids = torch.tensor([tok("topic1 w3 good").input_ids])
    assert torch.isfinite(model(ids).logits).all()


def test_lora_two_sharded_processes_match_one(tokenizer_dir, long_prompts, tmp_path):
    """LoRA on the sharded model: the adapter-disabled reference (no precompute, so every step runs it), the
    adapter-only optimizer, and `final/` merged by PEFT on the main process equal one plain LoRA process."""
    extra = ["--lora.enabled", "true", "--precompute_ref", "false", "--optim.lr", "1e-2"]
    one = _one(_args(tokenizer_dir, long_prompts, tmp_path / "one", 4, *extra))
    assert one.returncode == 0, one.stderr[-2000:]
    two = _two(_args(tokenizer_dir, long_prompts, tmp_path / "two", 2, "--distributed", "fsdp2", *extra), 29545)
    assert two.returncode == 0, two.stderr[-2000:]
    for part in ("model.safetensors", "adapter/adapter_model.safetensors"):
        a, b = (load_file(str(tmp_path / d / "final" / part)) for d in ("one", "two"))
        assert a.keys() == b.keys()
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 5e-6, part
    la, lb = _metric(tmp_path / "one", "loss"), _metric(tmp_path / "two", "loss")
    assert max(abs(x - y) for x, y in zip(la, lb)) < 5e-6 and lb[-1] < lb[0]
