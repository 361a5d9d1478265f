"""`final/README.md`: the model card of a run (isdaa.training.model_card)."""

from __future__ import annotations

import hashlib
import json

import yaml

from isdaa.config import TrainConfig, load_config
from isdaa.training.model_card import RunFacts, data_sha256, model_card, run_facts
from isdaa.runtime import read_metrics
from isdaa.training.trainer import fit


def _split(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    front, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def _config(**overrides):
    base = {"output_dir": "runs/is-ipo", "model.name_or_path": "models/base", "data.train_file": "pairs.jsonl",
            "objective.loss": "ipo", "objective.beta": 0.05, "objective.weighting": "is_two_sided",
            "objective.is_eps": 0.25, "lora.enabled": True}
    return load_config(TrainConfig, None, {**base, **overrides})


def test_card_front_matter_and_sections():
    facts = RunFacts(steps=120, skipped_steps=2, rows_used=990, rows_dropped=10, data_sha256="ab" * 32,
                     final={"step": 120, "loss": 0.25, "rewards/accuracies": 0.875, "weights/ess": 0.5},
                     held_out={"step": 120, "eval/rewards/accuracies": 0.75},
                     monitor={"monitor/kl_k3": (100, 3.5), "monitor/gold": (100, 1.25)},
                     datasets=["my-pairs"], isdaa_version="0.1.0")
    meta, body = _split(model_card(_config(), facts))
    assert meta == {"library_name": "transformers", "base_model": "models/base",
                    "tags": ["dpo", "isdaa", "ipo", "importance-sampling", "weighting-is_two_sided", "lora"],
                    "datasets": ["my-pairs"]}
    assert body.startswith("\n# is-ipo\n") and "isdaa 0.1.0" in body
    assert "| ipo | 0.05 | is_two_sided | 0.25 | 0 | – |" in body
    assert "`pairs.jsonl`" in body and "ab" * 32 in body and "rows used: 990; dropped: 10" in body
    assert "120 optimizer steps (2 skipped" in body and "LoRA r=8" in body
    assert "| `loss` | 0.25 |" in body and "| `weights/ess` | 0.5 |" in body
    assert "| `eval/rewards/accuracies` | 0.75 |" in body
    assert "| `monitor/kl_k3` | 100 | 3.5 |" in body and "| `monitor/gold` | 100 | 1.25 |" in body


def test_card_without_weighting_monitor_or_known_dataset():
    cfg = _config(**{"objective.weighting": "none", "objective.loss": "sigmoid", "lora.enabled": False})
    meta, body = _split(model_card(cfg, RunFacts(steps=3, skipped_steps=0, rows_used=8, rows_dropped=0)))
    assert meta["tags"] == ["dpo", "isdaa", "sigmoid"] and "datasets" not in meta
    assert "| sigmoid | 0.05 | none | – |" in body and "monitor" not in body and "importance-sampled" not in body.lower()


def test_run_facts_read_the_last_values(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": 0, "eval/rewards/accuracies": 0.5}, {"step": 1, "loss": 0.7, "monitor/kl_k3": 0.1},
               {"step": 2, "loss": 0.6, "monitor/gold": 2.0}, {"step": 2, "eval/rewards/accuracies": 0.9}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = _config(**{"data.train_file": str(data)})
    facts = run_facts(cfg, run, steps=2, skipped_steps=0, rows_used=1, rows_dropped=0)
    assert facts.final == records[2] and facts.held_out == records[3]
    assert facts.monitor == {"monitor/kl_k3": (1, 0.1), "monitor/gold": (2, 2.0)}
    assert facts.data_sha256 == hashlib.sha256(data.read_bytes()).hexdigest()


def test_data_hash_of_a_directory_follows_its_files(tmp_path):
    (tmp_path / "ds" / "train").mkdir(parents=True)
    (tmp_path / "ds" / "train" / "data.arrow").write_bytes(b"one")
    first = data_sha256(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "data.arrow").write_bytes(b"two")
    assert data_sha256(tmp_path / "ds") not in (first, None) and data_sha256(tmp_path / "missing") is None


def test_training_writes_the_card_into_final(tiny_config, pairs_file):
    cfg = tiny_config(**{"objective.weighting": "is", "max_steps": 3})
    result = fit(cfg)
    meta, body = _split((result.final_dir / "README.md").read_text())
    assert meta["library_name"] == "transformers" and "base_model" not in meta  # model.init: no base model
    assert meta["tags"][:3] == ["dpo", "isdaa", "sigmoid"] and "importance-sampling" in meta["tags"]
    assert hashlib.sha256(pairs_file.read_bytes()).hexdigest() in body
    assert "rows used: 64; dropped: 0" in body and "3 optimizer steps (0 skipped" in body
    last = [r for r in read_metrics(result.output_dir) if "loss" in r][-1]
    assert f"| `loss` | {last['loss']:.4g} |" in body and f"## Final metrics (step {last['step']})" in body
