"""Sampling completions from a causal LM and scoring them teacher-forced.

`sample_completions` calls `model.generate` with a generation config built here from scratch: the model's own
`generation_config` (which may carry top_k, repetition_penalty, suppressed tokens, ... from a checkpoint) is
swapped out for the duration of the call, and transformers' global top_k = 50 default is disabled
(`top_k=0`). So at temperature 1 and top_p 1 the tokens are drawn from the plain model distribution and
`log π_θ(y|x)` is exactly the teacher-forced log-prob `score_logps` computes — which is what the KL
estimators need. Other temperature / top_p values still sample correctly but then the samples are not
from π_θ (callers flag the KL as biased).

A completion is the generated tokens up to and including the first EOS (any of the tokenizer's and the
model's EOS ids), or all `max_new_tokens` tokens when no EOS was produced (`finished=False`). Sequences are
therefore draws from the distribution of responses truncated at `max_new_tokens`; the KL estimated on them
is the KL between the two models' truncated-response distributions.

Prompts of mixed lengths are left-padded for generation (position ids follow the attention mask).
Determinism: the global torch RNG is forked, seeded with `seed`, and restored afterwards, so results depend
only on (seed, batch_size, inputs, model) and the caller's RNG stream is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from isdaa.data.collate import pad_ids
from isdaa.modeling.logprobs import cache_argument, sequence_logps
from isdaa.modeling.modes import eval_mode
from isdaa.modeling.prompt_cache import prefill

__all__ = ["Sample", "sample_completions", "score_logps", "eos_token_ids"]


@dataclass
class Sample:
    prompt_index: int  # index into the prompt list
    sample_index: int  # j-th of the n completions of that prompt
    completion_ids: list[int]  # generated ids up to and including EOS, no padding
    text: str  # decoded with skip_special_tokens=True
    finished: bool  # True when the completion ends with EOS (False: cut at max_new_tokens)
    sampled_logp: float | None = None  # Σ log softmax(generate's processed scores) at the sampled tokens (output_scores=True)


def _base(model):
    """The module that owns `generate` / `generation_config` (PEFT wraps it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def eos_token_ids(model, tokenizer) -> list[int]:
    """EOS ids that end a completion: the tokenizer's plus the model generation config's (e.g. end-of-turn)."""
    ids: list[int] = []
    for value in (getattr(tokenizer, "eos_token_id", None), getattr(getattr(_base(model), "generation_config", None), "eos_token_id", None)):
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and int(v) not in ids:
                ids.append(int(v))
    if not ids:
        raise ValueError("neither the tokenizer nor the model's generation config defines an EOS token")
    return ids


def _fork_rng(device: torch.device):
    """Fork the CPU RNG and, for an accelerator, the RNG of the model's device only."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    index = device.index
    if index is None:
        index = torch.get_device_module(device.type).current_device()
    return torch.random.fork_rng(devices=[index], device_type=device.type)


def sample_completions(
    model,
    tokenizer,
    prompt_ids: list[list[int]],
    *,
    n: int = 1,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    output_scores: bool = False,
    shared_prefill: bool = False,
) -> list[Sample]:
    """Draw `n` completions for each prompt (token id lists), ordered prompt by prompt.

    Returns `len(prompt_ids) * n` Samples. With `output_scores=True` each Sample also carries the log-prob
    generate itself sampled from (a check of the generation config; costs (B, V) memory per step).
    `shared_prefill=True`: isdaa's own decoding loop (`_sample_shared`) instead of `generate` — each prompt is run
    once for its n samples and finished rows leave the batch; the same distribution, another random stream;
    `batch_size` counts samples (batch_size // n prompts per group); `sampled_logp` is always filled.
    """
    if n < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("n, max_new_tokens and batch_size must be >= 1")
    for i, p in enumerate(prompt_ids):
        if len(p) == 0:
            raise ValueError(f"prompt {i} has no tokens")
    base = _base(model)
    device = next(model.parameters()).device
    eos = eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    gen_config = _generation_config(temperature, top_p, max_new_tokens, eos, pad_id, output_scores)
    eos_set = set(eos)
    jobs = [(i, j) for i in range(len(prompt_ids)) for j in range(n)]
    samples: list[Sample] = []
    saved_config = base.generation_config
    try:
        base.generation_config = GenerationConfig()  # no checkpoint defaults leak into the sampling
        with _fork_rng(device), torch.no_grad(), eval_mode(model):
            torch.manual_seed(seed)
            if shared_prefill:
                return _sample_shared(model, tokenizer, prompt_ids, n, max(1, batch_size // n), eos, pad_id,
                                      _logits_processors(temperature, top_p), max_new_tokens, progress)
            starts = range(0, len(jobs), batch_size)
            for start in tqdm(starts, desc="sampling", disable=not progress, leave=False):
                chunk = jobs[start : start + batch_size]
                ids, mask = pad_ids([prompt_ids[i] for i, _ in chunk], pad_id, left=True)
                ids, mask = ids.to(device), mask.to(device)
                out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_config)
                samples += _chunk_samples(tokenizer, chunk, out, ids.shape[1], eos_set, output_scores)
    finally:
        base.generation_config = saved_config
    return samples


def _logits_processors(temperature: float, top_p: float) -> LogitsProcessorList:
    """transformers' temperature and top-p warpers, as `generate` applies them for these two settings."""
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(float(temperature)))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(float(top_p)))
    return processors


def _sample_shared(model, tokenizer, prompt_ids, n: int, group: int, eos: list[int], pad_id: int,
                   processors: LogitsProcessorList, max_new_tokens: int, progress: bool) -> list[Sample]:
    """Ancestral sampling, `group` prompts at a time: each prompt prefilled once (`prefill`), its cache repeated
    for its n rows; a row leaves the batch (and the cache) at its first EOS."""
    samples: list[Sample] = []
    eos_t = torch.tensor(eos, device=next(model.parameters()).device)
    kw = cache_argument(model)
    for start in tqdm(range(0, len(prompt_ids), group), desc="sampling", disable=not progress, leave=False):
        indices = list(range(start, min(start + group, len(prompt_ids))))
        mask, cache, logits = prefill(model, [prompt_ids[i] for i in indices], pad_id)
        cache.batch_repeat_interleave(n)
        mask, logits = mask.repeat_interleave(n, 0), logits.repeat_interleave(n, 0)
        alive = torch.arange(len(indices) * n, device=mask.device)  # the jobs still decoding
        tokens = torch.full((len(alive), max_new_tokens), pad_id, dtype=torch.long, device=mask.device)
        logps = torch.zeros(len(alive), dtype=torch.float64, device=mask.device)
        lengths = torch.zeros(len(alive), dtype=torch.long, device=mask.device)
        for t in range(max_new_tokens):
            step_logp = processors(tokens[alive, :t], logits).float().log_softmax(-1)
            token = torch.multinomial(step_logp.exp(), 1).squeeze(-1)
            tokens[alive, t], lengths[alive] = token, t + 1
            logps[alive] += step_logp.gather(-1, token[:, None]).squeeze(-1).double()
            keep = ~torch.isin(token, eos_t)
            if t == max_new_tokens - 1 or not bool(keep.any()):
                break
            if not bool(keep.all()):
                alive, token, mask = alive[keep], token[keep], mask[keep]
                cache.batch_select_indices(keep.nonzero().squeeze(-1))
            mask = torch.cat([mask, mask.new_ones(len(alive), 1)], 1)
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1,
                        use_cache=True, logits_to_keep=1, **{kw: cache})
            logits = out.logits[:, -1]
        samples += _shared_samples(tokenizer, indices, n, tokens.cpu(), lengths.cpu(), logps.cpu(), set(eos))
    return samples


def _shared_samples(tokenizer, indices, n, tokens, lengths, logps, eos_set) -> list[Sample]:
    """The Samples of one group of `_sample_shared` (row r: prompt indices[r // n], its (r % n)-th sample)."""
    out = []
    for r in range(len(indices) * n):
        completion = tokens[r, : int(lengths[r])].tolist()
        out.append(Sample(prompt_index=indices[r // n], sample_index=r % n, completion_ids=completion,
                          text=tokenizer.decode(completion, skip_special_tokens=True),
                          finished=completion[-1] in eos_set, sampled_logp=float(logps[r])))
    return out


def _generation_config(temperature, top_p, max_new_tokens, eos: list[int], pad_id: int, output_scores: bool):
    """Plain ancestral sampling, built from scratch (no checkpoint or library defaults such as top_k = 50)."""
    return GenerationConfig(
        do_sample=True,
        temperature=float(temperature),
        top_p=float(top_p),
        top_k=0,  # transformers' default is 50: it would truncate the distribution
        num_beams=1,
        max_new_tokens=int(max_new_tokens),
        eos_token_id=eos,
        pad_token_id=pad_id,
        use_cache=True,
        return_dict_in_generate=True,
        output_scores=output_scores,
    )


def _chunk_samples(tokenizer, chunk: list[tuple[int, int]], out, prompt_width: int, eos_set: set[int],
                   output_scores: bool) -> list[Sample]:
    """The Samples of one `generate` call over `chunk` ((prompt index, sample index) per row): each completion
    cut after its first EOS."""
    generated = out.sequences[:, prompt_width:].cpu()
    logps = None
    if output_scores:
        steps = torch.stack([s.float().log_softmax(-1).cpu() for s in out.scores], 1)  # (B, T, V)
        logps = steps.gather(-1, generated[:, : steps.shape[1], None]).squeeze(-1)  # (B, T)
    samples = []
    for k, (i, j) in enumerate(chunk):
        row = generated[k].tolist()
        end = next((t for t, tok in enumerate(row) if tok in eos_set), None)
        completion = row if end is None else row[: end + 1]
        samples.append(
            Sample(
                prompt_index=i,
                sample_index=j,
                completion_ids=completion,
                text=tokenizer.decode(completion, skip_special_tokens=True),
                finished=end is not None,
                sampled_logp=None if logps is None else float(logps[k, : len(completion)].double().sum()),
            )
        )
    return samples


def score_logps(
    model,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    *,
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "scoring",
) -> torch.Tensor:
    """Summed teacher-forced log-probs (N,) fp32 on CPU of completion_ids[k] given prompt_ids[k].

    Uses `isdaa.modeling.logprobs.sequence_logps` on right-padded prompt+completion rows, batched by length.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts for {len(completion_ids)} completions")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    for k, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        if len(p) == 0 or len(c) == 0:
            raise ValueError(f"row {k}: prompt and completion need at least one token each")
    device = next(model.parameters()).device
    order = sorted(range(len(prompt_ids)), key=lambda k: len(prompt_ids[k]) + len(completion_ids[k]), reverse=True)
    out = torch.zeros(len(prompt_ids), dtype=torch.float32)
    with torch.no_grad(), eval_mode(model):
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
            idx = order[start : start + batch_size]
            width = max(len(prompt_ids[k]) + len(completion_ids[k]) for k in idx)
            ids = torch.zeros((len(idx), width), dtype=torch.long)
            attn = torch.zeros_like(ids)
            comp = torch.zeros_like(ids)
            for r, k in enumerate(idx):
                p, c = prompt_ids[k], completion_ids[k]
                ids[r, : len(p) + len(c)] = torch.tensor(list(p) + list(c), dtype=torch.long)
                attn[r, : len(p) + len(c)] = 1
                comp[r, len(p) : len(p) + len(c)] = 1
            summed, _ = sequence_logps(model, ids.to(device), attn.to(device), comp.to(device))
            out[torch.tensor(idx)] = summed.float().cpu()
    return out
