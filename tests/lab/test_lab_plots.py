"""The lab's plots name the world's gold reward on every gold axis (checked on the Figure objects) and mark
each evaluation: a model world's gold scorer, a controlled world's own exact reward."""

from __future__ import annotations

import pytest

from isdaa.eval import plots
from isdaa.lab.outputs import write_plots


def _results(world: dict) -> dict:
    evals = [{"step": s, "gold": 0.1 * s, "kl_k3": 0.2 * s, "ess_mean": 0.9, "ess_min": 0.8, "length": 3.0}
             for s in (0, 50, 100)]
    runs = [{"regime": "few_pairs", "beta": 0.01, "method": "DPO", "seed": seed, "evals": evals} for seed in (0, 1)]
    return {"reference_gold": {"gold": 0.0}, "config": {"world": world}, "runs": runs}


@pytest.mark.parametrize("world, gold", [({"kind": "model", "gold": "vader"}, "gold reward (vader)"),
                                         ({"kind": "topics"}, "gold reward (topics world, exact)")])
def test_lab_gold_axes_name_the_gold_reward(world, gold, tmp_path, monkeypatch):
    saved = {}
    real_save = plots._save

    def save(fig, path):
        saved[path.name] = fig
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    write_plots(_results(world), {}, tmp_path)
    frontier = saved["frontier_few_pairs_beta0.01.png"].axes[0]
    over_steps = saved["over_steps_gold_few_pairs_beta0.01.png"].axes[0]
    assert frontier.get_ylabel() == gold and over_steps.get_ylabel() == gold
    assert saved["over_steps_kl_k3_few_pairs_beta0.01.png"].axes[0].get_ylabel() == "KL (k3, nats)"
    for ax in (frontier, over_steps):
        dpo = next(line for line in ax.get_lines() if line.get_label() == "DPO")
        assert dpo.get_marker() == "o" and len(dpo.get_xdata()) == 3
