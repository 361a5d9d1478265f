"""The lab's worker processes (runs, a model world's pairs): one torch thread each, no progress bars, and an exit
as soon as the sweep that started them is gone."""

from __future__ import annotations

import os
import threading
import time

import torch
from transformers.utils import logging as hf_logging

__all__ = ["exit_with_parent", "init_worker"]


def exit_with_parent(parent: int, poll_seconds: float = 1.0) -> None:
    """Exit this process as soon as `parent` is no longer its parent (the sweep was killed): a worker must not
    go on training after its sweep is gone, or a restarted sweep would run the same run beside it."""
    while os.getppid() == parent:
        time.sleep(poll_seconds)
    os._exit(1)


def init_worker() -> None:
    """A worker's start: watch the parent, no progress bars, one torch thread."""
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    hf_logging.disable_progress_bar()

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
