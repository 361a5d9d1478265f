"""`hf-rm:<dir>`: a local transformers sequence-classification model as a gold reward.

The score of a (prompt, completion) pair is logit 0 of the plain text `prompt + completion`, truncated to
`max_length` tokens (keeping the end, where the completion is). No chat template is applied: render
conversational prompts beforehand if the reward model expects one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from isdaa.errors import InputError


def hf_reward_model(path: str, *, batch_size: int = 16, device: str | None = None, max_length: int = 2048):
    """A scorer function backed by the reward model saved in `path` (loaded now, once)."""
    where = Path(path)
    if not (where / "config.json").is_file():
        raise InputError(f"scorer hf-rm:{path}: expected a local reward model directory with config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(where), trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(str(where), trust_remote_code=False, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"scorer hf-rm:{path}: cannot load ({str(exc).splitlines()[0]})") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise InputError(f"scorer hf-rm:{path}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id  # sequence classifiers find the last token with it
    tokenizer.truncation_side = "left"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()

    def score(prompts, completions, **_) -> list[float]:
        texts = [p + c for p, c in zip(prompts, completions)]
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(
                    texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
                ).to(device)
                out.extend(model(**enc).logits[:, 0].float().cpu().tolist())
        return out

    return score
