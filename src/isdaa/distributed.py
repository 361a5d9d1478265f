"""The process group, as Accelerate sees it.

Accelerate only forms a multi-process CPU group (gloo) when asked with `cpu=True`; without a GPU we ask,
so `torchrun --nproc_per_node N -m isdaa.cli train ...` runs data-parallel on CPU as well.
"""

from __future__ import annotations

import torch


def use_cpu() -> bool:
    return not torch.cuda.is_available()


def process_state():
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())
