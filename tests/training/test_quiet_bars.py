"""Third-party progress bars (transformers' "Loading weights", "Writing model shards"): none under
`progress: false`, none cutting into the training bar, and no setting changed for the rest of the process."""

from __future__ import annotations

from conftest import save_tiny_model
from transformers.utils import logging as hf_logging

from isdaa.training.trainer import fit


class _SaveMidRun:
    """Writes the policy as `snapshot/` after step 1, inside the training bar's lifetime."""

    def on_step_end(self, step, run):
        if step == 1:
            run.save_model("snapshot")


def _run(tiny_config, tmp_path, capfd, progress: bool) -> str:
    """What a 3-step run from a model directory writes on stderr."""
    model = save_tiny_model(tmp_path / "model")
    cfg = tiny_config(max_steps=3, progress=progress, **{"model.init": None, "model.name_or_path": str(model),
                                                         "model.tokenizer": None})
    capfd.readouterr()
    fit(cfg, callbacks=[_SaveMidRun()])
    return capfd.readouterr().err.replace("\r", "\n")


def test_no_third_party_bars_under_progress_false(tiny_config, tmp_path, capfd, bars_on):
    err = _run(tiny_config, tmp_path, capfd, progress=False)
    assert "Loading weights" not in err and "Writing model shards" not in err and "train:" not in err
    assert hf_logging.is_progress_bar_enabled()  # scoped to the run: a later load in this process shows its bar


def test_no_third_party_bar_inside_the_training_bar(tiny_config, tmp_path, capfd, bars_on):
    err = _run(tiny_config, tmp_path, capfd, progress=True)
    first, last = err.index("train:"), err.rindex("train:")
    assert "Loading weights" in err[:first]  # before the bar: shown
    assert "Writing model shards" not in err[first:last]  # the mid-run save's: not
    assert "Writing model shards" in err[last:]  # final/, after the bar


def test_pairs_and_logps_load_their_model_quietly_under_progress_false(tmp_path, capfd, bars_on):
    from conftest import make_pairs, save_tiny_model, write_jsonl
    from isdaa.cli import main

    model_dir = save_tiny_model(tmp_path / "model")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("w1 w2\nw3\n")
    capfd.readouterr()
    assert main(["pairs", "--model", str(model_dir), "--prompts", str(prompts), "--scorer", "length", "--out",
                 str(tmp_path / "pairs.jsonl"), "--max-new-tokens", "3", "--progress", "false",
                 "--num-threads", "1"]) == 0
    data = write_jsonl(tmp_path / "data.jsonl", make_pairs(4, seed=1))
    assert main(["logps", "--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "out.jsonl"),
                 "--as", "behavior", "--progress", "false", "--max_length", "32", "--max_prompt_length", "16"]) == 0
    err = capfd.readouterr().err
    assert "Loading weights" not in err, err
