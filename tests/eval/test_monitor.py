"""The in-run monitor (isdaa.eval.monitor): its KL is `isdaa eval`'s, the KL budget stops a run at the first
evaluation above it and the run resumes exactly, `best/` is the step of the highest gold, the ESS alarm fires
once, and bad `monitor` options are refused in one line before anything is written."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import isdaa
from conftest import make_pairs, write_jsonl
from isdaa.cli import main
from isdaa.config import EvalConfig, ModelConfig
from isdaa.data.prompts import load_prompts
from isdaa.eval import evaluate
from isdaa.eval.monitor import EssAlarm
from isdaa.generation import register_scorer
from isdaa.modeling.loading import load_policy, load_tokenizer
from isdaa.runtime import read_metrics

STEPS, EVERY = 8, 2
MONITOR = {"monitor.every": EVERY, "monitor.max_prompts": 6, "monitor.n_samples": 3, "monitor.max_new_tokens": 8,
           "monitor.scorer": "length", "monitor.keep_best": True, "monitor.seed": 5}


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("held-out") / "eval.jsonl", make_pairs(8, seed=1))


def _run(tiny_config, eval_file, out, **overrides):
    cfg = tiny_config(**{"output_dir": str(out), "max_steps": STEPS, "data.eval_file": str(eval_file),
                         "optim.lr": 3e-3, "plots": True, **MONITOR, **overrides})
    return cfg, isdaa.train(cfg)


def _monitored(run_dir):
    """step -> the monitor's record (its timing left out)."""
    return {m["step"]: {k: v for k, v in m.items() if k != "monitor/seconds"} for m in read_metrics(run_dir)
            if "monitor/kl_k3" in m}


def _eval_config(**extra):
    return EvalConfig(n_samples=3, max_new_tokens=8, batch_size=64, seed=5, scorer="length", baseline="none",
                      progress=False, **extra)


def test_monitor_kl_is_isdaa_evals(tiny_config, eval_file, tmp_path):
    """At the last step the monitor's record equals `isdaa eval` of final/ against the reference (same
    prompts, seed and sampler), and at step 0 (policy = reference) its KL is exactly 0."""
    cfg, result = _run(tiny_config, eval_file, tmp_path / "run", **{"monitor.keep_best": False})
    records = _monitored(result.output_dir)
    assert sorted(records) == list(range(0, STEPS + 1, EVERY))
    assert records[0]["monitor/kl_k3"] == 0.0 and records[0]["monitor/kl_k1"] == 0.0
    assert records[STEPS]["monitor/kl_k3"] > 0 and records[STEPS]["monitor/n_samples"] == 6 * 3
    tok = load_tokenizer(cfg.model)
    policy = load_policy(ModelConfig(name_or_path=str(result.final_dir)))
    reference = load_policy(cfg.model, seed=cfg.seed)
    prompts = load_prompts(str(eval_file))[0][:6]
    res = evaluate(_eval_config(max_prompt_length=cfg.data.max_prompt_length), policy_model=policy,
                   reference_model=reference, tokenizer=tok, prompts=prompts)
    last = records[STEPS]
    for ours, theirs in (("kl_k3", "kl_k3"), ("kl_k3_se", "kl_k3_se"), ("kl_k1", "kl_k1"), ("length", "length_mean"),
                         ("eos_rate", "finished_frac"), ("gold", "gold_mean"), ("gold_se", "gold_se")):
        assert last[f"monitor/{ours}"] == pytest.approx(res[theirs], rel=1e-5, abs=1e-6), ours


def test_lora_reference_is_the_adapter_disabled_policy(tiny_config, eval_file, tmp_path):
    """Under LoRA the reference is the policy with its adapter off: KL exactly 0 at step 0 (B = 0), > 0 once
    the adapter has moved (it would stay 0 if the adapter were left on)."""
    _, result = _run(tiny_config, eval_file, tmp_path / "lora", plots=False, max_steps=4,
                     **{"lora.enabled": True, "lora.r": 4, "monitor.keep_best": False, "monitor.scorer": "none"})
    records = _monitored(result.output_dir)
    assert sorted(records) == [0, 2, 4] and "monitor/gold" not in records[4]
    assert records[0]["monitor/kl_k3"] == 0.0 and records[4]["monitor/kl_k3"] > 0


def test_stop_at_kl_keep_best_and_resume(tiny_config, eval_file, tmp_path):
    """A run with a KL budget stops at the first evaluation above it (checkpoint, final/, the reason in
    metrics.jsonl and the result); restarted with a larger budget it resumes there and ends with the weights
    and the best/ of an uninterrupted run (the best so far is read back on resume)."""
    _, full = _run(tiny_config, eval_file, tmp_path / "full", plots=False)
    kls = {s: m["monitor/kl_k3"] for s, m in _monitored(full.output_dir).items()}
    stop = next(s for s in sorted(kls) if s >= 2 * EVERY and kls[s] > max(kls[t] for t in kls if t < s))
    budget = (kls[stop] + max(kls[t] for t in kls if t < stop)) / 2

    _, stopped = _run(tiny_config, eval_file, tmp_path / "budget", plots=False, **{"monitor.stop_at_kl": budget})
    assert stopped.steps == stop and "monitor/kl_k3" in stopped.stop_reason
    log = read_metrics(stopped.output_dir)
    assert max(m["step"] for m in log if "loss" in m) == stop
    assert [m["step"] for m in log if "stop_reason" in m] == [stop]
    assert (stopped.output_dir / "checkpoints" / f"step-{stop}").is_dir()
    assert (stopped.final_dir / "config.json").is_file()
    assert _monitored(stopped.output_dir) == {s: m for s, m in _monitored(full.output_dir).items() if s <= stop}
    # restarted with a larger budget: resumes from the stop's checkpoint, ends like the uninterrupted run
    _, resumed = _run(tiny_config, eval_file, tmp_path / "budget", **{"monitor.stop_at_kl": 1e6})
    assert resumed.steps == STEPS and resumed.stop_reason is None
    steps = [m["step"] for m in read_metrics(resumed.output_dir) if "loss" in m]
    assert steps == list(range(1, STEPS + 1))
    a, b = load_file(str(full.final_dir / "model.safetensors")), load_file(str(resumed.final_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "then resumed" in (resumed.output_dir / "summary.md").read_text()
    # best/: the step of the highest gold (the first one on ties), the same after the resume
    golds = {s: m["monitor/gold"] for s, m in _monitored(full.output_dir).items()}
    best_step = max(sorted(golds), key=lambda s: golds[s])
    for run in (full, resumed):
        best = json.loads((run.output_dir / "best" / "best.json").read_text())
        assert best["step"] == best_step and best["monitor/gold"] == golds[best_step]
        assert best["monitor/kl_k3"] == kls[best_step]
    assert len(set(golds.values())) > 1, "the test needs a gold that changes over the run"
    # best/ holds that step's policy: evaluated again, it gives the recorded gold
    tok = load_tokenizer(tiny_config().model)
    res = evaluate(_eval_config(max_prompt_length=16), tokenizer=tok,
                   policy_model=load_policy(ModelConfig(name_or_path=str(full.output_dir / "best"))),
                   prompts=load_prompts(str(eval_file))[0][:6])
    assert res["gold_mean"] == pytest.approx(golds[best_step])


def test_keep_best_keeps_the_highest_gold(tiny_config, eval_file, tmp_path):
    """A scripted gold (one value per evaluation: steps 0, 2, 4, 6, 8) peaks at step 6: best/ is step 6's
    policy (the weights of its checkpoint), with its step, gold and KL in best/best.json."""
    script = iter([1.0, 3.0, 2.0, 5.0, 4.0])

    def scripted(prompts, completions, **_):
        gold = next(script)
        return [gold] * len(completions)

    register_scorer("scripted-gold", scripted)
    _, result = _run(tiny_config, eval_file, tmp_path / "run", plots=False, save_every=EVERY, keep_last=10,
                     **{"monitor.scorer": "scripted-gold"})
    best = json.loads((result.output_dir / "best" / "best.json").read_text())
    record = _monitored(result.output_dir)[6]
    assert best["step"] == 6 and best["monitor/gold"] == 5.0 and best["monitor/kl_k3"] == record["monitor/kl_k3"]
    kept = load_file(str(result.output_dir / "best" / "model.safetensors"))
    at_6 = load_file(str(result.output_dir / "checkpoints" / "step-6" / "model.safetensors"))
    final = load_file(str(result.final_dir / "model.safetensors"))
    assert all(torch.equal(kept[k], at_6[k]) for k in kept)
    assert not all(torch.equal(kept[k], final[k]) for k in kept)


def test_ess_alarm_fires_once_per_collapse():
    alarm = EssAlarm(threshold=0.5, patience=3)
    ess = [0.9, 0.4, 0.3, 0.2, 0.2, 0.1, 0.2, 0.9, 0.4, 0.4, 0.4]
    fired = {s: alarm.observe(s, {"weights/ess": e, "weights/mean": 0.25}) for s, e in enumerate(ess, start=1)}
    steps = [s for s, message in fired.items() if message]
    assert steps == [4, 11]  # the 3rd low step in a row; again only after the ESS recovered (step 8)
    assert "step 4" in fired[4] and "mean weight 0.25" in fired[4] and "is_two_sided" in fired[4]
    assert alarm.observe(12, {"weights/ess": float("nan")}) is None


def test_ess_alarm_in_a_run(tiny_config, capsys):
    """With IS weights the ESS falls below 1 after the first step: ess_warn 1 and patience 2 give one line."""
    cfg = tiny_config(**{"objective.weighting": "is", "monitor.ess_warn": 1.0, "monitor.ess_patience": 2,
                         "plots": False})
    isdaa.train(cfg)
    lines = [line for line in capsys.readouterr().err.splitlines() if "weights/ess" in line]
    assert len(lines) == 1 and lines[0].startswith("isdaa: warning: step ")


@pytest.mark.parametrize("options, expected", [
    ({"monitor.every": "-1"}, "option monitor.every must be >= 0"),
    ({"monitor.every": "2", "monitor.keep_best": "true"}, "option monitor.keep_best: needs monitor.scorer"),
    ({"monitor.stop_at_kl": "1"}, "option monitor.stop_at_kl: needs the monitor on"),
    ({"monitor.every": "2", "monitor.scorer": "nosuch"}, "option monitor.scorer: unknown scorer 'nosuch'"),
    ({"monitor.every": "2", "monitor.prompts": "MISSING.txt"}, "option monitor.prompts:"),
    ({"monitor.every": "2", "data.eval_file": None}, "option monitor.prompts: required when data.eval_file"),
    ({"monitor.ess_warn": "2"}, "option monitor.ess_warn must be in [0, 1]"),
    ({"monitor.every": "2", "monitor.n_samples": "0"}, "option monitor.n_samples must be > 0"),
])
def test_bad_monitor_options(tiny_config, eval_file, tmp_path, capsys, options, expected):
    cfg = tiny_config()
    out = tmp_path / "never"
    args = {"output_dir": str(out), "model.init": json.dumps(cfg.model.init), "model.tokenizer": cfg.model.tokenizer,
            "data.train_file": cfg.data.train_file, "data.eval_file": str(eval_file), "progress": "false", **options}
    missing = str(tmp_path / "no")
    argv = ["train"] + [x for k, v in args.items() if v is not None for x in (f"--{k}", v.replace("MISSING", missing))]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not out.exists()
