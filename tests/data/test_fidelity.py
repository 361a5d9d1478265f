"""Data fidelity at the edges (isdaa.data.tokenization): one end marker per completion, chat completions ending
the way the chat template ends the assistant turn, no EOS inside a prompt — and the same ids in eval's and
`isdaa pairs`' prompt tokenisation (isdaa.data.prompts)."""

from __future__ import annotations

import pytest
from tokenizers import AddedToken
from tokenizers.processors import TemplateProcessing

from isdaa.data import tokenize_rows
from isdaa.data.prompts import tokenize_completions, tokenize_prompts
from isdaa.modeling import prepare
from isdaa.modeling.tiny import word_tokenizer

WORDS = "the cat sat on a mat dog ran hello hi bye good bad next done".split()
# SmolLM2-135M-Instruct's chat template, verbatim (its chat_template.jinja)
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _chat_row(prompt, chosen, rejected):
    return {"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


@pytest.fixture()
def tok():
    return word_tokenizer(WORDS)


def _with_turn_tokens(template: str):
    """A word tokenizer with ChatML's special tokens and the given chat template."""
    tok = word_tokenizer(WORDS + ["You", "are", "helpful", "AI", "assistant", "named", "SmolLM,", "trained", "by",
                                  "Hugging", "Face"])
    tok.add_special_tokens({"additional_special_tokens": [AddedToken("<|im_start|>", special=True),
                                                          AddedToken("<|im_end|>", special=True)]})
    tok.chat_template = template
    return tok


def test_completion_ending_with_eos_gets_no_second_eos(tok):
    eos = tok.eos_token_id
    rows = [
        {"prompt": "the cat", "chosen": "sat on a mat <eos>", "rejected": "ran"},  # EOS string, own token
        {"prompt": "the dog", "chosen": "ran<eos>", "rejected": "sat <eos>"},  # EOS string glued to the text
    ]
    examples, dropped = tokenize_rows(rows, tok, max_length=32, max_prompt_length=16)
    assert dropped == 0
    assert examples[0].chosen_ids == _ids(tok, "sat on a mat") + [eos]
    assert examples[0].rejected_ids == _ids(tok, "ran") + [eos]
    assert examples[1].chosen_ids == _ids(tok, "ran") + [eos]
    assert examples[1].rejected_ids == _ids(tok, "sat") + [eos]
    for ex in examples:
        assert (ex.chosen_ids + ex.rejected_ids).count(eos) == 2
    # eval's baseline completions: the same ids
    assert tokenize_completions(tok, ["sat on a mat <eos>", "ran<eos>"], eos) == [examples[0].chosen_ids,
                                                                               examples[1].chosen_ids]


def test_chat_content_ending_with_eos_gets_no_second_eos(tok):
    (ex,), _ = tokenize_rows([_chat_row("hello", "hi <eos>", "bye")], tok, max_length=32, max_prompt_length=16)
    assert ex.chosen_ids == _ids(tok, "hi") + [tok.eos_token_id]


def test_tokenizer_appending_eos_to_prompts_leaves_none_inside(tok):
    """A post-processor that writes `<bos> text <eos>` (as some tokenizers do): BOS stays, EOS goes."""
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", tok.bos_token_id), ("<eos>", tok.eos_token_id)]
    )
    assert tok("the cat")["input_ids"][-1] == tok.eos_token_id  # the tokenizer does append it
    rows = [{"prompt": "the cat", "chosen": "sat", "rejected": "ran"}, {"prompt": "a dog", "chosen": "hi", "rejected": "bye"}]
    examples, _ = tokenize_rows(rows, tok, max_length=32, max_prompt_length=16)
    for row, ex in zip(rows, examples):
        assert ex.prompt_ids == [tok.bos_token_id] + _ids(tok, row["prompt"])
        assert tok.eos_token_id not in ex.prompt_ids
        assert ex.chosen_ids == _ids(tok, row["chosen"]) + [tok.eos_token_id]
    # eval / isdaa pairs tokenise prompts the same way
    ids, _, _ = tokenize_prompts(tok, [r["prompt"] for r in rows], max_prompt_length=16)
    assert ids == [ex.prompt_ids for ex in examples]


def test_tiny_template_completions_are_content_then_eos(tok):
    """The tiny test template ends the assistant turn with a space: content + [EOS], as before."""
    (ex,), _ = tokenize_rows([_chat_row("hello", "hi the cat", "bye")], tok, max_length=32, max_prompt_length=16)
    assert ex.chosen_ids == _ids(tok, "hi the cat") + [tok.eos_token_id]
    assert ex.rejected_ids == _ids(tok, "bye") + [tok.eos_token_id]


def test_smollm2_template_ends_the_turn_with_im_end():
    """SmolLM2's template ends the assistant turn with `<|im_end|>` then a newline: the completion is the
    content + `<|im_end|>` (no EOS of the tokenizer appended, nothing of what follows the marker)."""
    tok = _with_turn_tokens(SMOLLM2_TEMPLATE)
    tok.eos_token = "<eos>"  # an EOS that differs from the end-of-turn marker, so the two cannot be confused
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    (ex,), _ = tokenize_rows([_chat_row("hello", "hi the cat", "bye")], tok, max_length=64, max_prompt_length=48)
    assert ex.chosen_ids == _ids(tok, "hi the cat") + [im_end]
    assert ex.rejected_ids == _ids(tok, "bye") + [im_end]
    assert ex.prompt_ids[-2:] == _ids(tok, "<|im_start|>assistant")


def test_template_ending_is_kept_up_to_its_first_special_token():
    """Words the template writes before the end-of-turn marker are part of the completion; what comes after
    it (the start of a next turn) is not; an ending without a special token is followed by EOS."""
    tok = _with_turn_tokens(
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}"
        "{% if m['role'] == 'assistant' %} done <|im_end|> next{% endif %} {% endfor %}"
        "{% if add_generation_prompt %}assistant : {% endif %}"
    )
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    (ex,), _ = tokenize_rows([_chat_row("hello", "hi", "bye")], tok, max_length=32, max_prompt_length=16)
    assert ex.chosen_ids == _ids(tok, "hi done") + [im_end]
    tok.chat_template = tok.chat_template.replace(" <|im_end|> next", "")
    (ex,), _ = tokenize_rows([_chat_row("hello", "hi", "bye")], tok, max_length=32, max_prompt_length=16)
    assert ex.chosen_ids == _ids(tok, "hi done") + [tok.eos_token_id]


def test_template_that_rewrites_the_content_falls_back_to_eos(caplog):
    tok = _with_turn_tokens(
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] | upper }} <|im_end|> {% endfor %}"
        "{% if add_generation_prompt %}assistant : {% endif %}"
    )
    (ex,), _ = tokenize_rows([_chat_row("hello", "hi", "bye")], tok, max_length=32, max_prompt_length=16)
    assert ex.chosen_ids == _ids(tok, "hi") + [tok.eos_token_id]
    assert "2 completions: the chat template does not render the prompt and the assistant content verbatim" in caplog.text


@pytest.mark.slow
def test_real_smollm2_tokenizer_matches_trl_up_to_the_newline_after_im_end():
    """On the prepared SmolLM2 tokenizer: prompt ids equal TRL 1.16's; completion ids equal TRL's without the
    newline the template writes after `<|im_end|>` (TRL keeps it; generation never emits it)."""
    from transformers import AutoTokenizer  # transformers: slow group only (loads the real tokenizer)

    where = prepare.model_dir("smollm2")
    if not prepare.is_prepared(where):
        pytest.skip(f"SmolLM2 is not prepared at {where} (isdaa models prepare smollm2)")
    tok = AutoTokenizer.from_pretrained(str(where))
    row = _chat_row("Say something kind.", "You are doing great!", "Whatever.")
    (ex,), _ = tokenize_rows([row], tok, max_length=256, max_prompt_length=128)
    prompt = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
    trl_prompt, trl_full = _ids(tok, prompt), _ids(tok, full)
    assert ex.prompt_ids == trl_prompt
    trl_chosen = trl_full[len(trl_prompt):]
    assert tok.decode(trl_chosen[-1:]) == "\n" and trl_chosen[-2] == tok.convert_tokens_to_ids("<|im_end|>")
    assert ex.chosen_ids == trl_chosen[:-1]
