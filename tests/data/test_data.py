"""Tests for isdaa.data: reading, validation, tokenisation/truncation, collation, bad-input messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from isdaa.data import Example, collate, length, load_rows, tokenize_rows, validate_rows
from isdaa.errors import InputError
from isdaa.modeling.tiny import word_tokenizer

BAD = Path(__file__).resolve().parents[1] / "bad_inputs"
CASES = json.loads((BAD / "cases.json").read_text())
OPTIONS = json.loads((BAD / "options.json").read_text())
WORDS = "the cat sat on a mat dog ran far away hello hi bye good bad one two three four five six".split()

ROWS = [
    {"prompt": "the cat sat on", "chosen": "the mat", "rejected": "the dog", "weight": 1.0},
    {"prompt": "one two", "chosen": "three four", "rejected": "five six", "weight": 0.5},
    {"prompt": "hello", "chosen": "hi", "rejected": "bye", "weight": 0.0},
]


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer(WORDS)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---- bad inputs: one fixture file per case, message checked against the manifest ----


def test_manifest_covers_every_fixture():
    on_disk = {p.name for p in BAD.iterdir()} - {"cases.json", "options.json"}
    assert on_disk == set(CASES)
    assert len(CASES) >= 15
    assert set(OPTIONS) <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tok):
    path = BAD / name
    with pytest.raises(InputError) as info:
        rows = load_rows(path)
        if name in OPTIONS:
            tokenize_rows(rows, tok, source=str(path), **OPTIONS[name])
    msg = str(info.value)
    assert CASES[name] in msg
    assert "\n" not in msg and "\r" not in msg
    assert name in msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file or directory"):
        load_rows(path)


def test_extra_columns_allowed_when_named(tmp_path):
    path = _write_jsonl(tmp_path / "extra.jsonl", [dict(ROWS[0], id="a1"), dict(ROWS[1], id="a2")])
    with pytest.raises(InputError, match=r"line 1: unknown column 'id'"):
        load_rows(path)
    rows = load_rows(path, extra_columns=("id",))
    assert [r["id"] for r in rows] == ["a1", "a2"]


def test_tiny_positive_logps_rounding_is_allowed(tmp_path):
    row = dict(ROWS[0], ref_chosen_logps=5e-5, ref_rejected_logps=-2.0)
    (r,) = load_rows(_write_jsonl(tmp_path / "ok.jsonl", [row]))
    assert r["ref_chosen_logps"] == 0.0 and r["ref_rejected_logps"] == -2.0


def test_blank_lines_skipped_and_lines_counted(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(InputError, match=r"gaps\.jsonl: line 3: missing field 'chosen'"):
        load_rows(path)


# ---- good path: formats ----


def test_all_formats_load_the_same_rows(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = _write_jsonl(tmp_path / "d.jsonl", ROWS)
    as_json = tmp_path / "d.json"
    as_json.write_text(json.dumps(ROWS))
    lines_in_json = tmp_path / "lines.json"
    lines_in_json.write_text(jsonl.read_text())
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet)
    ds_dir = tmp_path / "ds"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(ds_dir))
    dd_dir = tmp_path / "dd"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])}
    ).save_to_disk(str(dd_dir))

    expected = load_rows(jsonl)
    assert expected == ROWS
    for path in (as_json, lines_in_json, parquet, ds_dir, dd_dir):
        assert load_rows(path) == expected, path


def test_parquet_nulls_count_as_absent(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [dict(ROWS[0], ref_chosen_logps=-1.0, ref_rejected_logps=-2.0), dict(ROWS[1])]
    path = tmp_path / "partial.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)  # row 2 gets nulls for the ref columns
    with pytest.raises(InputError, match=r"row 2: column 'ref_chosen_logps' is missing here but given in row 1"):
        load_rows(path)


# ---- good path: conversational rows ----


CHAT_ROWS = [
    {
        "prompt": [{"role": "system", "content": "good"}, user("hello cat")],
        "chosen": [assistant("hi the cat")],
        "rejected": [assistant("bye")],
    },
    {"prompt": [user("one two")], "chosen": [assistant("three four")], "rejected": [assistant("five six")]},
]


def test_conversational_rows_render_through_chat_template(tok):
    examples, dropped = tokenize_rows(CHAT_ROWS, tok, max_length=64, max_prompt_length=32)
    assert dropped == 0
    for row, ex in zip(CHAT_ROWS, examples):
        text = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        assert text.endswith("assistant : ")
        assert ex.prompt_ids == tok(text, add_special_tokens=False)["input_ids"]
        direct = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
        assert ex.prompt_ids == direct["input_ids"]
        for key in ("chosen", "rejected"):
            content_ids = tok(row[key][0]["content"], add_special_tokens=False)["input_ids"]
            assert getattr(ex, f"{key}_ids") == content_ids + [tok.eos_token_id]


def test_implicit_prompt_is_the_shared_prefix(tmp_path, tok):
    system = {"role": "system", "content": "good"}
    rows = [
        {"chosen": [system, user("hello"), assistant("hi")], "rejected": [system, user("hello"), assistant("bye")]},
        {"prompt": "", "chosen": [user("one"), assistant("two")], "rejected": [user("one"), assistant("three")]},
    ]
    loaded = load_rows(_write_jsonl(tmp_path / "implicit.jsonl", rows))
    assert loaded[0] == {"prompt": [system, user("hello")], "chosen": [assistant("hi")], "rejected": [assistant("bye")]}
    assert loaded[1]["prompt"] == [user("one")]
    assert validate_rows(loaded) == loaded  # normalised rows validate to themselves
    examples, _ = tokenize_rows(loaded, tok, max_length=64, max_prompt_length=32)
    assert examples[1].prompt_ids == tok("user : one assistant : ", add_special_tokens=False)["input_ids"]


def test_conversational_rows_need_a_chat_template(tok):
    plain = word_tokenizer(WORDS)
    plain.chat_template = None
    with pytest.raises(InputError, match=r"data\.jsonl: rows are conversational but the tokenizer has no chat templ"):
        tokenize_rows(CHAT_ROWS, plain, max_length=64, max_prompt_length=32, source="data.jsonl")


def test_chat_template_failure_names_the_row():
    strict = word_tokenizer(WORDS)
    strict.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "{{ m['content'] }} {% endfor %}"
    )
    with pytest.raises(InputError, match=r"d\.jsonl: row 1: field 'prompt': the chat template failed \(no system role"):
        tokenize_rows(CHAT_ROWS, strict, max_length=64, max_prompt_length=32, source="d.jsonl")


# ---- tokenisation and truncation ----


def test_plain_rows_tokenise_prompt_and_completions_separately(tok):
    from tokenizers.processors import TemplateProcessing

    with_bos = word_tokenizer(WORDS)
    with_bos.backend_tokenizer.post_processor = TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", with_bos.bos_token_id)]
    )
    examples, dropped = tokenize_rows(ROWS, with_bos, max_length=64, max_prompt_length=32)
    assert dropped == 0
    eos, bos = with_bos.eos_token_id, with_bos.bos_token_id
    for row, ex in zip(ROWS, examples):
        assert ex.prompt_ids[0] == bos and ex.prompt_ids == with_bos(row["prompt"])["input_ids"]
        assert ex.chosen_ids == tok(row["chosen"], add_special_tokens=False)["input_ids"] + [eos]
        assert ex.rejected_ids == tok(row["rejected"], add_special_tokens=False)["input_ids"] + [eos]
        assert bos not in ex.chosen_ids
        assert ex.weight == row["weight"] and ex.ref_chosen_logps is None


def test_truncation_keeps_prompt_end_and_completion_start(tok):
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    rows = [
        {"prompt": "one two three four five six", "chosen": "the cat sat on a mat", "rejected": "the dog ran far"},
        # completions differ only after the cut: identical once truncated -> dropped
        {"prompt": "one two three four", "chosen": "the cat sat on", "rejected": "the cat sat away"},
    ]
    examples, dropped = tokenize_rows(rows, tok, max_length=7, max_prompt_length=4)
    assert dropped == 1 and len(examples) == 1
    ex = examples[0]
    assert ex.prompt_ids == ids("three four five six")  # the END of the prompt
    assert ex.chosen_ids == ids("the cat sat")  # the START of the completion, EOS cut off
    assert ex.rejected_ids == ids("the dog ran")
    assert length(ex) == 7

    # no prompt limit: a prompt that fills max_length is dropped and counted
    rows.append({"prompt": "hello", "chosen": "hi", "rejected": "bye"})
    examples, dropped = tokenize_rows(rows, tok, max_length=4, max_prompt_length=None)
    assert dropped == 2 and len(examples) == 1
    assert examples[0].chosen_ids == ids("hi") + [tok.eos_token_id]


def test_every_row_dropped_is_an_error(tok):
    rows = [{"prompt": "one two three four", "chosen": "the cat", "rejected": "the dog"}]
    with pytest.raises(InputError, match=r"x\.jsonl: every row's prompt fills max_length=4 .*raise max_length"):
        tokenize_rows(rows, tok, max_length=4, max_prompt_length=None, source="x.jsonl")
    with pytest.raises(InputError, match=r"every row was dropped at max_length=4.*1 whose prompt.*1 whose chosen"):
        tokenize_rows(
            rows + [{"prompt": "one", "chosen": "the cat sat on", "rejected": "the cat sat away"}],
            tok, max_length=4, max_prompt_length=None, source="x.jsonl",
        )
    with pytest.raises(InputError, match=r"max_length=1: expected an integer >= 2"):
        tokenize_rows(rows, tok, max_length=1, max_prompt_length=None)


def test_tokenize_rows_needs_eos():
    no_eos = word_tokenizer(WORDS)
    no_eos.eos_token = None
    with pytest.raises(InputError, match=r"tokenizer has no EOS token"):
        tokenize_rows(ROWS, no_eos, max_length=16, max_prompt_length=8)

def test_collate_by_hand():
    a = Example([5, 6], [7, 2], [8, 9, 2], ref_chosen_logps=-1.0, ref_rejected_logps=-2.0, weight=1.0)
    b = Example([5], [3, 4, 2], [2], ref_chosen_logps=-3.0, ref_rejected_logps=-4.0)
    batch = collate([a, b], pad_token_id=0)
    assert batch["input_ids"].tolist() == [
        [5, 6, 7, 2, 0],  # a: prompt + chosen
        [5, 3, 4, 2, 0],  # b: prompt + chosen
        [5, 6, 8, 9, 2],  # a: prompt + rejected
        [5, 2, 0, 0, 0],  # b: prompt + rejected
    ]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["completion_mask"].tolist() == [[0, 0, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    for key in ("input_ids", "attention_mask", "completion_mask"):
        assert batch[key].dtype == torch.long
    assert batch["ref_chosen_logps"].tolist() == [-1.0, -3.0]
    assert batch["ref_rejected_logps"].dtype == torch.float32
    assert "weight" not in batch  # b has no weight
    assert "behavior_chosen_logps" not in batch
    assert [length(a), length(b)] == [5, 4]


def test_optional_columns_flow_from_file_to_batch(tmp_path, tok):
    rows = [
        dict(r, behavior_chosen_logps=-1.0 - i, behavior_rejected_logps=-2.0 - i,
             ref_chosen_logps=-3, ref_rejected_logps=-4)
        for i, r in enumerate(ROWS)
    ]
    loaded = load_rows(_write_jsonl(tmp_path / "opt.jsonl", rows))
    examples, _ = tokenize_rows(loaded, tok, max_length=32, max_prompt_length=16)
    batch = collate(examples, tok.pad_token_id)
    assert batch["input_ids"].shape[0] == 2 * len(ROWS)
    assert batch["behavior_chosen_logps"].tolist() == [-1.0, -2.0, -3.0]
    assert batch["behavior_rejected_logps"].tolist() == [-2.0, -3.0, -4.0]
    assert batch["ref_rejected_logps"].tolist() == [-4.0] * 3
    assert batch["weight"].tolist() == [1.0, 0.5, 0.0]
    # completion tokens counted by the mask equal the completion lengths
    lengths = batch["completion_mask"].sum(1).tolist()
    assert lengths == [len(e.chosen_ids) for e in examples] + [len(e.rejected_ids) for e in examples]
