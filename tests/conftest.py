"""Shared fixtures: a tiny word tokenizer on disk and a small learnable preference set (no downloads)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from isdaa.modeling.tiny import tiny_llama, word_tokenizer

torch.set_num_threads(1)

WORDS = [f"w{i}" for i in range(24)] + ["good", "bad", "topic0", "topic1", "topic2", "topic3"]
TINY_INIT = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 4, "max_position_embeddings": 128, "pad_token_id": 0, "bos_token_id": 1,
    "eos_token_id": 2, "tie_word_embeddings": False,
}


def make_pairs(n: int, seed: int = 0) -> list[dict]:
    """Learnable pairs: the chosen completion contains 'good', the rejected one 'bad'."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = f"topic{rng.randrange(4)} " + " ".join(f"w{rng.randrange(24)}" for _ in range(rng.randrange(1, 5)))
        filler = [f"w{rng.randrange(24)}" for _ in range(rng.randrange(1, 4))]
        rows.append({"prompt": prompt, "chosen": " ".join(["good"] + filler), "rejected": " ".join(["bad"] + filler)})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def save_tiny_model(path: Path, seed: int = 0) -> Path:
    """A tiny random Llama over WORDS and its word tokenizer, saved as a local model directory."""
    tok = word_tokenizer(WORDS)
    tiny_llama(len(tok), seed=seed).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer")
    word_tokenizer(WORDS).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", make_pairs(64))


@pytest.fixture
def tiny_config(tokenizer_dir, pairs_file, tmp_path):
    """A TrainConfig for the tiny random Llama on the learnable pairs (overrides as a dict)."""
    from isdaa.config import TrainConfig, load_config

    def make(**overrides):
        base = {
            "output_dir": str(tmp_path / "run"), "seed": 0, "batch_size": 8, "max_steps": 6, "progress": False,
            "num_threads": 1, "model.init": dict(TINY_INIT, vocab_size=len(WORDS) + 8),
            "model.tokenizer": str(tokenizer_dir), "data.train_file": str(pairs_file),
            "data.max_length": 32, "data.max_prompt_length": 16, "optim.lr": 1e-3, "optim.scheduler": "constant",
            "objective.beta": 0.1, "plots": False,  # figures are tested in tests/cli/test_plot.py
        }
        base.update(overrides)
        return load_config(TrainConfig, None, base)

    return make


@pytest.fixture(scope="module")
def sampling_setup():
    """A tiny random Llama over 90 words (more than 50: a leaked top_k = 50 default would show) and three prompts
    of different lengths, for the sampling tests."""
    torch.set_num_threads(1)
    tok = word_tokenizer([f"w{i}" for i in range(90)])
    model = tiny_llama(len(tok), seed=0)
    prompts = [tok(t)["input_ids"] for t in ("w1 w2 w3", "w5", "w7 w8 w9 w10 w11 w12 w13")]
    return model, tok, prompts


@pytest.fixture
def bars_on():
    """transformers' bars on, as in a fresh process (an earlier test may have turned them off), then as they were."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    yield
    if not was_on:
        hf_logging.disable_progress_bar()
