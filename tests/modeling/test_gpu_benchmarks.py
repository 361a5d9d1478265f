"""The GPU check's scripts run their code path on the CPU (ALLOW_CPU=1, a tiny model): benchmarks/gpu_check.sh
broke once unnoticed when the CPU benchmark's set-up moved, and a lent GPU is too short-lived to find that out."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = {"ALLOW_CPU": "1", "LAYERS": "2", "HIDDEN": "64", "HEADS": "4", "KV_HEADS": "2", "INTER": "128", "STEPS": "3",
        "BATCH": "2", "SHAPE": "hh", "OMP_NUM_THREADS": "1"}


def _run(cmd: list[str], result: Path, **extra: str) -> dict:
    env = {**os.environ, **TINY, **extra, "PYTHON": sys.executable, "RESULT_JSON": str(result),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(result.read_text())


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    r = _run(["bash", "benchmarks/gpu_check.sh"], tmp_path / "isdaa.json")
    assert r["trainer"] == "isdaa" and r["device"] == "cpu (dry run)" and r["weighting"] == "is"
    assert r["layers"] == 2 and r["hidden"] == 64 and r["batch"] == 2 and r["timed_steps"] == 1
    assert r["pairs_per_s"] > 0 and r["decoder_tokens_per_pair"] < r["sequence_tokens_per_pair"]  # prompt once
    assert len(r["step_s"]) == 3 and 0 < r["useful_mfu"] <= r["mfu"]


@pytest.mark.slow
def test_gpu_trl_dry_run_on_cpu_sees_the_checks_tokens(tmp_path):
    """TRL's baseline trains on the same pairs, tokenised to the same lengths, as the isdaa check."""
    pytest.importorskip("trl")
    trl = _run([sys.executable, "benchmarks/gpu_trl.py"], tmp_path / "trl.json")
    isdaa = _run(["bash", "benchmarks/gpu_check.sh"], tmp_path / "isdaa.json")
    assert trl["trainer"] == "trl" and trl["model_params"] == isdaa["model_params"]
    for key in ("sequence_tokens_per_pair", "decoder_tokens_per_pair", "response_tokens_per_pair"):
        assert trl[key] == pytest.approx(isdaa[key])
    assert trl["pairs_per_s"] > 0 and trl["first_loss"] == pytest.approx(0.6931, abs=1e-3)


@pytest.mark.slow
def test_gpu_check_profile_covers_two_steps_after_the_warm_up(tmp_path):
    """PROFILE=1: the profiler's window is two whole steps after the warm-up, and the report says what it timed."""
    r = _run(["bash", "benchmarks/gpu_check.sh"], tmp_path / "isdaa.json", PROFILE="1", STEPS="5", WEIGHTING="none")
    prof, steps = r["profile"], r["step_s"]
    assert 0.5 * min(steps[3:5]) < prof["profile_wall_s"] < 2.0 * max(steps[3:5]) + 1.0
    assert 0 < prof["profile_cpu_s"] <= prof["profile_wall_s"] * 1.05 and prof["profile_gpu_s"] == 0.0  # no GPU here
    assert prof["syncs_per_step"] == {}
