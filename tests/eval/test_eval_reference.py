"""`isdaa eval`'s reference: why kl is null without one, `--reference base` (the policy's own base model, read from
its run or its LoRA adapter), the sampling settings beside the run's monitor's, and no "Loading weights" bars
under `--progress false`."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import make_pairs, save_tiny_model, write_jsonl
from transformers.utils import logging as hf_logging

import isdaa
from isdaa.cli import main
from isdaa.config import EvalConfig
from isdaa.errors import InputError
from isdaa.eval import evaluate
from isdaa.eval.evaluate import NO_REFERENCE_NOTE
from isdaa.runtime import read_metrics

STEPS = 4
MONITOR = {"monitor.every": STEPS, "monitor.max_prompts": 6, "monitor.n_samples": 3, "monitor.max_new_tokens": 8,
           "monitor.seed": 5}
MATCHING = {"n_samples": 3, "max_new_tokens": 8, "seed": 5, "max_prompts": 6, "max_prompt_length": 16}


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("held-out") / "eval.jsonl", make_pairs(8, seed=1))


@pytest.fixture
def init_run(tiny_config, eval_file, tmp_path):
    """A monitored run of the tiny model built from model.init (no reference directory anywhere)."""
    cfg = tiny_config(**{"output_dir": str(tmp_path / "run"), "max_steps": STEPS, "data.eval_file": str(eval_file),
                         "optim.lr": 3e-3, **MONITOR})
    return cfg, isdaa.train(cfg)


def _config(policy, prompts, **extra):
    return EvalConfig(policy=str(policy), prompts=str(prompts), progress=False, num_threads=1, batch_size=64,
                      **extra)


def test_without_reference_kl_is_null_and_eval_says_why(init_run, eval_file, capsys):
    _, result = init_run
    capsys.readouterr()
    assert main(["eval", "--policy", str(result.final_dir), "--prompts", str(eval_file), "--max_prompts", "2",
                 "--progress", "false", "--num_threads", "1"]) == 0
    err = capsys.readouterr().err
    assert ("isdaa: kl is null: no reference model to measure it against; pass --reference <model directory>, "
            "or --reference base for the policy's own base model") in err
    res = evaluate(_config(result.final_dir, eval_file, max_prompts=2))
    assert res["kl_k3"] is None and res["kl_note"] == NO_REFERENCE_NOTE and res["reference_model"] is None


def test_reference_base_rebuilds_a_model_init_run_and_matches_its_monitor(init_run, eval_file):
    """`--reference base` for a model.init run is the trainer's own reference (init + seed): with the monitor's
    sampling settings eval's KL of final/ is the monitor's at the last step."""
    cfg, result = init_run
    res = evaluate(_config(result.final_dir, eval_file, reference="base", **MATCHING))
    last = [m for m in read_metrics(result.output_dir) if "monitor/kl_k3" in m][-1]
    assert last["step"] == STEPS and last["monitor/kl_k3"] > 0
    assert res["kl_k3"] == pytest.approx(last["monitor/kl_k3"], rel=1e-5, abs=1e-6)
    assert res["kl_k1"] == pytest.approx(last["monitor/kl_k1"], rel=1e-5, abs=1e-6)
    assert res["reference_model"] == f"model.init of {result.output_dir.resolve() / 'config.yaml'} rebuilt with seed 0"
    assert res["kl_note"] is None and res["sampling_note"] is None
    assert res["monitor_sampling"] == {**MATCHING, "temperature": 1.0, "top_p": 1.0, "prompts": str(eval_file)}


def test_eval_defaults_beside_the_monitors(init_run, eval_file, capsys):
    _, result = init_run
    capsys.readouterr()
    assert main(["eval", "--policy", str(result.final_dir), "--prompts", str(eval_file), "--reference", "base",
                 "--progress", "false", "--num_threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert (f"isdaa: sampled with n_samples 2, max_new_tokens 64, temperature 1, top_p 1, prompts {eval_file}, "
            "max_prompts 256, seed 0, max_prompt_length 512 (the run's monitor: n_samples 3, max_new_tokens 8, "
            f"temperature 1, top_p 1, prompts {eval_file}, max_prompts 6, seed 5, max_prompt_length 16)") in out
    assert "isdaa: kl against the reference model.init of " in out
    assert "isdaa: these samples are not drawn as the run's monitor draws them (" in err
    assert ("kl_k3 and the run's monitor/kl_k3 do not compare; to match, pass --n_samples 3 --max_new_tokens 8 "
            "--max_prompts 6 --seed 5 --max_prompt_length 16") in err


def test_reference_base_of_a_model_directory_run_and_of_a_lora_adapter(tiny_config, eval_file, tmp_path):
    base = save_tiny_model(tmp_path / "base")
    cfg = tiny_config(max_steps=2, **{"model.init": None, "model.name_or_path": str(base), "model.tokenizer": None})
    result = isdaa.train(cfg)
    res = evaluate(_config(result.final_dir, eval_file, reference="base", max_prompts=2))
    assert res["reference_model"] == f"{base} (model.name_or_path in {result.output_dir.resolve() / 'config.yaml'})"
    assert res["kl_k3"] is not None
    # final/ copied away from its run: the base named by a LoRA adapter saved with it
    moved = shutil.copytree(result.final_dir, tmp_path / "elsewhere" / "policy")
    (moved / "adapter").mkdir()
    (moved / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    res = evaluate(_config(moved, eval_file, reference="base", max_prompts=2))
    assert res["reference_model"].startswith(f"{base} (the LoRA adapter's base_model_name_or_path in {moved})")


def test_reference_base_refused_when_the_policy_records_none(tmp_path, eval_file):
    policy = save_tiny_model(tmp_path / "plain")
    with pytest.raises(InputError) as err:
        evaluate(_config(policy, eval_file, reference="base"))
    assert str(err.value) == (
        f"reference: 'base' needs the policy's base model, and {policy} records none (expected a run's final/ or "
        "best/ with the run's config.yaml one level up, or a LoRA adapter); pass --reference <model directory>")
    (policy / "adapter").mkdir()
    (policy / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "gone/base"}))
    with pytest.raises(InputError, match=r"reference: 'base' is gone/base \(the LoRA adapter's .*\), which does not "
                                         r"exist from here"):
        evaluate(_config(policy, eval_file, reference="base"))


def test_no_loading_bars_under_progress_false(tmp_path, eval_file, capfd, bars_on):
    policy = save_tiny_model(tmp_path / "policy")
    capfd.readouterr()
    evaluate(_config(policy, eval_file, reference=str(policy), max_prompts=1, n_samples=1, max_new_tokens=2))
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # for the eval only
