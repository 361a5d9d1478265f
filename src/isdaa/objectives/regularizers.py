"""Regularisers added to a DAA loss.

RPO (Liu et al. 2024, "Provably Mitigating Overoptimization in RLHF: Your SFT Loss is Implicitly an
Adversarial Regularizer") adds η·β·(−log π_θ(y_w|x)) to the DAA loss; `daa_objective` does that sum
(its `sft_eta` = η), this module only provides the per-example SFT term.
"""

import torch

from ._validate import check_vectors, lengths_as


def sft_loss(
    policy_chosen_logps: torch.Tensor,
    *,
    chosen_lengths: torch.Tensor | None = None,
    token_mean: bool = False,
) -> torch.Tensor:
    """Negative log-likelihood of the chosen response, per example: −log π_θ(y_w|x), shape (B,).

    `policy_chosen_logps`: (B,) summed response log-probs. With `token_mean=True` the sum is divided
    by `chosen_lengths` (B,) — the per-token variant (then the lengths are required).
    """
    check_vectors(policy_chosen_logps=policy_chosen_logps)
    if token_mean:
        lengths = lengths_as("chosen_lengths", chosen_lengths, policy_chosen_logps, "sft_loss(token_mean=True)")
        return -policy_chosen_logps / lengths
    return -policy_chosen_logps
