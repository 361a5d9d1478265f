"""Sampling from a model, gold scorers, reward models and preference-pair generation (`isdaa pairs`), shared by
eval and the lab.

- `sample_completions`, `score_logps`: sampling with `model.generate` and teacher-forced log-probs.
- `get_scorer`, `register_scorer`: gold scorers (length, vader, hf-rm:<dir>, module:function, registered).
- `generate_pairs`, `pairs_in_rounds`, `write_pairs`, `bt_probability`: labelled TRL pairs with behaviour log-probs
  (`pairs_in_rounds`: rounds of any sampler / scorer / labeller until enough pairs, under the lab's worlds).
"""

from isdaa.generation.pairs import LABELS, bt_probability, generate_pairs, pairs_in_rounds, write_pairs
from isdaa.generation.sampling import Sample, eos_token_ids, sample_completions, score_logps
from isdaa.generation.scorers import get_scorer, register_scorer, registered_scorers

__all__ = [
    "LABELS",
    "Sample",
    "bt_probability",
    "eos_token_ids",
    "generate_pairs",
    "get_scorer",
    "pairs_in_rounds",
    "register_scorer",
    "registered_scorers",
    "sample_completions",
    "score_logps",
    "write_pairs",
]
