"""DeepSpeed ZeRO-2 / ZeRO-3 through Accelerate (`distributed: accelerate`). DeepSpeed is not installed here (and
needs GPUs), so what runs is everything up to it: `accelerate launch`'s own parsing of the shipped launch configs
(examples/accelerate/), the environment it hands the workers, Accelerate's real `DeepSpeedPlugin` built from that
environment, the values isdaa writes into its DeepSpeed config, and the trainer plan's DeepSpeed branch (loss
scaling, accumulation, clipping) on an accelerator stand-in that reports `DistributedType.DEEPSPEED`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType
from accelerate.utils.launch import prepare_deepspeed_cmd_env

from isdaa.errors import InputError
from isdaa.training.parallel import AcceleratePlan, fill_deepspeed_config, make_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "accelerate"


def _launch_args(name: str):
    """`accelerate launch --config_file examples/accelerate/<name>.yaml -m isdaa.cli train`, as accelerate parses it."""
    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(EXAMPLES / f"{name}.yaml"), "-m", "isdaa.cli", "train"])
    return _validate_launch_command(args)


@pytest.mark.parametrize("name, kind", [("ddp", "multi_gpu"), ("fsdp2", "multi_gpu"),
                                        ("deepspeed-zero2", "use_deepspeed"), ("deepspeed-zero3", "use_deepspeed")])
def test_launch_configs_parse_as_accelerate_reads_them(name, kind):
    args, defaults, _ = _launch_args(name)
    assert getattr(args, kind) and args.num_processes == 2
    assert not args.use_fsdp  # fsdp2.yaml: isdaa shards itself, Accelerate's FSDP plugin stays off


def _plugin(name: str, monkeypatch) -> DeepSpeedPlugin:
    """Accelerate's DeepSpeedPlugin as a worker builds it from the environment `accelerate launch` prepares."""
    args, defaults, _ = _launch_args(name)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command does
    _, env = prepare_deepspeed_cmd_env(args)
    monkeypatch.chdir(EXAMPLES.parents[1])  # the config names its JSON file relative to the repository root
    for key, value in env.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    return DeepSpeedPlugin()


@pytest.mark.parametrize("stage", [2, 3])
def test_isdaa_fills_the_deepspeed_config_from_its_options(stage, tiny_config, monkeypatch):
    plugin = _plugin(f"deepspeed-zero{stage}", monkeypatch)
    assert plugin.zero_stage == stage
    config = tiny_config(batch_size=4, grad_accum=3, **{"optim.max_grad_norm": 0.5})
    ds = fill_deepspeed_config(plugin.deepspeed_config, config, num_processes=2)
    assert {k: ds[k] for k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
                               "gradient_clipping")} == {
        "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 3, "train_batch_size": 24,
        "gradient_clipping": 0.5}
    if stage == 3:  # final/ needs whole weights: ZeRO-3 gathers them when it saves
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_an_explicit_deepspeed_value_that_disagrees_is_one_error_line(tiny_config):
    config = tiny_config(batch_size=4)
    kept = fill_deepspeed_config({"train_micro_batch_size_per_gpu": 4}, config, num_processes=1)
    assert kept["train_micro_batch_size_per_gpu"] == 4
    with pytest.raises(InputError, match=r"^option batch_size: the DeepSpeed config sets "
                                         r"train_micro_batch_size_per_gpu = 2, isdaa's options give 4; set it to"):
        fill_deepspeed_config({"train_micro_batch_size_per_gpu": 2}, config, num_processes=1)


class _Accelerator(SimpleNamespace):
    """What the plan reads of an Accelerator launched with DeepSpeed (DeepSpeed itself cannot run here)."""

    def no_sync(self, model):
        self.synced_off = True
        return contextlib.nullcontext()

    def clip_grad_norm_(self, parameters, max_norm):
        return self.engine_norm


def test_the_plan_leaves_loss_scaling_accumulation_and_clipping_to_deepspeed(tiny_config, monkeypatch):
    plugin = _plugin("deepspeed-zero2", monkeypatch)
    acc = _Accelerator(distributed_type=DistributedType.DEEPSPEED, num_processes=2, gradient_accumulation_steps=1,
                       state=SimpleNamespace(deepspeed_plugin=plugin), synced_off=False, engine_norm=None)
    plan = make_plan(acc, tiny_config(batch_size=4, grad_accum=2))
    assert isinstance(plan, AcceleratePlan) and plan.deepspeed
    assert plugin.deepspeed_config["train_batch_size"] == 16
    assert acc.gradient_accumulation_steps == 2  # Accelerate's count agrees with the engine's
    assert plan.loss_divisor(2) == 1  # the engine divides by its gradient_accumulation_steps itself
    with plan.no_sync(torch.nn.Linear(1, 1), last=False):  # ZeRO-2/3 refuse no_sync: the engine accumulates
        pass
    assert not acc.synced_off
    model = torch.nn.Linear(1, 1)
    assert float(plan.clip_grad_norm(model, 1.0)) == 0.0  # no norm before the engine's first step
    acc.engine_norm = 3.5
    assert float(plan.clip_grad_norm(model, 1.0)) == 3.5


def test_without_deepspeed_the_plan_divides_and_skips_the_sync(tiny_config):
    acc = _Accelerator(distributed_type=DistributedType.MULTI_CPU, num_processes=2, synced_off=False)
    plan = make_plan(acc, tiny_config(grad_accum=2))
    assert not plan.deepspeed and plan.loss_divisor(2) == 2
    with plan.no_sync(torch.nn.Linear(1, 1), last=False):
        pass
    assert acc.synced_off
