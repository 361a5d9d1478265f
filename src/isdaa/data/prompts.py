"""Evaluation prompts: reading them from a file and tokenising them the way `isdaa.data` does.

Sources:
- a `.txt` file: one plain-text prompt per non-blank line (no baseline responses);
- a preference-data file (anything `isdaa.data.load_rows` reads): the `prompt` column, and the `chosen`
  response as the baseline for the win rate (for conversational rows, the assistant message's content).

Tokenisation matches `isdaa.data.tokenize_rows`: a plain prompt is `tokenizer(prompt)` (with the tokenizer's
special tokens, e.g. BOS); a message list is rendered with the chat template (`add_generation_prompt=True`)
and tokenised without added special tokens. Prompts longer than `max_prompt_length` keep their END.
A baseline response is `tokenizer(text, add_special_tokens=False) + [EOS]`, like a data completion.
"""

from __future__ import annotations

from pathlib import Path

from isdaa.errors import InputError

__all__ = ["load_prompts", "tokenize_prompts", "tokenize_completions"]


def load_prompts(path: str) -> tuple[list, list[str] | None]:
    """(prompts, baseline chosen texts or None) from a .txt prompt file or a preference-data file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"prompts: {path} does not exist (expected a .txt prompt file or a preference-data file)")
    if p.is_file() and p.suffix.lower() == ".txt":
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise InputError(f"prompts: {path} is not UTF-8 text") from None
        prompts = [line for line in lines if line.strip()]
        if not prompts:
            raise InputError(f"prompts: {path} has no prompts (expected one prompt per line)")
        return prompts, None
    from isdaa.data.reading import load_rows

    rows = load_rows(path, extra_columns=None)
    prompts = [row["prompt"] for row in rows]
    chosen = [row["chosen"] if isinstance(row["chosen"], str) else row["chosen"][0]["content"] for row in rows]
    return prompts, chosen


def _render(tokenizer, prompt, i: int) -> str:
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"prompts: prompt {i + 1} is a message list but the tokenizer has no chat template")
    try:
        return tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # jinja errors, raise_exception() in templates
        raise InputError(f"prompts: prompt {i + 1}: the chat template failed ({str(exc).splitlines()[0]})") from None


def tokenize_prompts(tokenizer, prompts: list, max_prompt_length: int) -> tuple[list[list[int]], list[str], int]:
    """(token ids, prompt texts for the scorer, number of prompts truncated to their last max_prompt_length tokens)."""
    ids, texts, truncated = [], [], 0
    for i, prompt in enumerate(prompts):
        text = _render(tokenizer, prompt, i)
        row = tokenizer(text, add_special_tokens=isinstance(prompt, str), verbose=False)["input_ids"]
        if not row:
            raise InputError(f"prompts: prompt {i + 1} tokenises to no tokens; expected a non-empty prompt")
        if len(row) > max_prompt_length:
            row = row[-max_prompt_length:]
            truncated += 1
        ids.append(list(row))
        texts.append(text)
    return ids, texts, truncated


def tokenize_completions(tokenizer, texts: list[str], eos_id: int) -> list[list[int]]:
    """Response token ids + [EOS] for each text (as `isdaa.data` builds completions)."""
    if not texts:
        return []
    rows = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return [list(r) + [eos_id] for r in rows]
