"""Reference log-probs, computed once before training and cached on disk.

The cache file is keyed by a SHA-256 of the tokenised data (every prompt/chosen/rejected id), the
reference model's identity (path + file sizes/mtimes, or the init config and seed) and the settings that
change the numbers (dtype). Any change gives a new key, hence a miss; a hit skips the reference forward
entirely, so training steps run the policy only. Stored with safetensors (no pickle).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from isdaa.data import collate
from isdaa.logprobs import batch_logps


def cache_key(examples, model_id: str) -> str:
    h = hashlib.sha256(model_id.encode())
    for ex in examples:
        for ids in (ex.prompt_ids, ex.chosen_ids, ex.rejected_ids):
            h.update(len(ids).to_bytes(4, "little"))
            h.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
    return h.hexdigest()[:24]


@torch.no_grad()
def compute_reference_logps(model, examples, *, pad_token_id: int, batch_size: int, progress=None):
    """(chosen, rejected) summed log-probs, (N,) fp32 each, in the order of `examples`."""
    chosen, rejected = [], []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size], pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        out = batch_logps(model, batch)
        chosen.append(out["chosen_logps"].float().cpu())
        rejected.append(out["rejected_logps"].float().cpu())
        if progress is not None:
            progress.update(min(batch_size, len(examples) - start))
    model.train(was_training)
    return torch.cat(chosen), torch.cat(rejected)


def cached_reference_logps(model, examples, *, cache_dir, model_id, pad_token_id, batch_size, progress=None):
    """Load from `cache_dir` or compute and store. Returns (chosen, rejected, hit: bool)."""
    path = Path(cache_dir) / f"ref-logps-{cache_key(examples, model_id)}.safetensors"
    if path.is_file():
        stored = load_file(str(path))
        if stored["chosen"].shape[0] == len(examples):
            return stored["chosen"], stored["rejected"], True
    chosen, rejected = compute_reference_logps(
        model, examples, pad_token_id=pad_token_id, batch_size=batch_size, progress=progress
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({"chosen": chosen.contiguous(), "rejected": rejected.contiguous()}, str(tmp))
    os.replace(tmp, path)
    return chosen, rejected, False


def attach_reference_logps(examples, chosen, rejected) -> None:
    """Store the reference log-probs on the examples (so collate carries them into batches)."""
    for ex, c, r in zip(examples, chosen.tolist(), rejected.tolist()):
        ex.ref_chosen_logps = c
        ex.ref_rejected_logps = r
