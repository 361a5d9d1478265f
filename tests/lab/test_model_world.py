"""The lab's real-model world (`world.kind: model`) with a saved tiny random Llama and cheap scorers: pairs whose
log-probs are the trainer's, a sweep through the same outputs, resume, a label scorer other than the gold one,
and bad configs (one line, exit 2). The real model: tests/lab/test_model_world_slow.py."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import save_tiny_model
from isdaa.cli import main
from isdaa.config import LabConfig, load_config
from isdaa.generation import register_scorer
from isdaa.lab.model_world import EXTRA_COLUMNS, load_model_world
from isdaa.lab.sweep import run_lab

torch.set_num_threads(1)


def word_count(prompts, completions) -> list[float]:
    """A cheap text-only label scorer: whitespace words of the completion."""
    return [float(len(c.split())) for c in completions]


def topic_share(prompts, completions) -> list[float]:
    """A cheap gold scorer in [-1, 1] (so no optional sentiment package is needed): 2·(share of topic words) − 1."""
    return [2 * sum(w.startswith("topic") for w in c.split()) / max(len(c.split()), 1) - 1 for c in completions]


register_scorer("word_count", word_count)
register_scorer("topic_share", topic_share)


@pytest.fixture(scope="module")
def model_world(tmp_path_factory):
    """A saved tiny Llama over the test words, training and held-out prompt files."""
    root = tmp_path_factory.mktemp("model-world")
    save_tiny_model(root / "model", seed=0)
    (root / "train.txt").write_text("".join(f"topic{i % 4} w{i} w{i + 1}\n" for i in range(12)))
    (root / "eval.txt").write_text("".join(f"topic{i % 4} w{i + 12}\n" for i in range(6)))
    return root


def _config(root, out, **overrides) -> LabConfig:
    base = {
        "output_dir": str(out), "progress": False, "workers": 1, "seeds": [0], "betas": [0.1], "eval_samples": 2,
        "world.kind": "model", "world.model": str(root / "model"), "world.prompts": str(root / "train.txt"),
        "world.eval_prompts": str(root / "eval.txt"), "world.gold": "topic_share", "world.label_scorer": "word_count",
        "world.chat": False, "world.max_new_tokens": 6, "world.batch_size": 16, "world.n_eval_prompts": 4,
        "pairs.label_temperature": 0.5,
        "methods": [{"label": "DPO", "loss": "sigmoid"}, {"label": "IS-DPO", "loss": "sigmoid", "weighting": "is"}],
        "regimes": [{"name": "few", "n_pairs": 16, "max_steps": 4, "batch_size": 8, "eval_every": 2, "lr": 1e-3,
                     "lora.target_modules": ["q_proj", "v_proj"]}],
    }
    return load_config(LabConfig, None, {**base, **overrides})


@pytest.fixture(scope="module")
def swept(model_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("model-lab") / "lab"
    return out, run_lab(_config(model_world, out))


def test_pairs_carry_the_trainers_log_probs_and_label_scores(swept, model_world):
    """Behaviour = reference log-probs equal the trainer's own log-probs of the rows (as isdaa.data tokenises them),
    the label columns are the label scorer's (whitespace words) and the gold columns the gold scorer's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from isdaa.data import collate, load_rows, tokenize_rows
    from isdaa.generation import get_scorer
    from isdaa.modeling.logprobs import batch_logps

    out, results = swept
    rows = load_rows(out / "pairs" / "pairs.jsonl", extra_columns=EXTRA_COLUMNS)
    assert len(rows) == 16 and results["pairs"]["0"]["n_pairs"] == 16
    train_prompts = (model_world / "train.txt").read_text().split("\n")
    tok = AutoTokenizer.from_pretrained(model_world / "model")
    model = AutoModelForCausalLM.from_pretrained(model_world / "model").eval()
    examples, dropped = tokenize_rows(rows, tok, max_length=1024, max_prompt_length=512)
    assert dropped == 0
    with torch.no_grad():
        lp = batch_logps(model, collate(examples, tok.pad_token_id))
    torch.testing.assert_close(lp["chosen_logps"].float(), torch.tensor([r["behavior_chosen_logps"] for r in rows]),
                               atol=1e-4, rtol=1e-5)
    gold = get_scorer("topic_share")
    for r in rows:
        assert r["prompt"] in train_prompts and r["chosen"] != r["rejected"]
        assert r["ref_chosen_logps"] == r["behavior_chosen_logps"]
        assert r["score_chosen"] == len(r["chosen"].split()) and r["score_rejected"] == len(r["rejected"].split())
        assert r["gold_chosen"] == pytest.approx(gold([r["prompt"]], [r["chosen"]])[0])


def test_sweep_writes_the_labs_outputs_with_model_evaluations(swept):
    out, results = swept
    assert {p.name for p in out.iterdir()} >= {"results.json", "results.csv", "report.md", "prepared.json",
                                               "eval_prompts.txt", "frontier_few_beta0.1.png"}
    runs = {r["method"]: r for r in results["runs"]}
    assert set(runs) == {"DPO", "IS-DPO"} and all(r["status"] == "ok" for r in runs.values())
    for run in runs.values():
        assert [e["step"] for e in run["evals"]] == [0, 2, 4]
        first = run["evals"][0]
        # step 0: the policy is the reference (LoRA B = 0): generate's log-probs = the teacher-forced reference's
        assert abs(first["kl_k1"]) < 1e-4 and first["kl_k3"] < 1e-6
        for e in run["evals"]:
            assert -1 <= e["gold"] <= 1 and e["gold_se"] >= 0 and 0 <= e["finished"] <= 1
            assert 0 <= e["length"] <= 6 and "proxy" in e and e["eval_seconds"] > 0
        assert all(e["step_seconds"] > 0 for e in run["evals"][1:])
        assert run["evals"][-1]["kl_k3"] > 0
    report = (out / "report.md").read_text()
    assert "## Stage times (measured by this sweep)" in report and "labelled pairs | 16 in" in report
    assert "label scorer `word_count` is a proxy of the gold scorer `topic_share`" in report
    assert "### What DPO's policy looks like" in report
    every = report.split("### Every method at its gold peak and at the end")[1]
    assert "| DPO | peak (step " in every and "| IS-DPO | peak (step " in every and "| | end (step 4) |" in every


def test_a_second_sweep_reuses_pairs_and_runs_and_adds_only_new_ones(swept, model_world):
    out, results = swept
    pairs_before = (out / "pairs" / "pairs.jsonl").read_bytes()
    lines = []
    again = run_lab(_config(model_world, out, seeds=[0, 1], progress=True), progress=lines.append)
    assert "lab: 2 of 4 runs already done (their records are reused)" in lines
    assert (out / "pairs" / "pairs.jsonl").read_bytes() == pairs_before  # one pair set for every seed
    old = {(r["method"], r["seed"]): r for r in results["runs"]}
    new = {(r["method"], r["seed"]): r for r in again["runs"]}
    assert set(new) == {("DPO", 0), ("IS-DPO", 0), ("DPO", 1), ("IS-DPO", 1)}
    assert new[("DPO", 0)]["evals"] == json.loads(json.dumps(old[("DPO", 0)]["evals"]))
    assert new[("DPO", 1)]["evals"][-1]["gold"] != new[("DPO", 0)]["evals"][-1]["gold"] or \
        new[("DPO", 1)]["evals"][-1]["kl_k3"] != new[("DPO", 0)]["evals"][-1]["kl_k3"]


def test_controlled_world_fingerprints_leave_the_model_fields_out():
    """A controlled world's settings (and so its prepared.json and run fingerprints) are what they were before
    the model world's fields existed."""
    from isdaa.lab.controlled import ControlledWorld
    from isdaa.lab.model_world import ModelWorld
    from isdaa.lab.store import MODEL_WORLD_FIELDS

    config = load_config(LabConfig, None, {})
    settings = ControlledWorld(config.world).settings()
    model = load_config(LabConfig, None, {"world.kind": "model"}).world
    assert not set(MODEL_WORLD_FIELDS) & set(settings) and settings["kind"] == "topics"
    assert set(MODEL_WORLD_FIELDS) <= set(ModelWorld(model, [], [], model).settings())


@pytest.mark.parametrize("override, message", [
    ({"world.model": None}, "error: option world.model: required for world kind 'model'"),
    ({"world.model": "nowhere"}, "error: option world.model: nowhere is not a model directory"),
    ({"world.eval_prompts": "missing.txt"}, "error: option world.eval_prompts: missing.txt does not exist"),
    ({"world.label_scorer": "vadr"}, "error: option world.label_scorer: unknown scorer 'vadr'"),
])
def test_bad_model_world_config_is_one_line_exit_2(model_world, tmp_path, capsys, override, message):
    cfg = tmp_path / "lab.yaml"
    world = {"kind": "model", "model": str(model_world / "model"), "prompts": str(model_world / "train.txt"),
             "eval_prompts": str(model_world / "eval.txt"), **{k.split(".")[1]: v for k, v in override.items()}}
    cfg.write_text(json.dumps({"output_dir": str(tmp_path / "lab"), "world": world}))
    assert main(["lab", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message.replace("error: ", f"error: {cfg}: ")) and "\n" not in err  # where it was set
    assert not (tmp_path / "lab").exists()


def test_quick_cuts_the_sweep_down(model_world, tmp_path):
    from isdaa.lab.quick import quick_config

    quick = quick_config(_config(model_world, tmp_path / "lab", seeds=[3, 4], betas=[0.05, 0.1]))
    assert quick.output_dir == str(tmp_path / "lab-quick") and quick.seeds == [3] and quick.betas == [0.05]
    assert [m["label"] for m in quick.methods] == ["DPO"] and quick.world.n_eval_prompts == 4
    assert quick.regimes[0]["max_steps"] == 10 and quick.regimes[0]["n_pairs"] == 16 and quick.regimes[0]["batch_size"] == 4
    assert quick.regimes[0]["eval_every"] == 10 and quick.regimes[0]["lora.target_modules"] == ["q_proj", "v_proj"]
    assert load_model_world(quick.world).eval_prompts() == [f"topic{i % 4} w{i + 12}" for i in range(4)]
