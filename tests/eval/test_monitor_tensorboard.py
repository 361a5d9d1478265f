"""With `trackers: [tensorboard]` the monitor's metrics reach the event files too (tensorboard: optional extra)."""

from __future__ import annotations

import pytest

import isdaa
from conftest import make_pairs, write_jsonl

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is not installed (pip install -e '.[tensorboard]')",
)


def test_monitor_metrics_in_tensorboard_events(tiny_config, tmp_path):
    eval_file = write_jsonl(tmp_path / "eval.jsonl", make_pairs(4, seed=3))
    cfg = tiny_config(**{"max_steps": 2, "trackers": ["tensorboard"], "data.eval_file": str(eval_file), "plots": False,
                         "monitor.every": 1, "monitor.n_samples": 2, "monitor.max_new_tokens": 4})
    result = isdaa.train(cfg)
    events = sorted(result.output_dir.rglob("events.out.tfevents.*"))
    assert events, "no tensorboard event file written"
    scalars = {}
    for path in events:
        acc = event_accumulator.EventAccumulator(str(path.parent))
        acc.Reload()
        scalars.update({tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]})
    assert scalars["monitor/kl_k3"] == [0, 1, 2] and scalars["monitor/eos_rate"] == [0, 1, 2]
    assert "loss" in scalars
