"""Numerics under reduced precision and the CLI side of non-finite steps.

`test_trainer.py` already covers, in-process, that non-finite steps are skipped and counted in the log
and that K consecutive ones stop the run with a checkpoint. Here:

- bf16 (accelerate's CPU autocast, `mixed_precision: bf16`) and bf16 weights (`model.dtype: bfloat16`):
  the sequence log-probs the objective sees and the importance weights are fp32, the metrics finite;
  under mixed precision the trained weights themselves stay fp32.
- through the CLI, a run that keeps producing non-finite steps ends with exit code 1, one `error:` line
  saying why and where the checkpoint is, and that checkpoint is complete and resumable.
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

import isdaa
import isdaa.training.trainer as trainer_mod
from isdaa.objectives import Objective
from isdaa.training import checkpoint as ckpt
from isdaa.runtime import read_metrics


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state; a different mixed_precision needs it reset (and back)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


@pytest.fixture
def objective_spy(monkeypatch):
    seen = []
    real = Objective.__call__

    def spy(self, policy, reference=None, *args, **kw):
        out = real(self, policy, reference, *args, **kw)
        seen.append({
            "policy_logps": (policy.chosen.dtype, policy.rejected.dtype),
            "ref_logps": (reference.chosen.dtype, reference.rejected.dtype),
            "weights": out.weights.dtype, "loss": out.loss.dtype, "finite": bool(torch.isfinite(out.loss)),
        })
        return out

    monkeypatch.setattr(Objective, "__call__", spy)
    return seen


def _check_fp32(seen):
    assert seen
    for s in seen:
        assert s["policy_logps"] == (torch.float32, torch.float32)
        assert s["ref_logps"] == (torch.float32, torch.float32)
        assert s["weights"] == torch.float32 and s["loss"] == torch.float32
        assert s["finite"]


def _finite_metrics(run_dir):
    rows = [m for m in read_metrics(run_dir) if "loss" in m]
    assert rows
    for m in rows:
        for k in ("loss", "weights/mean", "weights/ess", "logps/chosen", "rewards/margins", "grad_norm"):
            assert isinstance(m[k], float) and math.isfinite(m[k]), (k, m[k])
    return rows


def test_bf16_mixed_precision_keeps_logps_weights_and_params_fp32(tiny_config, tmp_path, objective_spy,
                                                                 fresh_accelerate_state):
    cfg = tiny_config(max_steps=3, mixed_precision="bf16", output_dir=str(tmp_path / "bf16"),
                      **{"objective.weighting": "is"})
    linear_out = set()

    class Probe:  # proves the forward really ran under bf16 autocast
        def on_train_begin(self, model, tokenizer):
            proj = model.model.layers[0].self_attn.q_proj
            proj.register_forward_hook(lambda m, a, out: linear_out.add(out.dtype))

    result = isdaa.train(cfg, callbacks=[Probe()])
    assert linear_out == {torch.bfloat16}
    assert result.skipped_steps == 0
    _check_fp32(objective_spy)
    _finite_metrics(cfg.output_dir)
    weights = load_file(str(result.final_dir / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}  # autocast computes in bf16, stores fp32


def test_bf16_weights_keep_logps_and_importance_weights_fp32(tiny_config, tmp_path, objective_spy):
    cfg = tiny_config(max_steps=3, output_dir=str(tmp_path / "bf16w"),
                      **{"model.dtype": "bfloat16", "objective.weighting": "is", "optim.lr": 1e-2})
    result = isdaa.train(cfg)
    assert result.skipped_steps == 0
    _check_fp32(objective_spy)
    _finite_metrics(cfg.output_dir)
    weights = load_file(str(result.final_dir / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}  # what model.dtype asked for


def test_non_finite_run_stops_through_cli_with_a_resumable_checkpoint(tokenizer_dir, pairs_file, tmp_path,
                                                                        monkeypatch, capsys):
    import json

    from conftest import TINY_INIT, WORDS
    from isdaa.cli import main

    real = trainer_mod.batch_logps

    def poisoned(model, batch, **kw):  # a diverged policy: every training forward gives inf log-probs
        out = real(model, batch, **kw)
        if model.training:
            out = {**out, "chosen_logps": out["chosen_logps"] * float("inf")}
        return out

    monkeypatch.setattr(trainer_mod, "batch_logps", poisoned)
    run = tmp_path / "run"
    argv = [
        "train", "--output_dir", str(run), "--model.init", json.dumps(dict(TINY_INIT, vocab_size=len(WORDS) + 8)),
        "--model.tokenizer", str(tokenizer_dir), "--data.train_file", str(pairs_file), "--max_steps", "8",
        "--max_bad_steps", "3", "--data.max_length", "32", "--data.max_prompt_length", "16",
        "--progress", "false", "--num_threads", "1", "--weighting", "is",
    ]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1
    # torch may warn once that the scheduler stepped while the optimizer skipped; the error is one line
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n") and "Traceback" not in err
    assert errors[0].startswith("error: stopped at step 3: 3 consecutive steps with a non-finite loss or gradient")
    stop = run / "checkpoints" / "step-3"
    assert str(stop) in errors[0] and ckpt.is_complete(stop) and ckpt.read_state(stop)["skipped_steps"] == 3
    assert [m["skipped_steps"] for m in read_metrics(run) if "loss" in m] == [1, 2, 3]

    monkeypatch.setattr(trainer_mod, "batch_logps", real)  # the cause fixed: the same command resumes
    rc = main(argv)  # the same command
    out = capsys.readouterr().out
    assert rc == 0
    assert f"resuming from {stop} (step 3)" in out and "trained 8 steps (3 skipped)" in out
