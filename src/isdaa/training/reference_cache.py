"""Reference log-probs, computed once before training and cached on disk.

The cache file is keyed by a SHA-256 of the tokenised data (every prompt/chosen/rejected id), the
reference model's identity (path + file sizes/mtimes, or the init config and seed) and the settings that
change the numbers (dtype; the forward layout: concatenated or shared prompt, which differ by float
rounding). Any change gives a new key, hence a miss; a hit skips the reference forward entirely, so training
steps run the policy only. Stored with safetensors (no pickle), with the example count and a SHA-256 of the
values in its metadata: a truncated, corrupted or wrong-shape file is reported in one warning line and
recomputed, never used. Written to a temporary file, fsynced and renamed (atomic and durable).

The precompute batches examples sorted by length (less padding; each example's log-probs do not depend on
its batch mates beyond float rounding) and returns them in the original order.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from isdaa.data import SHARED_KEYS, collate, collate_shared, length
from isdaa.modeling.logprobs import batch_logps, batch_logps_shared_prompt
from isdaa.modeling.modes import eval_mode
from isdaa.runtime import durable_rename, failing_write


def cache_key(examples, model_id: str) -> str:
    """24 hex digits of a SHA-256 over `model_id` and every token id of the examples."""
    h = hashlib.sha256(model_id.encode())
    for ex in examples:
        for ids in (ex.prompt_ids, ex.chosen_ids, ex.rejected_ids):
            h.update(len(ids).to_bytes(4, "little"))
            h.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
    return h.hexdigest()[:24]


@torch.no_grad()
def compute_reference_logps(
    model, examples, *, pad_token_id: int, batch_size: int, progress=None, prompt_sharing: bool = False
):
    """(chosen, rejected) summed log-probs, (N,) fp32 each, in the order of `examples`.

    Batches are formed from the examples sorted by `length` (stable), to cut padding. `prompt_sharing`: run
    each prompt once (`batch_logps_shared_prompt`) instead of the concatenated forward."""
    n = len(examples)
    order = sorted(range(n), key=lambda i: length(examples[i]))
    chosen = torch.empty(n, dtype=torch.float32)
    rejected = torch.empty(n, dtype=torch.float32)
    device = next(model.parameters()).device
    with eval_mode(model):
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            group = [examples[i] for i in idx]
            if prompt_sharing:
                batch = collate_shared(group, pad_token_id)
                out = batch_logps_shared_prompt(model, *(batch[k].to(device) for k in SHARED_KEYS))
            else:
                batch = {k: v.to(device) for k, v in collate(group, pad_token_id).items()}
                out = batch_logps(model, batch)
            chosen[idx] = out["chosen_logps"].float().cpu()
            rejected[idx] = out["rejected_logps"].float().cpu()
            if progress is not None:
                progress.update(len(idx))
    return chosen, rejected


def cached_reference_logps(
    model, examples, *, cache_dir, model_id, pad_token_id, batch_size, progress=None, prompt_sharing: bool = False
):
    """Load from `cache_dir` or compute and store. Returns (chosen, rejected, hit: bool)."""
    key = cache_key(examples, model_id + ("|shared-prompt" if prompt_sharing else ""))
    path = Path(cache_dir) / f"ref-logps-{key}.safetensors"
    if path.is_file():
        stored, problem = read_cache(path, len(examples))
        if stored is not None:
            return stored["chosen"], stored["rejected"], True
        print(f"isdaa: warning: reference cache {path} is unusable ({problem}); recomputing it", file=sys.stderr)
    chosen, rejected = compute_reference_logps(
        model, examples, pad_token_id=pad_token_id, batch_size=batch_size, progress=progress,
        prompt_sharing=prompt_sharing,
    )
    write_cache(path, chosen, rejected)
    return chosen, rejected, False


def _checksum(chosen: torch.Tensor, rejected: torch.Tensor) -> str:
    """SHA-256 of the two fp32 vectors' bytes."""
    h = hashlib.sha256(chosen.contiguous().numpy().tobytes())
    h.update(rejected.contiguous().numpy().tobytes())
    return h.hexdigest()


def write_cache(path: Path, chosen: torch.Tensor, rejected: torch.Tensor) -> Path:
    """Store the log-probs with their checksum in the metadata; atomic and durable."""
    chosen, rejected = chosen.float().contiguous(), rejected.float().contiguous()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with failing_write("the reference cache", path, "free space, then run the same command", temporary=tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"sha256": _checksum(chosen, rejected)}  # the shape is in the file's header
        save_file({"chosen": chosen, "rejected": rejected}, str(tmp), metadata=metadata)
        durable_rename(tmp, path)
    return path


def read_cache(path: Path, n: int) -> tuple[dict | None, str]:
    """The stored {"chosen", "rejected"} tensors if the file is whole, of the right shape and matches its
    checksum; else (None, what is wrong with it)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            stored = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError, ValueError) as exc:
        return None, f"unreadable: {' '.join(str(exc).split())[:120]}"
    if sorted(stored) != ["chosen", "rejected"]:
        return None, f"holds {sorted(stored)}, expected chosen and rejected"
    for name, values in stored.items():
        if values.dtype != torch.float32 or tuple(values.shape) != (n,):
            return None, f"{name} is {values.dtype} of shape {tuple(values.shape)}, expected float32 of shape ({n},)"
    if metadata.get("sha256") != _checksum(stored["chosen"], stored["rejected"]):
        return None, "checksum mismatch" if "sha256" in metadata else "no checksum"
    return stored, ""


def attach_reference_logps(examples, chosen, rejected) -> list:
    """Copies of the examples carrying the reference log-probs (so collate carries them into batches); the
    examples given are left as they are."""
    return [replace(ex, ref_chosen_logps=c, ref_rejected_logps=r)
            for ex, c, r in zip(examples, chosen.tolist(), rejected.tolist())]
