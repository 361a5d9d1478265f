"""`isdaa eval` on prompt-only files: `.jsonl` / `.json` rows with a `prompt` (a message list or a string) and no
`chosen`; the baseline (`auto`) is then the reference's samples."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import save_tiny_model
from isdaa.cli import main
from isdaa.config import EvalConfig
from isdaa.data.prompts import load_prompts, tokenize_prompts
from isdaa.errors import InputError
from isdaa.eval import evaluate

CHAT = [[{"role": "user", "content": "topic0 w1 w2"}],
        [{"role": "system", "content": "good"}, {"role": "user", "content": "topic3 w7"}]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("policy"))


@pytest.fixture(scope="module")
def tiny(model_dir):
    return AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)


def _jsonl(path, objects):
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


def test_load_prompts_reads_prompt_only_chat_files(tmp_path, tiny):
    _, tok = tiny
    jsonl = _jsonl(tmp_path / "p.jsonl", [{"prompt": m, "id": k} for k, m in enumerate(CHAT)])
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps([{"prompt": m} for m in CHAT]))
    for path in (jsonl, as_json):
        prompts, baselines = load_prompts(str(path))
        assert prompts == CHAT and baselines is None
    ids, texts, _ = tokenize_prompts(tok, prompts, max_prompt_length=64)
    assert texts[0] == "user : topic0 w1 w2 assistant : "
    assert ids[0] == tok(texts[0], add_special_tokens=False)["input_ids"]
    # a preference file is still read as one (its chosen responses are the baseline)
    pairs = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "topic1", "chosen": "good", "rejected": "bad"}])
    assert load_prompts(str(pairs)) == (["topic1"], ["good"])
    # a row with a chosen but no rejected: the preference reader names what is missing
    half = _jsonl(tmp_path / "half.jsonl", [{"prompt": "the cat"}, {"prompt": "a dog", "chosen": "sat"}])
    with pytest.raises(InputError, match=r"half\.jsonl: line 1: missing field 'chosen'"):
        load_prompts(str(half))


def test_eval_on_prompt_only_chat_file_defaults_to_reference_baseline(tmp_path, tiny):
    model, tok = tiny
    path = _jsonl(tmp_path / "chat_prompts.jsonl", [{"prompt": m} for m in CHAT])
    cfg = EvalConfig(prompts=str(path), scorer="length", n_samples=3, max_new_tokens=5, progress=False)
    res = evaluate(cfg, policy_model=model, reference_model=model, tokenizer=tok)
    assert res["baseline"] == "reference" and res["config"]["baseline"] == "reference"
    assert res["n_prompts"] == 2 and res["n_samples"] == 6 and res["kl_k3"] == 0.0
    assert res["baseline_gold_mean"] is not None and 0.0 <= res["win_rate"] <= 1.0
    # no reference: no baseline, no win rate; an explicit 'chosen' is refused in one line
    res = evaluate(cfg, policy_model=model, tokenizer=tok)
    assert res["baseline"] == "none" and res["win_rate"] is None and res["gold_mean"] is not None
    with pytest.raises(InputError, match=r"^baseline: 'chosen' needs chosen responses"):
        evaluate(EvalConfig(prompts=str(path), scorer="length", baseline="chosen", progress=False),
                 policy_model=model, reference_model=model, tokenizer=tok)


def test_cli_eval_on_prompt_only_chat_file(tmp_path, model_dir, capsys):
    path = _jsonl(tmp_path / "chat_prompts.jsonl", [{"prompt": m} for m in CHAT])
    out = tmp_path / "eval.json"
    code = main(["eval", "--policy", str(model_dir), "--reference", str(model_dir),
                 "--prompts", str(path), "--scorer", "length", "--n_samples", "2", "--max_new_tokens", "4",
                 "--progress", "false", "--num_threads", "1", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    saved = json.loads(out.read_text())
    assert saved["baseline"] == "reference" and saved["n_prompts"] == 2 and saved["win_rate"] is not None
