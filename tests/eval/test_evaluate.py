import json

import pytest
import torch

from isdaa.config import EvalConfig, load_config
from isdaa.errors import InputError
from isdaa.eval import evaluate
from isdaa.modeling.tiny import tiny_llama, word_tokenizer

WORDS = "the cat dog sat ran on a mat rug big small red blue".split()
PROMPTS = ["the cat sat", "a big dog ran on the rug", "red"]  # mixed lengths
ROWS = [
    {"prompt": "the cat sat", "chosen": "on the mat", "rejected": "ran"},
    {"prompt": "a big dog ran on the rug", "chosen": "red", "rejected": "blue rug"},
    {"prompt": "red", "chosen": "big small cat dog", "rejected": "mat"},
]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    tok = word_tokenizer(WORDS)
    return tiny_llama(len(tok), seed=0), tok


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_policy_equals_reference(tiny, tmp_path):
    model, tok = tiny
    data = _jsonl(tmp_path / "pairs.jsonl", ROWS)
    out = tmp_path / "res" / "eval.json"
    cfg = EvalConfig(prompts=data, scorer="length", output=str(out), n_samples=3, max_new_tokens=10, batch_size=4, progress=False)
    res = evaluate(cfg, policy_model=model, reference_model=model, tokenizer=tok)
    assert res["kl_k1"] == 0.0 and res["kl_k3"] == 0.0 and res["sqrt_kl"] == 0.0
    assert res["n_prompts"] == 3 and res["n_samples"] == 9 and res["kl_biased"] is False
    assert res["gold_mean"] == pytest.approx(res["length_mean"], abs=1e-12)
    # chosen baseline lengths: tokens + EOS
    assert res["baseline_gold_mean"] == pytest.approx((4 + 2 + 5) / 3)
    assert 0.0 <= res["win_rate"] <= 1.0 and res["win_rate_se"] is not None
    saved = json.loads(out.read_text())
    assert saved["kl_k3"] == 0.0 and saved["gold_mean"] == res["gold_mean"]
    assert [p.name for p in out.parent.iterdir()] == ["eval.json"]  # no temp files left
    # same seed → same numbers
    again = evaluate(cfg, policy_model=model, reference_model=model, tokenizer=tok)
    assert again["gold_mean"] == res["gold_mean"] and again["win_rate"] == res["win_rate"]


def test_from_paths_different_reference(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path / "policy")
    tok.save_pretrained(tmp_path / "policy")
    tiny_llama(len(tok), seed=1).save_pretrained(tmp_path / "ref")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n\n")
    cfg = load_config(
        EvalConfig,
        overrides={
            "policy": str(tmp_path / "policy"), "reference": str(tmp_path / "ref"), "prompts": str(prompts),
            "scorer": "length", "baseline": "reference", "n_samples": 4, "max_new_tokens": 6, "temperature": 0.7,
            "progress": False, "num_threads": 1,
        },
    )
    res = evaluate(cfg)
    assert res["kl_k3"] > 0 and res["kl_k3_se"] > 0 and res["kl_k1_se"] > 0
    assert res["sqrt_kl"] == pytest.approx(res["kl_k3"] ** 0.5)
    assert res["kl_biased"] is True
    assert res["n_samples"] == 12 and res["baseline_gold_mean"] is not None and res["win_rate"] is not None



def test_policy_tokenizer_without_pad_token(tiny, tmp_path):
    """The one pad rule: a tokenizer without a pad token is refused (naming pad_token) unless pad_token is set."""
    model, tok = tiny
    policy = tmp_path / "policy"
    model.save_pretrained(policy)
    nopad = word_tokenizer(WORDS)
    nopad.pad_token = None
    nopad.save_pretrained(policy)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "eval.json"
    options = dict(policy=str(policy), prompts=str(prompts), n_samples=2, max_new_tokens=4, progress=False,
                   num_threads=1, output=str(out))
    with pytest.raises(InputError, match=r"^policy: .* has no pad token; set pad_token \(e\.g\. --pad_token"):
        evaluate(EvalConfig(**options))
    assert not out.exists()
    res = evaluate(EvalConfig(pad_token=tok.eos_token, **options))
    assert res["n_prompts"] == 3 and res["n_samples"] == 6 and res["length_mean"] > 0
    assert json.loads(out.read_text())["config"]["pad_token"] == tok.eos_token

def test_no_scorer_no_reference(tiny):
    model, tok = tiny
    cfg = EvalConfig(n_samples=2, max_new_tokens=4, progress=False, max_prompts=2)
    res = evaluate(cfg, policy_model=model, tokenizer=tok, prompts=PROMPTS)
    assert res["n_prompts"] == 2 and res["kl_k1"] is None and res["gold_mean"] is None and res["win_rate"] is None
    assert res["length_mean"] > 0


def test_input_errors_before_anything_is_written(tiny, tmp_path):
    model, tok = tiny
    out = tmp_path / "o.json"
    txt = tmp_path / "p.txt"
    txt.write_text("the cat\n")
    cases = [
        (dict(prompts=str(txt), scorer="nope"), "unknown scorer"),
        (dict(prompts=str(txt), scorer="length", baseline="chosen"), "chosen"),
        (dict(prompts=str(txt), scorer="length", baseline="reference"), "reference"),
        (dict(prompts=str(tmp_path / "missing.jsonl")), "does not exist"),
        (dict(prompts=str(txt), baseline="best"), "baseline"),
    ]
    for kwargs, match in cases:
        with pytest.raises(InputError, match=match):
            evaluate(EvalConfig(output=str(out), progress=False, **kwargs), policy_model=model, tokenizer=tok)
    with pytest.raises(InputError, match="policy"):
        evaluate(EvalConfig(policy=str(tmp_path / "nomodel"), prompts=str(txt), output=str(out)))
    assert not out.exists()


def test_prompt_tokenization_matches_data_module(tiny, tmp_path):
    from isdaa.data.reading import load_rows
    from isdaa.data.tokenization import tokenize_rows
    from isdaa.data.prompts import load_prompts, tokenize_completions, tokenize_prompts

    _, tok = tiny
    conv = [
        {"prompt": [{"role": "user", "content": "the cat sat"}], "chosen": [{"role": "assistant", "content": "on a mat"}],
         "rejected": [{"role": "assistant", "content": "ran"}]},
    ]
    for rows in (ROWS, conv):
        path = _jsonl(tmp_path / "rows.jsonl", rows)
        prompts, chosen = load_prompts(path)
        ids, texts, truncated = tokenize_prompts(tok, prompts, max_prompt_length=512)
        examples, _ = tokenize_rows(load_rows(path), tok, max_length=1024, max_prompt_length=512)
        assert ids == [e.prompt_ids for e in examples] and truncated == 0
        assert tokenize_completions(tok, chosen, tok.eos_token_id) == [e.chosen_ids for e in examples]
    assert texts[0].startswith("user : the cat sat")
    ids, _, truncated = tokenize_prompts(tok, ["a big dog ran on the rug"], max_prompt_length=2)
    assert truncated == 1 and tok.decode(ids[0]) == "the rug"
