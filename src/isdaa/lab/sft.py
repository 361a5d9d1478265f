"""The lab's reference policy: a tiny Llama fitted to the world's base distribution by plain SFT.

A cross-entropy loop (AdamW, cosine schedule) on fresh samples from the base distribution — every step
sees new data, so the model converges to the base process rather than to a finite sample. This is the
"plain SFT loop over the same model classes" the design allows; preference training always goes through
`isdaa.train`.

Fit quality is measured exactly: on held-out base samples y ~ p_base(·|x),
    KL(base ‖ ref) = E[log p_base(y|x) − log π_ref(y|x)]   (per sequence, nats)
which is also the gap between the reference's NLL and the base entropy. The model and its tokenizer are
saved with `save_pretrained` to `<out>/reference/`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from isdaa.lab.world import World
from isdaa.modeling.tiny import tiny_llama, word_tokenizer


def world_tokenizer(world: World):
    """A word-level tokenizer over the world's vocabulary (prompt words, response words, special tokens)."""
    return word_tokenizer(world.vocabulary())


def encode_pairs(tokenizer, prompts: list[str], responses: list[list[str]]):
    """Right-padded (input_ids, attention_mask, completion_mask) for prompt + response + EOS.

    Prompt and response are tokenised separately (as the trainer does); the completion mask marks the
    response words and the EOS."""
    seqs, comp = [], []
    for prompt, words in zip(prompts, responses):
        p_ids = tokenizer(prompt)["input_ids"]  # as isdaa.data tokenises a plain prompt
        r_ids = tokenizer.convert_tokens_to_ids(list(words)) + [tokenizer.eos_token_id]
        seqs.append(p_ids + r_ids)
        comp.append([0] * len(p_ids) + [1] * len(r_ids))
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    cm = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, c) in enumerate(zip(seqs, comp)):
        ids[i, : len(s)] = torch.tensor(s)
        att[i, : len(s)] = 1
        cm[i, : len(c)] = torch.tensor(c)
    return ids, att, cm


def response_logps(model, input_ids, attention_mask, completion_mask) -> torch.Tensor:
    """Summed log-probs of the completion tokens, (N,)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (lp * completion_mask[:, 1:]).sum(-1)


def _batch(world: World, rng: np.random.Generator, prompts: list[str], n: int):
    chosen = rng.choice(len(prompts), size=n)
    ps = [prompts[i] for i in chosen]
    rs = []
    for i in range(len(prompts)):
        m = int((chosen == i).sum())
        if m:
            rs.append(iter(world.sample(prompts[i], m, rng)))
        else:
            rs.append(iter(()))
    return ps, [next(rs[i]) for i in chosen]


@torch.no_grad()
def fit_quality(model, tokenizer, world: World, *, n: int = 4000, seed: int = 12345) -> dict:
    """KL(base‖ref) per sequence and per token on fresh base samples over all prompts."""
    rng = np.random.default_rng(seed)
    prompts = world.prompts()
    ps, rs = _batch(world, rng, prompts, n)
    model.eval()
    ref = []
    for s in range(0, n, 512):
        ids, att, cm = encode_pairs(tokenizer, ps[s : s + 512], rs[s : s + 512])
        ref.append(response_logps(model, ids, att, cm))
    ref = torch.cat(ref).double().numpy()
    base = np.array([world.base_logp(p, r) for p, r in zip(ps, rs)])
    gap = base - ref
    tokens = sum(len(r) + 1 for r in rs)
    return {
        "kl_base_ref": float(gap.mean()),
        "kl_base_ref_se": float(gap.std(ddof=1) / math.sqrt(n)),
        "kl_base_ref_per_token": float(gap.sum() / tokens),
        "base_entropy": float(-base.mean()),
        "ref_nll": float(-ref.mean()),
        "n": n,
    }


def _fit(model, tokenizer, world: World, *, steps: int, batch_size: int, lr: float, seed: int) -> None:
    """The SFT loop: AdamW with a cosine schedule (to 5% of lr), a fresh base batch every step."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    prompts = world.prompts()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    model.train()
    for _ in range(steps):
        ps, rs = _batch(world, rng, prompts, batch_size)
        ids, att, cm = encode_pairs(tokenizer, ps, rs)
        lp = response_logps(model, ids, att, cm)
        loss = -lp.sum() / cm.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()


def train_reference(
    world: World,
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    steps: int = 600,
    batch_size: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
    progress=print,
) -> dict:
    """SFT a tiny Llama on the base distribution; save it (+ tokenizer) to `<out_dir>/reference/`.

    Returns a dict with the path and the fit quality (`fit_quality`)."""
    out = Path(out_dir) / "reference"
    t0 = time.time()
    tokenizer = world_tokenizer(world)
    model = tiny_llama(
        len(tokenizer),
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_positions=64,
        seed=seed,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    _fit(model, tokenizer, world, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    quality = fit_quality(model, tokenizer, world, seed=seed + 12345)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {"path": str(out), "steps": steps, "batch_size": batch_size, "lr": lr,
            "hidden_size": hidden_size, "num_layers": num_layers, "seconds": time.time() - t0, **quality}
    (out / "sft_info.json").write_text(json.dumps(info, indent=2))
    if progress:
        progress(
            f"reference: SFT {steps} steps in {info['seconds']:.0f}s, KL(base‖ref) = "
            f"{quality['kl_base_ref']:.3f} ± {quality['kl_base_ref_se']:.3f} nats/sequence "
            f"(base entropy {quality['base_entropy']:.2f})"
        )
    return info
