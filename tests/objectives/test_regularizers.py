"""RPO's SFT term `sft_loss`."""

import pytest
import torch
from objective_cases import close, t

from isdaa.objectives import sft_loss


def test_sft_loss_values():
    pc = t(-10.0, -20.0)
    close(sft_loss(pc).tolist(), [10.0, 20.0])
    close(sft_loss(pc, chosen_lengths=torch.tensor([5, 8]), token_mean=True).tolist(), [2.0, 2.5])
    with pytest.raises(ValueError, match="chosen_lengths"):
        sft_loss(pc, token_mean=True)
