"""isdaa.generation.pairs: preference pairs generated from a (tiny random) model and a gold scorer."""

from __future__ import annotations

import json
import math

import pytest
import torch

from isdaa.cli import main
from isdaa.data import load_rows, tokenize_rows
from isdaa.data.prompts import load_prompt_file
from isdaa.errors import InputError
from isdaa.generation import score_logps
from isdaa.generation.pairs import bt_probability, generate_pairs, write_pairs
from isdaa.modeling.tiny import tiny_llama, word_tokenizer

WORDS = [f"w{i}" for i in range(30)] + ["good", "bad"]
PROMPTS = ["w1 w2 w3", "w5", "w7 w8 w9 w10", "good w4", "bad w6 w11", "w12 w13", "w14", "w15 w16 w17 w18 w19"]


def good_count(prompts, completions):
    """A deterministic scorer: how often 'good' occurs minus how often 'bad' does."""
    return [c.split().count("good") - c.split().count("bad") for c in completions]


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    tok = word_tokenizer(WORDS)
    model = tiny_llama(len(tok), seed=0)
    model.eval()
    return model, tok


@pytest.fixture(scope="module")
def model_dir(setup, tmp_path_factory):
    model, tok = setup
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _recomputed(model, tok, rows):
    examples, dropped = tokenize_rows(rows, tok, max_length=10**6, max_prompt_length=None)
    assert dropped == 0 and len(examples) == len(rows)
    chosen = score_logps(model, [e.prompt_ids for e in examples], [e.chosen_ids for e in examples], batch_size=3)
    rejected = score_logps(model, [e.prompt_ids for e in examples], [e.rejected_ids for e in examples], batch_size=5)
    return chosen, rejected


@pytest.mark.parametrize("chat", [False, True])
def test_rows_are_valid_and_behaviour_logps_match(setup, tmp_path, chat):
    model, tok = setup
    stats = {}
    rows = generate_pairs(
        model, tok, PROMPTS, scorer="length", n_per_prompt=4, max_new_tokens=6, seed=3, batch_size=4,
        chat=chat, stats=stats,
    )
    assert rows and stats["n_pairs"] == len(rows) and stats["n_samples"] == 4 * len(PROMPTS)
    assert len(rows) + stats["left_out_identical"] + stats["left_out_empty"] == 2 * len(PROMPTS)
    path = write_pairs(rows, tmp_path / "pairs.jsonl")
    assert not [p for p in tmp_path.iterdir() if p.name != "pairs.jsonl"]  # no temp file left behind
    loaded = load_rows(path)  # the trainer's reader and validator accept every row
    assert len(loaded) == len(rows)
    for row in loaded:
        assert isinstance(row["chosen"], list) == chat
        if chat:
            assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
        assert row["behavior_chosen_logps"] <= 0 and row["behavior_rejected_logps"] <= 0
    chosen, rejected = _recomputed(model, tok, loaded)
    want_c = torch.tensor([r["behavior_chosen_logps"] for r in loaded])
    want_r = torch.tensor([r["behavior_rejected_logps"] for r in loaded])
    torch.testing.assert_close(chosen, want_c, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(rejected, want_r, atol=1e-4, rtol=1e-5)


def test_deterministic_under_seed(setup):
    model, tok = setup
    kw = dict(scorer="length", max_new_tokens=5, batch_size=8)
    a = generate_pairs(model, tok, PROMPTS, seed=1, **kw)
    b = generate_pairs(model, tok, PROMPTS, seed=1, **kw)
    c = generate_pairs(model, tok, PROMPTS, seed=2, **kw)
    assert a == b and a != c


def test_bt_at_zero_temperature_chooses_the_higher_score(setup):
    model, tok = setup
    prompts = PROMPTS * 4
    stats = {}
    rows = generate_pairs(
        model, tok, prompts, scorer=good_count, n_per_prompt=2, max_new_tokens=12, label="bt", bt_temperature=1e-9,
        seed=0, with_scores=True, stats=stats,
    )
    decided = [r for r in rows if r["score_chosen"] != r["score_rejected"]]
    assert len(decided) >= 5  # the random model writes 'good' and 'bad' often enough
    assert all(r["score_chosen"] > r["score_rejected"] for r in decided)
    for r in rows:  # the score columns are the scorer's output on the row's texts
        assert [r["score_chosen"], r["score_rejected"]] == good_count(None, [r["chosen"], r["rejected"]])

    argmax = generate_pairs(
        model, tok, prompts, scorer=good_count, n_per_prompt=2, max_new_tokens=12, label="argmax", seed=0,
        with_scores=True, stats=stats,
    )
    assert argmax and all(r["score_chosen"] > r["score_rejected"] for r in argmax)  # ties are left out
    assert len(argmax) == len(decided) and stats["left_out_ties"] == len(rows) - len(decided)


def test_bt_labels_follow_the_bradley_terry_probability(setup, monkeypatch):
    """With a temperature the label is a draw: higher score chosen about σ(Δ/T) of the time."""
    model, tok = setup
    prompts = PROMPTS * 40

    def scorer(prompts, completions):  # score = number of words: Δ between the two completions varies
        return [0.25 * len(c.split()) for c in completions]

    rows = generate_pairs(model, tok, prompts, scorer=scorer, max_new_tokens=8, bt_temperature=1.0, seed=0, with_scores=True)
    deltas = [r["score_chosen"] - r["score_rejected"] for r in rows if r["score_chosen"] != r["score_rejected"]]
    expected = sum(bt_probability(abs(d), 0.0, 1.0) for d in deltas)
    got = sum(d > 0 for d in deltas)
    sd = math.sqrt(sum(bt_probability(abs(d), 0.0, 1.0) * (1 - bt_probability(abs(d), 0.0, 1.0)) for d in deltas))
    assert len(deltas) > 100 and abs(got - expected) < 4 * sd


def test_bt_probability():
    assert bt_probability(1.0, 1.0, 0.5) == 0.5
    assert bt_probability(2.0, 1.0, 1.0) == pytest.approx(1 / (1 + math.exp(-1)))
    assert bt_probability(2.0, 1.0, 1.0) + bt_probability(1.0, 2.0, 1.0) == pytest.approx(1.0)
    assert bt_probability(1.0, 0.0, 1e-12) == 1.0 and bt_probability(0.0, 1.0, 1e-12) == 0.0  # no overflow


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_per_prompt=1), "n_per_prompt"),
        (dict(label="best"), "label"),
        (dict(bt_temperature=0.0), "bt_temperature"),
        (dict(scorer="no-such-scorer"), "unknown scorer"),
        (dict(scorer="none"), "gold scorer"),
    ],
)
def test_bad_arguments(setup, kwargs, match):
    model, tok = setup
    args = dict(scorer="length", max_new_tokens=4) | kwargs
    with pytest.raises(InputError, match=match):
        generate_pairs(model, tok, PROMPTS, **args)


def test_prompt_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("w1 w2\n\n  w3  \n")
    assert load_prompt_file(txt) == ["w1 w2", "w3"]
    jl = tmp_path / "p.jsonl"
    jl.write_text(json.dumps({"prompt": "w1", "id": 3}) + "\n\n" + json.dumps({"prompt": [{"role": "user", "content": "w2"}]}) + "\n")
    assert load_prompt_file(jl) == ["w1", [{"role": "user", "content": "w2"}]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "w1"}) + "\n" + json.dumps({"text": "w2"}) + "\n")
    with pytest.raises(InputError, match=r"line 2: expected an object with a 'prompt' field"):
        load_prompt_file(bad)
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(InputError, match="no prompts"):
        load_prompt_file(tmp_path / "empty.txt")
    with pytest.raises(InputError, match="does not exist"):
        load_prompt_file(tmp_path / "missing.txt")
    (tmp_path / "p.csv").write_text("a\n")
    with pytest.raises(InputError, match="unsupported file type"):
        load_prompt_file(tmp_path / "p.csv")


def test_cli_writes_pairs(model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "out" / "pairs.jsonl"
    code = main([
        "pairs", "--model", str(model_dir), "--prompts", str(prompts), "--scorer", "length", "--out", str(out),
        "--n-per-prompt", "2", "--label", "bt", "--bt-temperature", "0.5", "--max-new-tokens", "5",
        "--chat", "true", "--progress", "false", "--num-threads", "1",
    ])
    assert code == 0, capsys.readouterr().err
    assert "pairs from 8 prompts" in capsys.readouterr().out
    rows = load_rows(out)
    assert rows and isinstance(rows[0]["prompt"], list)


@pytest.mark.parametrize(
    "args, match",
    [
        (["--prompts", "{missing}"], "does not exist"),
        (["--scorer", "nope"], "unknown scorer"),
        (["--n-per-prompt", "1"], "n_per_prompt"),
        (["--label", "best"], "label"),
        (["--out", "{dir}"], "is a directory"),
        (["--bt-temperature", "-1"], "bt_temperature"),
        (["--model", "{missing}"], "does not exist"),
        (["--colour", "red"], "command line: unknown option --colour"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(model_dir, tmp_path, capsys, args, match):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("w1 w2\n")
    out = tmp_path / "pairs.jsonl"
    base = {"--model": str(model_dir), "--prompts": str(prompts), "--scorer": "length", "--out": str(out)}
    fill = {"{missing}": str(tmp_path / "missing.txt"), "{dir}": str(tmp_path)}
    given = [fill.get(a, a) for a in args]
    argv = ["pairs"]
    for key, value in base.items():
        if key not in given:
            argv += [key, value]
    argv += given + ["--progress", "false", "--num-threads", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and match in err
    assert not out.exists()
