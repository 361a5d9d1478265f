"""Running again in a run directory: a resume with settings that define another trajectory is refused (exit 2,
the options named, nothing written); options that do not (cadences, retention, the monitor, reporting, how the
same computation runs) and a longer run are allowed; a length below the step reached is refused; a finished run
run again is a no-op (exit 0, one line); `--overwrite` starts over and deletes only what isdaa wrote."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_INIT, WORDS, make_pairs, write_jsonl
from isdaa.cli import main
from isdaa.errors import InputError
from isdaa.runtime import read_metrics
from isdaa.training import checkpoint as ckpt
from isdaa.training.setup import remove_run_outputs
from isdaa.training.trainer import fit


class _Crash:
    """Raise in the log of step `at` (after the checkpoints before it were written), as a crash would."""

    def __init__(self, at):
        self.at = at

    def on_log(self, step, metrics):
        if step == self.at:
            raise RuntimeError("simulated crash")


def _interrupted(tiny_config, run: Path, *, steps=4, crash_at=3, **overrides):
    """A run of `steps` (checkpoint every 2 steps) that crashed at step `crash_at`; its config."""
    cfg = tiny_config(output_dir=str(run), max_steps=steps, save_every=2, **overrides)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(cfg, callbacks=[_Crash(crash_at)])
    assert ckpt.latest_checkpoint(run) is not None and not (run / "final").exists()
    return cfg


def _snapshot(run: Path) -> dict:
    """Every file under `run`: its bytes' hash and its modification time."""
    return {str(p.relative_to(run)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(run.rglob("*")) if p.is_file()}


def _weights(run: Path) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


# ---- what defines the trajectory: refused, nothing written ---------------------------------------------------

TRAJECTORY = {
    "objective": ({"objective.weighting": "is"}, "objective.weighting none -> is"),
    "optimizer": ({"optim.lr": 5e-3}, "optim.lr 0.001 -> 0.005"),
    "schedule": ({"optim.scheduler": "cosine", "optim.warmup_ratio": 0.5},
                 "optim.scheduler constant -> cosine; optim.warmup_ratio 0.0 -> 0.5"),
    "data": ({"data.max_length": 24}, "data.max_length 32 -> 24"),
    "model": ({"model.init": dict(TINY_INIT, vocab_size=len(WORDS) + 8, hidden_size=16)},
              "model.init.hidden_size 32 -> 16"),
    "seed": ({"seed": 1}, "seed 0 -> 1"),
    "batch": ({"batch_size": 4, "grad_accum": 2}, "batch_size 8 -> 4; grad_accum 1 -> 2"),
    "lora": ({"lora.enabled": True}, "lora.enabled false -> true"),
}


@pytest.mark.parametrize("category", TRAJECTORY)
def test_resume_with_another_trajectory_is_refused(category, tiny_config, tmp_path):
    run = tmp_path / "run"
    _interrupted(tiny_config, run)
    before = _snapshot(run)
    change, named = TRAJECTORY[category]
    with pytest.raises(InputError) as refused:
        fit(tiny_config(output_dir=str(run), max_steps=4, save_every=2, **change))
    message = str(refused.value)
    assert message == (
        f"option output_dir: {run} holds a run trained with other settings: {named}; resuming it would mix two "
        f"runs: continue it with its own settings ({run}/checkpoints/step-2/config.yaml), pass --overwrite to "
        "start over there, or choose another output_dir")
    assert _snapshot(run) == before  # config.yaml, metrics.jsonl, the checkpoint: untouched


def test_edited_training_data_is_refused(tiny_config, tmp_path):
    """Same path, other bytes: the checkpoint's SHA-256 of the data tells."""
    run, data = tmp_path / "run", write_jsonl(tmp_path / "pairs.jsonl", make_pairs(64, seed=0))
    _interrupted(tiny_config, run, **{"data.train_file": str(data)})
    write_jsonl(data, make_pairs(64, seed=1))
    with pytest.raises(InputError, match=r"holds a run trained with other settings: the bytes of "
                                         r"data.train_file \(SHA-256 [0-9a-f]{12}… -> [0-9a-f]{12}…\); resuming"):
        fit(tiny_config(output_dir=str(run), max_steps=4, save_every=2, **{"data.train_file": str(data)}))


def test_moved_training_data_is_the_same_data(tiny_config, pairs_file, tmp_path, capsys):
    """Another path to the same bytes (a moved file, an absolute path) continues the run."""
    run, moved = tmp_path / "run", tmp_path / "moved.jsonl"
    _interrupted(tiny_config, run)
    moved.write_bytes(Path(pairs_file).read_bytes())
    result = fit(tiny_config(output_dir=str(run), max_steps=4, save_every=2, **{"data.train_file": str(moved)}))
    assert result.steps == 4
    assert f"resuming from {run}/checkpoints/step-2" in capsys.readouterr().out


def test_other_number_of_processes_is_refused(tiny_config, tmp_path):
    """The global batch (and an FSDP2 checkpoint's shards) depend on it: recorded by each checkpoint."""
    from isdaa.training.resume import RunShape, plan_start
    from isdaa.training.model_card import data_sha256

    run = tmp_path / "run"
    cfg = _interrupted(tiny_config, run, batch_size=4)
    with pytest.raises(InputError, match=r"other settings: processes 1 -> 2; resuming it would mix two runs"):
        plan_start(cfg, run, RunShape(64, 2, data_sha256(cfg.data.train_file)))


def test_checkpoint_without_settings_resumes_with_a_warning(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    _interrupted(tiny_config, run)
    path = run / "checkpoints" / "step-2"
    for recorded in (path / "config.yaml", run / "config.yaml"):  # as an older isdaa's checkpoint
        recorded.unlink()
    capsys.readouterr()
    fit(tiny_config(output_dir=str(run), max_steps=4, save_every=2))
    assert capsys.readouterr().out.splitlines()[:2] == [
        f"isdaa: warning: {path} records no settings (written by an older isdaa); they could not be compared with "
        "this run's", f"isdaa: resuming from {path} (step 2)"]


def test_checkpoint_of_an_older_isdaa_is_checked_against_the_run_config(tiny_config, tmp_path):
    """A checkpoint without its own config.yaml (older isdaa): the run directory's config.yaml is compared."""
    run = tmp_path / "run"
    _interrupted(tiny_config, run)
    (run / "checkpoints" / "step-2" / "config.yaml").unlink()
    with pytest.raises(InputError, match=rf"optim.lr 0.001 -> 0.005; .*its own settings \({run}/config.yaml\)"):
        fit(tiny_config(output_dir=str(run), max_steps=4, save_every=2, **{"optim.lr": 5e-3}))


def test_explicit_checkpoint_of_another_run_is_checked(tiny_config, tmp_path):
    other = tmp_path / "other"
    _interrupted(tiny_config, other)
    path = other / "checkpoints" / "step-2"
    with pytest.raises(InputError) as refused:
        fit(tiny_config(output_dir=str(tmp_path / "run"), max_steps=4, resume=str(path), seed=5))
    assert str(refused.value) == (
        f"option resume: checkpoint {path} was trained with other settings: seed 0 -> 5; resuming from it would "
        f"mix two runs: continue it with its own settings ({path}/config.yaml), or leave resume out to start a new run")
    assert not (tmp_path / "run").exists()


def test_cli_refusal_is_one_line_exit_2(tokenizer_dir, pairs_file, tmp_path, capsys):
    """The issue's case: a finished IS-DPO run re-run with `--weighting none --optim.lr 5e-3`."""
    run = tmp_path / "run"
    args = ["train", "--output_dir", str(run), "--model.init", json.dumps(dict(TINY_INIT, vocab_size=len(WORDS) + 8)),
            "--model.tokenizer", str(tokenizer_dir), "--data.train_file", str(pairs_file), "--data.max_length", "32",
            "--data.max_prompt_length", "16", "--batch_size", "8", "--max_steps", "4", "--save_every", "2",
            "--weighting", "is", "--optim.lr", "1e-3", "--progress", "false", "--num_threads", "1", "--plots", "false"]
    assert main(args) == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert main(args + ["--weighting", "none", "--optim.lr", "5e-3"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        f"error: option output_dir: {run} holds a run trained with other settings: objective.weighting is -> none; "
        f"optim.lr 0.001 -> 0.005; resuming it would mix two runs: continue it with its own settings "
        f"({run}/checkpoints/step-2/config.yaml), pass --overwrite to start over there, or choose another output_dir\n")
    assert _snapshot(run) == before  # config.yaml and the model card (final/README.md) still those of the run


# ---- what does not define it: allowed, and the run ends as an uninterrupted one with those settings --------

ALLOWED = {
    "length": {"max_steps": 6},
    "cadences": {"log_every": 2, "eval_every": 1, "save_every": 1},
    "retention": {"keep_last": 1},
    "monitor": {"monitor.stop_at_kl": 50.0, "monitor.ess_warn": 0.2, "monitor.n_samples": 2},
    "reporting": {"progress": True, "plots": True, "max_bad_steps": 3, "data.eval_file": "{pairs_file}"},
    # the same computation, run otherwise: equal up to float rounding
    "computation": {"model.gradient_checkpointing": True, "precompute_ref": False, "eval_batch_size": 4,
                    "num_threads": 2},
}


@pytest.mark.parametrize("category", ALLOWED)
def test_resume_with_options_that_keep_the_trajectory(category, tiny_config, pairs_file, tmp_path, capsys):
    run = tmp_path / "run"
    _interrupted(tiny_config, run)
    capsys.readouterr()
    changed = {"max_steps": 4, "save_every": 2, **ALLOWED[category]}
    changed = {k: v.format(pairs_file=pairs_file) if isinstance(v, str) else v for k, v in changed.items()}
    result = fit(tiny_config(output_dir=str(run), **changed))
    assert f"isdaa: resuming from {run}/checkpoints/step-2 (step 2)" in capsys.readouterr().out
    straight = tmp_path / "straight"
    fit(tiny_config(output_dir=str(straight), **changed))
    assert result.steps == changed["max_steps"]
    # the constant schedule of tiny_config: even the longer run equals an uninterrupted one of its length
    _assert_same_weights(_weights(run), _weights(straight), atol=1e-6 if category == "computation" else 0.0)
    logged = [m["step"] for m in read_metrics(run) if "loss" in m]
    assert logged == sorted(set(logged)) and logged[-1] == changed["max_steps"]  # each step once at most
    assert (run / "config.yaml").read_text().replace(str(run), "") == (straight / "config.yaml").read_text().replace(
        str(straight), "")  # config.yaml: the settings the run now goes on with


def test_length_below_the_checkpoint_is_refused(tiny_config, tmp_path):
    run = tmp_path / "run"
    _interrupted(tiny_config, run, steps=6, crash_at=5)
    before = _snapshot(run)
    with pytest.raises(InputError) as refused:
        fit(tiny_config(output_dir=str(run), max_steps=2, save_every=2))
    assert str(refused.value) == (
        f"option max_steps: 2 ends before step 4, where {run}'s newest checkpoint ({run}/checkpoints/step-4) is; ask "
        "for 4 steps or more to continue it, pass --overwrite to start over, or choose another output_dir")
    with pytest.raises(InputError, match=r"^option epochs: 0.25 \(2 steps\) ends before step 4, "):
        fit(tiny_config(output_dir=str(run), max_steps=0, epochs=0.25, save_every=2))  # 8 steps per epoch
    assert _snapshot(run) == before


# ---- a finished run ------------------------------------------------------------------------------------------


@pytest.fixture
def finished(tokenizer_dir, pairs_file, tmp_path, capsys):
    """(run directory, its CLI arguments): a 4-step run, checkpoint every 2 steps, finished."""
    run = tmp_path / "run"
    args = ["train", "--output_dir", str(run), "--model.init", json.dumps(dict(TINY_INIT, vocab_size=len(WORDS) + 8)),
            "--model.tokenizer", str(tokenizer_dir), "--data.train_file", str(pairs_file), "--data.max_length", "32",
            "--data.max_prompt_length", "16", "--batch_size", "8", "--max_steps", "4", "--save_every", "2",
            "--optim.lr", "1e-3", "--optim.scheduler", "constant", "--progress", "false", "--num_threads", "1",
            "--plots", "false"]
    assert main(args) == 0
    capsys.readouterr()
    return run, args


@pytest.mark.parametrize("extra", [[], ["--log_every", "2", "--keep_last", "1"]], ids=["same", "cadences"])
def test_finished_run_again_is_a_no_op(extra, finished, capsys):
    run, args = finished
    before = _snapshot(run)
    assert main(args + extra) == 0
    out, err = capsys.readouterr()
    assert err == "" and out == (
        f"isdaa: {run} is finished (step 4 of 4; final model in {run}/final); nothing to do: raise max_steps or "
        "epochs to train further, or pass --overwrite to start over\n")
    assert _snapshot(run) == before  # final/ (bytes and times), the checkpoints, config.yaml, metrics.jsonl


def test_finished_run_below_its_end_is_refused(finished, capsys):
    run, args = finished
    before = _snapshot(run)
    assert main(args + ["--max_steps", "2"]) == 2
    assert capsys.readouterr().err == (
        f"error: option max_steps: 2 ends before step 4, where {run} ended (final model in {run}/final); ask for 4 "
        "steps or more to continue it, pass --overwrite to start over, or choose another output_dir\n")
    assert _snapshot(run) == before


def test_finished_run_extended_continues_from_its_newest_checkpoint(finished, tiny_config, tmp_path, capsys):
    run, args = finished
    assert main(args + ["--max_steps", "6"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [
        f"isdaa: {run} ended at step 4; max_steps 6 continues it from its newest checkpoint, step 2 (steps 3-4 are "
        "trained again); final/ is kept until the new end replaces it",
        f"isdaa: resuming from {run}/checkpoints/step-2 (step 2)"]
    assert [m["step"] for m in read_metrics(run) if "loss" in m] == list(range(1, 7))
    assert json.loads((run / "final" / "run_state.json").read_text())["step"] == 6
    straight = tmp_path / "straight"
    fit(tiny_config(output_dir=str(straight), max_steps=6))
    _assert_same_weights(_weights(run), _weights(straight))  # constant lr: as if it had been 6 steps from the start


def test_finished_run_without_checkpoints_cannot_be_extended(tiny_config, tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(output_dir=str(run), max_steps=2))  # save_every 0: no checkpoint
    before = _snapshot(run)
    assert fit(tiny_config(output_dir=str(run), max_steps=2)).already_finished
    with pytest.raises(InputError) as refused:
        fit(tiny_config(output_dir=str(run), max_steps=3))
    assert str(refused.value) == (
        f"option max_steps: 3 continues {run} past step 2, where it ended, but the run kept no checkpoint to "
        "continue from (save_every 0 keeps none); pass --overwrite to train again from the start, or "
        "choose another output_dir")
    assert _snapshot(run) == before


# ---- --overwrite ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["interrupted", "finished"])
def test_overwrite_starts_over(state, tiny_config, tmp_path, capsys):
    """With checkpoints to resume from, `--overwrite` still starts over: the new run equals a run in an empty
    directory, nothing of the old run remains, and files isdaa did not write are kept."""
    run = tmp_path / "run"
    if state == "interrupted":
        _interrupted(tiny_config, run, steps=6, crash_at=5)
    else:
        fit(tiny_config(output_dir=str(run), max_steps=6, save_every=2))
    (run / "notes.txt").write_text("mine")
    (run / "checkpoints" / "mine.txt").write_text("mine too")
    capsys.readouterr()
    new = {"max_steps": 3, "save_every": 2, "optim.lr": 5e-3, "seed": 1}
    result = fit(tiny_config(output_dir=str(run), overwrite=True, **new))
    assert "resuming" not in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    fit(tiny_config(output_dir=str(fresh), **new))
    assert result.steps == 3
    _assert_same_weights(_weights(run), _weights(fresh))
    assert [m["step"] for m in read_metrics(run)] == [m["step"] for m in read_metrics(fresh)]  # no old line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["mine.txt", "step-2"]
    assert ckpt.read_state(run / "checkpoints" / "step-2")["step"] == 2
    assert (run / "checkpoints" / "step-2" / "config.yaml").read_text() == (run / "config.yaml").read_text()
    assert "seed: 1\n" in (run / "config.yaml").read_text()
    assert (run / "notes.txt").read_text() == "mine" and (run / "checkpoints" / "mine.txt").read_text() == "mine too"


def test_overwrite_with_a_resume_path_is_refused(tiny_config, tmp_path):
    run = tmp_path / "run"
    _interrupted(tiny_config, run)
    before = _snapshot(run)
    path = run / "checkpoints" / "step-2"
    with pytest.raises(InputError) as refused:
        fit(tiny_config(output_dir=str(run), overwrite=True, resume=str(path)))
    assert str(refused.value) == (f"options overwrite and resume: --overwrite starts a new run, --resume {path} "
                                  "continues one; pass only one of them")
    assert _snapshot(run) == before


def test_remove_run_outputs_deletes_only_what_isdaa_wrote(tmp_path):
    run = tmp_path / "run"
    written = ["final/model.safetensors", "final/run_state.json", "final.tmp/x", "best/model.safetensors",
               "plots/training.png", "summary.md", "metrics.jsonl", "config.yaml",
               "checkpoints/step-2/trainer_state.json", "checkpoints/step-4.tmp-write/model.safetensors",
               "run/events.out.tfevents.1.host", "run/1700000000.1/hparams.yml"]
    kept = ["notes.txt", "checkpoints/mine.txt", "run/mine.csv", "ref-cache/abc.safetensors", ".lock", "data.jsonl"]
    for name in written + kept:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(name)
    remove_run_outputs(run)
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == sorted(kept)
    assert not (run / "run" / "1700000000.1").exists() and not (run / "final").exists()
