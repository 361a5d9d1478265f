"""A tiny random Llama over 90 words (more than 50: a leaked top_k = 50 default would show) and three prompts of
different lengths, shared by the sampling tests."""

import pytest
import torch

from isdaa.modeling.tiny import tiny_llama, word_tokenizer

WORDS = [f"w{i}" for i in range(90)]


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    tok = word_tokenizer(WORDS)
    model = tiny_llama(len(tok), seed=0)
    prompts = [tok(t)["input_ids"] for t in ("w1 w2 w3", "w5", "w7 w8 w9 w10 w11 w12 w13")]
    return model, tok, prompts
