"""The lab pipeline: SFT reference, pairs (behaviour log-probs = the reference's), and a tiny sweep through
`isdaa.train` that writes every output file."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import torch

from isdaa.errors import InputError
from isdaa.lab.world import World


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    from isdaa.lab.sft import train_reference

    out = tmp_path_factory.mktemp("lab-ref")
    torch.set_num_threads(1)
    info = train_reference(World(), out, hidden_size=32, num_layers=1, num_heads=2, steps=40, batch_size=64,
                           lr=1e-2, seed=0, progress=None)
    return info


def test_reference_is_saved_and_fits(tiny_reference):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_reference["path"]
    tok = AutoTokenizer.from_pretrained(path)
    AutoModelForCausalLM.from_pretrained(path)
    assert tok.eos_token == "<eos>"
    # 40 steps of a 1-layer model: a rough but real fit (a uniform model would be ~40 nats away)
    assert 0 <= tiny_reference["kl_base_ref"] < 5.0
    assert tiny_reference["ref_nll"] == pytest.approx(tiny_reference["base_entropy"] + tiny_reference["kl_base_ref"])


def test_pairs_behaviour_logps_equal_reference_logps(tiny_reference, tmp_path):
    """Recompute with the trainer's own path: load_rows → tokenize_rows → collate → batch_logps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from isdaa.data import collate, load_rows, tokenize_rows
    from isdaa.lab.preference_data import EXTRA_COLUMNS, make_pairs
    from isdaa.lab.sft import encode_pairs, response_logps
    from isdaa.modeling.logprobs import batch_logps

    world = World()
    path = tmp_path / "pairs.jsonl"
    stats = make_pairs(world, tiny_reference["path"], 48, path, label_temperature=0.5, seed=3)
    assert stats["n_pairs"] == 48
    rows = load_rows(path, extra_columns=EXTRA_COLUMNS)
    assert len(rows) == 48
    for r in rows:
        assert r["prompt"] in world.train_prompts()
        assert r["chosen"] != r["rejected"]
        assert r["gold_chosen"] == pytest.approx(world.gold_reward(r["prompt"], r["chosen"]))
        assert r["gold_rejected"] == pytest.approx(world.gold_reward(r["prompt"], r["rejected"]))
    tok = AutoTokenizer.from_pretrained(tiny_reference["path"])
    model = AutoModelForCausalLM.from_pretrained(tiny_reference["path"]).eval()
    examples, dropped = tokenize_rows(rows, tok, max_length=64, max_prompt_length=8)
    assert dropped == 0
    with torch.no_grad():
        out = batch_logps(model, collate(examples, tok.pad_token_id))
    want_c = torch.tensor([r["behavior_chosen_logps"] for r in rows])
    want_r = torch.tensor([r["behavior_rejected_logps"] for r in rows])
    torch.testing.assert_close(out["chosen_logps"].float(), want_c, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out["rejected_logps"].float(), want_r, atol=1e-4, rtol=1e-5)
    # and with an independent full-logits computation
    with torch.no_grad():
        ids, att, cm = encode_pairs(tok, [r["prompt"] for r in rows], [r["chosen"].split() for r in rows])
        torch.testing.assert_close(response_logps(model, ids, att, cm).float(), want_c, atol=1e-4, rtol=1e-5)


def test_pairs_labels_follow_bradley_terry(tiny_reference, tmp_path):
    """The share of pairs labelled in the gold reward's direction matches what the BT temperature predicts."""
    from isdaa.lab.preference_data import make_pairs

    stats = make_pairs(World(), tiny_reference["path"], 600, tmp_path / "p.jsonl", label_temperature=1.0, seed=5)
    n_informative = stats["n_pairs"] * (1 - stats["ties"])
    se = math.sqrt(stats["expected_agreement"] * (1 - stats["expected_agreement"]) / n_informative)
    assert stats["agreement"] == pytest.approx(stats["expected_agreement"], abs=4 * se)


def test_bad_method_key_is_an_input_error():
    from isdaa.lab.regimes import resolve_methods, resolve_regimes

    with pytest.raises(InputError, match="did you mean 'weighting'"):
        resolve_methods([{"label": "x", "weigting": "is"}])
    with pytest.raises(InputError, match="did you mean 'loss'"):
        resolve_methods([{"label": "x", "losss": "ipo"}])
    with pytest.raises(InputError, match=r"methods\[0\] \(x\): objective.loss: unknown value .dpoo."):
        resolve_methods([{"label": "x", "loss": "dpoo"}])
    with pytest.raises(InputError, match=r"objective.weighting: unknown value .iss. \(did you mean .is.\?\)"):
        resolve_methods([{"label": "x", "weighting": "iss"}])
    with pytest.raises(InputError, match="duplicate"):
        resolve_methods([{"label": "a"}, {"label": "a"}])
    with pytest.raises(InputError, match="unknown key"):
        resolve_regimes([{"name": "r", "steps": 3}])
    assert len(resolve_methods([])) >= 13  # the default sweep


def test_packaged_configs_load():
    from isdaa.lab import load_lab_config
    from isdaa.lab.regimes import resolve_methods, resolve_regimes

    for demo in (False, True):
        cfg = load_lab_config(demo=demo)
        resolve_methods(cfg.methods)
        resolve_regimes(cfg.regimes)
    demo = load_lab_config(demo=True)
    assert demo.betas == [0.01] and len(demo.seeds) >= 3


def _tiny_config(out):
    """The tiny sweep: 2 methods × 1 β × 1 seed, 4 steps of a 1-layer model, in-process."""
    from isdaa.config import LabConfig, load_config

    return load_config(LabConfig, None, {
        "output_dir": str(out),
        "reference.hidden_size": 32, "reference.num_layers": 1, "reference.num_heads": 2,
        "reference.steps": 20, "reference.batch_size": 64, "reference.lr": 1e-2,
        "methods": [{"label": "DPO", "loss": "sigmoid"}, {"label": "IS-IPO two-sided", "loss": "ipo",
                                                           "weighting": "is_two_sided", "is_eps": 1.0}],
        "regimes": [{"name": "tiny", "n_pairs": 40, "max_steps": 4, "lr": 1e-3, "batch_size": 8, "eval_every": 2}],
        "betas": [0.1], "seeds": [0], "eval_samples": 3, "workers": 1,
    })


def test_tiny_sweep_writes_every_output(tiny_reference, tmp_path):
    """2 methods × 1 β × 1 seed, a few steps, in-process: every output file is written."""
    from isdaa.lab import run_lab

    cfg = _tiny_config(tmp_path / "lab")
    lines = []
    results = run_lab(cfg, progress=lines.append)
    out = tmp_path / "lab"
    for name in ("results.json", "results.csv", "report.md", "eval_prompts.txt", "reference/config.json",
                 "pairs/seed-0.jsonl", "pairs/tiny-seed-0.jsonl", "frontier_tiny_beta0.1.png",
                 "over_steps_gold_tiny_beta0.1.png", "over_steps_kl_k3_tiny_beta0.1.png",
                 "over_steps_ess_min_tiny_beta0.1.png", "over_steps_length_tiny_beta0.1.png"):
        assert (out / name).is_file(), name
    assert sum("seed=0" in line for line in lines) == 2  # one progress line per run
    saved = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in saved["runs"]} == {"DPO", "IS-IPO two-sided"}
    assert all(r["status"] == "ok" for r in saved["runs"]), [r["status"] for r in saved["runs"]]
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * 3  # steps 0, 2, 4 per run
    assert {int(r["step"]) for r in rows} == {0, 2, 4}
    step0 = [r for r in rows if r["step"] == "0"]
    for r in step0:  # at step 0 the policy is the reference
        assert abs(float(r["kl_k1"])) < 1e-4 and float(r["kl_k3"]) < 1e-6
    assert all(float(r["ess_min_so_far"]) <= 1.0 + 1e-6 for r in rows if r["ess_min_so_far"])
    report = (out / "report.md").read_text()
    assert "Verdict" in report and "IS-IPO two-sided" in report
    assert "summary" in results
    assert not (out / "runs" / "tiny" / "DPO" / "beta-0.1" / "seed-0" / "final").exists()  # keep_models off
    # run again: the sweep resumes: the preparation and both finished runs are reused, the numbers are the same
    again_lines = []
    again = run_lab(cfg, progress=again_lines.append)
    assert any("2 of 2 runs already done" in line for line in again_lines)
    assert not any(line.startswith("reference:") for line in again_lines)  # no second SFT
    assert [r["evals"] for r in again["runs"]] == [r["evals"] for r in saved["runs"]]
    # report only: nothing runs, the report says it is interim when runs are missing
    ipo = {"label": "IPO", "loss": "ipo"}
    interim = run_lab(dataclasses.replace(cfg, methods=cfg.methods + [ipo], report_only=True), progress=None)
    assert interim["missing_runs"] == 1 and len(interim["runs"]) == 2
    assert "Interim report: 1 runs" in (out / "report.md").read_text()
    # a third method: only it runs
    more = dataclasses.replace(cfg, methods=cfg.methods + [{"label": "IPO", "loss": "ipo"}])
    more_lines = []
    assert len(run_lab(more, progress=more_lines.append)["runs"]) == 3
    assert sum("seed=0" in line for line in more_lines) == 1
    # a new regime over the same pairs: its pair files are cut from the saved pairs, only its runs run
    regime = {"name": "tiny2", "n_pairs": 24, "max_steps": 2, "lr": 1e-3, "batch_size": 8, "eval_every": 2}
    wider = dataclasses.replace(more, regimes=more.regimes + [regime])
    assert len(run_lab(wider, progress=None)["runs"]) == 6
    assert len((out / "pairs" / "tiny2-seed-0.jsonl").read_text().splitlines()) == 24
    # other world settings in the same directory: refused unless overwrite
    with pytest.raises(InputError, match="other world"):
        run_lab(dataclasses.replace(cfg, world=dataclasses.replace(cfg.world, p_stop=0.4)), progress=None)
    (out / "prepared.json").write_text('{"key": ')  # torn: refused in one line, nothing removed
    with pytest.raises(InputError, match="not a readable lab preparation"):
        run_lab(cfg, progress=None)
    assert (out / "runs").is_dir()
    (out / "prepared.json").unlink()  # not a lab directory any more: an ordinary non-empty directory
    with pytest.raises(InputError, match="not empty"):
        run_lab(cfg, progress=None)


def test_a_sweep_killed_while_preparing_starts_its_preparation_again(tmp_path):
    """Before `prepared.json` no run has started: a second call redoes the preparation instead of refusing the
    directory; a directory with anything else in it is still refused."""
    out = tmp_path / "lab"
    (out / "pairs").mkdir(parents=True)
    (out / "pairs" / "seed-0.jsonl").write_text('{"prompt": "half')  # what a kill mid-preparation leaves
    (out / "eval_prompts.txt").write_text("p\n")
    from isdaa.lab import run_lab

    cfg = _tiny_config(out)
    results = run_lab(cfg, progress=None)
    assert len(results["runs"]) == 2 and (out / "prepared.json").is_file()
    other = tmp_path / "other"
    (other / "pairs").mkdir(parents=True)
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        run_lab(dataclasses.replace(cfg, output_dir=str(other)), progress=None)
    assert (other / "notes.txt").read_text() == "mine"


def test_a_signal_during_a_lab_run_says_that_the_run_starts_again(tmp_path, monkeypatch):
    """A lab run is not resumed from the checkpoint the trainer saves on a signal: the one line says so (not "run
    the same command to resume"), keeps the exit code, and the interrupted run leaves no record (it runs again)."""
    import signal

    from isdaa.errors import RunInterrupted
    from isdaa.lab import pool, run_lab
    from isdaa.training.signals import stop_event, stop_message

    def preempted(cfg, callbacks=()):  # what the trainer raises on a SIGTERM at step 3
        raise RunInterrupted(stop_message(signal.SIGTERM, 3, "ckpt"), 143, event=stop_event(signal.SIGTERM, 3))

    monkeypatch.setattr(pool, "fit", preempted)
    with pytest.raises(RunInterrupted) as info:
        run_lab(_tiny_config(tmp_path / "lab"), progress=None)
    message = str(info.value)
    assert info.value.exit_code == 143 and message.startswith("lab: preempted (SIGTERM) at step 3 in run ")
    assert "this run starts again" in message and "resume" not in message
    assert not list((tmp_path / "lab" / "runs").rglob("record.json"))


def test_a_worker_exits_when_its_sweep_is_killed(tmp_path):
    """A sweep's worker watches its parent: when the sweep dies, the worker exits instead of training on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import multiprocessing as mp, os, sys, time\n"
        "from isdaa.lab.workers import exit_with_parent\n"
        "def child(parent):\n"
        "    exit_with_parent(parent, poll_seconds=0.1)\n"
        "if __name__ == '__main__':\n"
        "    p = mp.get_context('fork').Process(target=child, args=(os.getpid(),))\n"
        "    p.start()\n"
        "    print(p.pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # alive while its parent lives
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the worker outlived its sweep")
