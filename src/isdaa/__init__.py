"""isdaa: direct alignment algorithms made robust by importance sampling (Nguyen et al., NeurIPS 2025).

`isdaa.train(config)` and `isdaa.evaluate(config)` run what the CLI runs; the objective math lives in
`isdaa.objectives` and imports nothing heavier than torch. The package's layers, bottom to top:
runtime, config, objectives, data, modeling, generation, eval, training, lab, cli (docs/internals.md).
"""

__version__ = "0.1.0"


def train(config, **kwargs):
    """Train a policy with a (weighted) DAA objective, with the config's in-run monitor and, at the end, its
    plots; see `isdaa.training.run.train` (the bare loop: `isdaa.training.trainer.fit`)."""
    # lazy: `import isdaa.objectives` (pure torch) must not load transformers and accelerate through this façade
    from isdaa.training.run import train as _train

    return _train(config, **kwargs)


def evaluate(config, **kwargs):
    """Sample, score and estimate KL; see `isdaa.eval.evaluate`."""
    # lazy: as for `train`
    from isdaa.eval import evaluate as _evaluate

    return _evaluate(config, **kwargs)
