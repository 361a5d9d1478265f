import importlib.util

import pytest
import torch

from isdaa.errors import InputError
from isdaa.generation import get_scorer, register_scorer, registered_scorers
from isdaa.generation.scorers import _REGISTRY


@pytest.fixture
def clean_registry():
    saved = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(saved)


def test_length_scorer():
    s = get_scorer("length")
    assert s(["p", "q"], ["a b c", ""]) == [3.0, 0.0]
    assert s(["p"], ["a b"], completion_ids=[[4, 5, 6, 2]]) == [4.0]


def test_unknown_scorer_lists_names():
    with pytest.raises(InputError) as exc:
        get_scorer("gold-standard")
    msg = str(exc.value)
    assert "gold-standard" in msg and "length" in msg and "hf-rm:" in msg


def test_register_and_kwargs(clean_registry):
    def world(prompts, completions, *, scale=1.0):
        return [scale * len(c) for c in completions]

    register_scorer("lab", world)
    assert "lab" in registered_scorers()
    assert get_scorer("lab")(["x"], ["abcd"]) == [4.0]  # no id kwargs passed to a fn that does not take them
    assert get_scorer("lab", scale=0.5)(["x"], ["abcd"]) == [2.0]
    register_scorer("lab", lambda p, c: [1.0] * len(c))  # re-registration replaces
    assert get_scorer("lab")(["x", "y"], ["a", "b"]) == [1.0, 1.0]
    for bad in ("length", "none", "a:b", ""):
        with pytest.raises(InputError):
            register_scorer(bad, world)
    with pytest.raises(InputError):
        register_scorer("notfn", 3)


def test_output_checked(clean_registry):
    register_scorer("short", lambda p, c: [0.0])
    register_scorer("nan", lambda p, c: [float("nan")] * len(c))
    register_scorer("text", lambda p, c: ["good"] * len(c))
    for name in ("short", "nan", "text"):
        with pytest.raises(InputError, match=name):
            get_scorer(name)(["a", "b"], ["x", "y"])


def test_module_function():
    s = get_scorer("isdaa.generation.scorers:length_scorer")
    assert s(["p"], ["one two"]) == [2.0]
    with pytest.raises(InputError, match="cannot import"):
        get_scorer("no_such_module_xyz:f")
    with pytest.raises(InputError, match="no attribute"):
        get_scorer("isdaa.generation.scorers:nope")


@pytest.mark.skipif(importlib.util.find_spec("vaderSentiment") is not None, reason="vaderSentiment installed")
def test_vader_missing_says_how_to_install():
    with pytest.raises(InputError, match=r"pip install 'isdaa\[sentiment\]'"):
        get_scorer("vader")(["p"], ["great"])


@pytest.mark.skipif(importlib.util.find_spec("vaderSentiment") is None, reason="vaderSentiment not installed")
def test_vader_scores():
    s = get_scorer("vader")
    good, bad = s(["p", "p"], ["what a wonderful happy day", "terrible awful horrible"])
    assert good > 0.5 and bad < -0.5


def test_hf_reward_model(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from isdaa.modeling.tiny import word_tokenizer

    tok = word_tokenizer(["good", "bad", "day", "night"])
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id,
    )
    rm = LlamaForSequenceClassification(cfg).eval()
    rm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    s = get_scorer(f"hf-rm:{tmp_path}", batch_size=2, device="cpu")
    prompts, comps = ["good day ", "bad ", "night "], ["good", "bad night day", "day"]
    got = s(prompts, comps)
    with torch.no_grad():
        want = [rm(**tok(p + c, return_tensors="pt")).logits[0, 0].item() for p, c in zip(prompts, comps)]
    assert got == pytest.approx(want, abs=1e-5)
    with pytest.raises(InputError, match="hf-rm"):
        get_scorer(f"hf-rm:{tmp_path / 'missing'}")


def test_story_gold_is_sentiment_minus_what_the_labels_cannot_see():
    pytest.importorskip("vaderSentiment")
    from isdaa.generation.scorers import ends_a_sentence, repeated_bigram_share

    assert repeated_bigram_share("so happy so happy so happy") == pytest.approx(1 - 2 / 5)  # 5 bigrams, 2 distinct
    assert repeated_bigram_share("She smiled.") == 0.0 and repeated_bigram_share("one") == 0.0
    assert ends_a_sentence('It was over."') and ends_a_sentence("Really?  ") and ends_a_sentence("(Yes!)")
    assert not ends_a_sentence("and then she") and not ends_a_sentence("") and not ends_a_sentence("   ")
    texts = ["She smiled and opened it happily.", "She smiled and opened it happily", "happy happy happy!", ""]
    vader, story = get_scorer("vader"), get_scorer("story")
    expected = [v - (0 if ends_a_sentence(t) else 1) - repeated_bigram_share(t)
                for v, t in zip(vader(["p"] * 4, texts), texts)]
    assert story(["p"] * 4, texts) == pytest.approx(expected)
    assert expected[0] - expected[1] == pytest.approx(1.0)  # the same words cut off cost exactly 1
