"""AdamW and the learning-rate schedule of a run (the schedule counts optimizer steps)."""

from __future__ import annotations

import torch
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

from isdaa.config import OptimConfig


def optimizer_and_schedule(model: torch.nn.Module, optim: OptimConfig, total_steps: int):
    """AdamW over the trainable parameters of `model`, and the warm-up + cosine / linear / constant schedule
    over `total_steps` optimizer steps (cosine decays to `min_lr_ratio` x lr)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=optim.lr, betas=(optim.adam_beta1, optim.adam_beta2), eps=optim.adam_eps,
        weight_decay=optim.weight_decay,
    )
    warmup = int(optim.warmup_ratio * total_steps)
    if optim.scheduler == "cosine":
        schedule = get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, warmup, total_steps, min_lr_rate=optim.min_lr_ratio
        )
    elif optim.scheduler == "linear":
        schedule = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    else:
        schedule = get_constant_schedule_with_warmup(optimizer, warmup)
    return optimizer, schedule
