"""The benchmark's fixed set-up: model shapes, data shapes, variants, random-token data and the FLOP and padding
counts (see benchmarks/train_throughput.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

VOCAB = 49_152
SPECIALS = 4  # <pad>=0 <bos>=1 <eos>=2 <unk>=3 (isdaa.modeling.tiny.word_tokenizer)

MODELS = {
    # SmolLM2-135M's shape (random init): 134.5M parameters
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, tie_word_embeddings=True),
    # the orientation model of the issue: 4 layers, hidden 256, the same vocabulary (28.4M parameters)
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=False),
}
COMMON_INIT = dict(vocab_size=VOCAB, max_position_embeddings=2048, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                   rms_norm_eps=1e-5, attention_dropout=0.0)

# token lengths (uniform, inclusive); completions get an EOS on top. `var`: the variable-length set of the
# length-grouping measurement (prompts 50-800, completions 10-300)
SHAPES = {"tldr": dict(prompt=(360, 440), completion=(40, 56)), "hh": dict(prompt=(130, 170), completion=(130, 170)),
          "var": dict(prompt=(50, 800), completion=(10, 300))}
MAX_LENGTHS = {"var": (1152, 800)}  # (data.max_length, data.max_prompt_length); others: (1024, 768)

VARIANTS = ("isdaa", "trl-pre", "isdaa-is", "trl-live", "isdaa-ckpt", "isdaa-compile", "isdaa-group", "trl-pre-ckpt")
DEFAULT_VARIANTS = ("isdaa", "trl-pre", "isdaa-is", "trl-live")  # alternating isdaa / TRL
# the isdaa variants' config on top of the plain run
ISDAA_OPTIONS = {"isdaa": {}, "isdaa-is": {"objective.weighting": "is"},
                 "isdaa-ckpt": {"model.gradient_checkpointing": True}, "isdaa-compile": {"model.compile": True},
                 "isdaa-group": {"data.group_by_length": True}}

BATCH, ACCUM, LR, BETA = 4, 1, 1e-6, 0.1




def words(vocab: int = VOCAB) -> list[str]:
    return [f"t{i}" for i in range(vocab - SPECIALS)]  # word i has token id i + SPECIALS


def make_rows(shape: str, n: int, seed: int, length_scale: float = 1.0) -> list[dict]:
    """Random-token pairs; completions start with a space so that TRL's prompt+completion text splits alike."""
    rng = random.Random(seed)
    spec = SHAPES[shape]

    def n_tokens(lo_hi):
        lo, hi = (max(1, round(x * length_scale)) for x in lo_hi)
        return rng.randint(lo, hi)

    def text(k):
        return " ".join(f"t{rng.randrange(VOCAB - SPECIALS)}" for _ in range(k))

    return [{"prompt": text(n_tokens(spec["prompt"])), "chosen": " " + text(n_tokens(spec["completion"])),
             "rejected": " " + text(n_tokens(spec["completion"]))} for _ in range(n)]


def prepare(work: Path, shape: str, n_pairs: int, length_scale: float) -> tuple[Path, Path]:
    """The tokenizer directory (shared) and the JSONL data of a shape (deterministic)."""
    tok_dir = work / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        from isdaa.modeling.tiny import word_tokenizer

        word_tokenizer(words(), chat_roles=False).save_pretrained(tok_dir)
    data = work / f"{shape}-{n_pairs}-{length_scale:g}.jsonl"
    if not data.is_file():
        rows = make_rows(shape, n_pairs, seed=1234, length_scale=length_scale)
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tok_dir, data


def model_init(name: str) -> dict:
    return {**COMMON_INIT, **MODELS[name]}


# the GPU check's random Llama (benchmarks/gpu_check.sh, benchmarks/gpu_trl.py): ~0.67B parameters by default,
# its shape read from the environment so that both trainers build the same model
GPU_SHAPE_DEFAULTS = {"LAYERS": 24, "HIDDEN": 1536, "HEADS": 16, "KV_HEADS": 4, "INTER": 4096}


def gpu_init(env) -> dict:
    """The GPU check's `model.init` from the LAYERS / HIDDEN / HEADS / KV_HEADS / INTER variables of `env`."""
    shape = {k: int(env.get(k, default)) for k, default in GPU_SHAPE_DEFAULTS.items()}
    return dict(COMMON_INIT, hidden_size=shape["HIDDEN"], intermediate_size=shape["INTER"],
                num_hidden_layers=shape["LAYERS"], num_attention_heads=shape["HEADS"],
                num_key_value_heads=shape["KV_HEADS"], tie_word_embeddings=True, max_position_embeddings=2048)



def padding_fraction(examples_in_order, shared: bool) -> float:
    """Pad slots / all slots over the batches of BATCH pairs, in the layout the trainer used: shared prompt
    (prompts to the longest prompt, the 2B completions to the longest completion) or concatenated (2B rows
    to the longest prompt + completion)."""
    pad = slots = 0
    for start in range(0, len(examples_in_order) // BATCH * BATCH, BATCH):
        ex = examples_in_order[start : start + BATCH]
        real = sum(2 * len(e.prompt_ids) * (not shared) + len(e.prompt_ids) * shared + len(e.chosen_ids)
                   + len(e.rejected_ids) for e in ex)
        if shared:
            width = BATCH * max(len(e.prompt_ids) for e in ex) + 2 * BATCH * max(
                max(len(e.chosen_ids), len(e.rejected_ids)) for e in ex)
        else:
            width = 2 * BATCH * max(len(e.prompt_ids) + max(len(e.chosen_ids), len(e.rejected_ids)) for e in ex)
        pad, slots = pad + width - real, slots + width
    return pad / slots if slots else 0.0


def train_flops(examples, init: dict) -> float:
    """Useful matmul FLOPs of training (forward + backward = 3 forwards) on `examples`, counting each prompt
    once, no padding, the LM head only on response tokens, attention scores and values (causal); the
    recomputation of activation checkpointing is not counted (it is overhead, not useful work)."""
    h, inter, layers, vocab = init["hidden_size"], init["intermediate_size"], init["num_hidden_layers"], init["vocab_size"]
    kv = h // init["num_attention_heads"] * init["num_key_value_heads"]
    per_token = 2 * layers * (2 * h * h + 2 * h * kv + 3 * h * inter)  # q, o; k, v; gate, up, down
    total = 0.0
    for e in examples:
        p, c1, c2 = len(e.prompt_ids), len(e.chosen_ids), len(e.rejected_ids)
        attended = p * (p + 1) / 2 + sum(c * p + c * (c + 1) / 2 for c in (c1, c2))  # (query, key) pairs
        total += per_token * (p + c1 + c2) + 4 * layers * h * attended + 2 * h * vocab * (c1 + c2)
    return 3 * total
