"""`distributed: fsdp2` in one process (a gloo group of one): the same code as on N processes — sharded
parameters (DTensors), `torch.distributed.checkpoint` checkpoints, the gathered `final/` — and its config errors.
The N-process equalities are the slow tests of `test_fsdp.py`."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from accelerate.utils import DistributedType
from safetensors.torch import load_file
from torch.distributed.tensor import DTensor

from isdaa.cli import main
from isdaa.errors import InputError, RunInterrupted
from isdaa.training import sharding
from isdaa.training.parallel import make_plan
from isdaa.training.trainer import Trainer, fit


class StopAt:
    """SIGTERM to this process while step `step` is logged: the run checkpoints that step and stops."""

    def __init__(self, step: int):
        self.step = step

    def on_log(self, step, metrics):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class ShardedParameters:
    """Records whether the policy's weights are DTensors when training begins."""

    def on_train_begin(self, model, tokenizer):
        self.sharded = all(isinstance(p, DTensor) for p in model.parameters())


def _final(run) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


def test_one_process_fsdp2_trains_as_accelerate(tiny_config, tmp_path):
    """Sharded over one process, the weights after 4 steps (grad_accum 2, clipping active) equal the plain run's;
    the checkpoint is torch.distributed.checkpoint's, and the process group formed for the run is gone after it."""
    common = {"max_steps": 4, "batch_size": 4, "grad_accum": 2, "save_every": 2, "optim.max_grad_norm": 0.1}
    plain = fit(tiny_config(output_dir=str(tmp_path / "plain"), **common))
    probe = ShardedParameters()
    sharded = fit(tiny_config(output_dir=str(tmp_path / "fsdp2"), distributed="fsdp2", **common), callbacks=[probe])
    assert probe.sharded
    assert not dist.is_initialized()
    a, b = _final(plain.output_dir), _final(sharded.output_dir)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    assert any(h["grad_norm"] > 0.1 for h in sharded.history)  # the clip acted
    step2 = sharded.output_dir / "checkpoints" / "step-2"
    assert {"dcp", sharding.SCHEDULE_FILE, "rng-0.safetensors", "trainer_state.json"} <= {p.name for p in step2.iterdir()}
    assert (step2 / "dcp" / ".metadata").is_file()


def test_one_process_fsdp2_lora_trains_as_accelerate(tiny_config, tmp_path):
    """LoRA sharded over one process: the same merged `final/` and adapter as the plain LoRA run; the reference
    (the adapter disabled) and the adapter-only optimizer go through the sharded model."""
    common = {"max_steps": 2, "lora.enabled": True, "optim.lr": 1e-2, "precompute_ref": False}
    plain = fit(tiny_config(output_dir=str(tmp_path / "plain"), **common))
    sharded = fit(tiny_config(output_dir=str(tmp_path / "fsdp2"), distributed="fsdp2", **common))
    for part in ("model.safetensors", "adapter/adapter_model.safetensors"):
        a, b = (load_file(str(r.output_dir / "final" / part)) for r in (plain, sharded))
        assert a.keys() == b.keys()
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6, part
    assert sharded.history[-1]["loss"] < sharded.history[0]["loss"]  # the adapter learned (the reference held)


def test_fsdp2_bf16_computes_in_bf16_and_keeps_fp32_weights(tiny_config, tmp_path):
    """bf16 under fsdp2 (FSDP2's MixedPrecisionPolicy): the run differs from fp32 by bf16 rounding only, and
    `final/` holds the fp32 master weights."""
    common = {"max_steps": 3, "distributed": "fsdp2"}
    fp32 = _final(fit(tiny_config(output_dir=str(tmp_path / "fp32"), **common)).output_dir)
    bf16 = _final(fit(tiny_config(output_dir=str(tmp_path / "bf16"), mixed_precision="bf16", **common)).output_dir)
    assert all(v.dtype == torch.float32 for v in bf16.values())
    gap = max((fp32[k] - bf16[k]).abs().max().item() for k in fp32)
    assert 0 < gap < 1e-2, gap


def test_one_process_resume_from_a_sharded_checkpoint_is_exact(tiny_config, tmp_path):
    """Stopped by SIGTERM after step 2 (checkpoint), then run again: the final weights and the losses of every
    step are those of the uninterrupted run, bit for bit."""
    common = {"max_steps": 4, "save_every": 2, "distributed": "fsdp2", "optim.scheduler": "cosine"}
    whole = fit(tiny_config(output_dir=str(tmp_path / "whole"), **common))
    run = tmp_path / "stopped"
    with pytest.raises(RunInterrupted):
        fit(tiny_config(output_dir=str(run), **common), callbacks=[StopAt(2)])
    resumed = fit(tiny_config(output_dir=str(run), **common))
    a, b = _final(whole.output_dir), _final(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in whole.history[2:]] == [h["loss"] for h in resumed.history]


def test_fsdp2_refuses_a_checkpoint_of_accelerate(tiny_config, tmp_path):
    """A checkpoint written by `distributed: accelerate` holds no sharded state: one InputError line (the
    settings the checkpoint records name the change first; without them, the load says it)."""
    run = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        fit(tiny_config(output_dir=str(run), max_steps=4, save_every=2), callbacks=[StopAt(2)])
    with pytest.raises(InputError, match=r"holds a run trained with other settings: distributed accelerate -> fsdp2;"):
        fit(tiny_config(output_dir=str(run), max_steps=4, save_every=2, distributed="fsdp2"))
    for recorded in (run / "checkpoints" / "step-2" / "config.yaml", run / "config.yaml"):  # as an older isdaa's
        recorded.unlink()
    with pytest.raises(InputError, match=r"option resume: checkpoint .*step-2 cannot be loaded \(.*no sharded state"):
        fit(tiny_config(output_dir=str(run), max_steps=4, save_every=2, distributed="fsdp2"))


@pytest.mark.parametrize("options, says", [
    (["--mixed_precision", "fp16"], "option mixed_precision: not supported with distributed: fsdp2"),
    (["--monitor.every", "2", "--monitor.prompts", "PAIRS"],
     "option monitor.every: not supported with distributed: fsdp2"),
    (["--distributed", "fsdp"], "distributed"),
])
def test_fsdp2_config_errors_are_one_line_exit_2(tiny_config, tmp_path, capsys, options, says):
    config = tiny_config()
    argv = ["train", "--output_dir", str(tmp_path / "run"), "--model.init", str(config.model.init),
            "--model.tokenizer", config.model.tokenizer, "--data.train_file", config.data.train_file,
            "--progress", "false", "--distributed", "fsdp2",
            *(config.data.train_file if o == "PAIRS" else o for o in options)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", [DistributedType.FSDP, DistributedType.DEEPSPEED])
def test_fsdp2_under_an_accelerate_fsdp_or_deepspeed_launch_is_refused(tiny_config, tmp_path, monkeypatch, kind):
    """Before anything is written (the variable `accelerate launch` sets in its workers), and again by the plan."""
    accelerator = SimpleNamespace(distributed_type=kind)
    says = f"option distributed: fsdp2 shards the model itself, but Accelerate was launched with {kind.value.lower()}"
    with pytest.raises(InputError, match=says):
        make_plan(accelerator, tiny_config(distributed="fsdp2"))
    monkeypatch.setenv(f"ACCELERATE_USE_{kind.value}", "true")
    with pytest.raises(InputError, match=says):
        fit(tiny_config(distributed="fsdp2", output_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_a_model_without_decoder_layers_is_refused():
    with pytest.raises(InputError, match="option distributed: fsdp2 shards each decoder layer, but Linear"):
        sharding.decoder_layers(torch.nn.Linear(2, 2))


def test_the_trainer_builds_its_accelerator_without_autocast_under_fsdp2(tiny_config, monkeypatch):
    """bf16 under fsdp2 is FSDP2's MixedPrecisionPolicy (bf16 compute, fp32 reduction), not Accelerate's autocast."""
    policy = sharding.precision_policy("bf16")
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert sharding.precision_policy("no").param_dtype is None
    seen = {}
    monkeypatch.setattr(Trainer, "setup", lambda self: seen.update(precision=self.acc.mixed_precision,
                                                                    plan=type(self.plan).__name__))
    monkeypatch.setattr(Trainer, "_train_and_finish", lambda self: self.plan.close())
    fit(tiny_config(distributed="fsdp2", mixed_precision="bf16"))
    assert seen == {"precision": "no", "plan": "ShardedPlan"}
