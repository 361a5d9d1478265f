"""Prompt files, and tokenising prompts the way `isdaa.data` does.

Two readers, for two callers:
- `load_prompts` (eval): a `.txt` file, one plain-text prompt per non-blank line (no baseline responses), a
  prompt-only `.jsonl` / `.json` file (objects with a `prompt` — a string or a message list — and no `chosen`;
  no baseline responses), or a preference-data file (anything `isdaa.data.load_rows` reads): the `prompt`
  column, and the `chosen` response as the baseline for the win rate (for conversational rows, the assistant
  message's content).
- `load_prompt_file` (`isdaa pairs`): a `.txt` file (one prompt per non-blank line, stripped) or a `.jsonl` /
  `.json` file of objects with a `prompt` field (a string or a list of {role, content} messages).

Tokenisation matches `isdaa.data.tokenize_rows`: a plain prompt is `tokenizer(prompt)` (with the tokenizer's
special tokens, e.g. BOS, less an EOS the tokenizer appends); a message list is rendered with the chat template
(`add_generation_prompt=True`) and tokenised without added special tokens. Prompts longer than
`max_prompt_length` keep their END. A baseline response is `tokenizer(text, add_special_tokens=False) + [EOS]`,
like a plain-text data completion (one EOS: an EOS ending the text is not doubled).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from isdaa.data.reading import load_rows
from isdaa.data.tokenization import completion_token_ids, prompt_token_ids
from isdaa.data.validation import ROLES
from isdaa.errors import InputError

__all__ = ["load_prompts", "load_prompt_file", "check_prompt", "tokenize_prompts", "tokenize_completions"]

PROMPT_FILE_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _nonblank_lines(text: str, path) -> list[str]:
    """The non-blank lines of a `.txt` prompt file (as they are); InputError when there are none."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"prompts: {path} has no prompts (expected one prompt per line)")
    return lines


def load_prompts(path: str) -> tuple[list, list[str] | None]:
    """(prompts, baseline chosen texts or None) from a .txt prompt file or a preference-data file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"prompts: {path} does not exist (expected a .txt prompt file or a preference-data file)")
    if p.is_file() and p.suffix.lower() == ".txt":
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"prompts: {path} is not UTF-8 text") from None
        return _nonblank_lines(text, path), None
    if _is_prompt_only(p):
        return load_prompt_file(p), None
    rows = load_rows(path, extra_columns=None)
    prompts = [row["prompt"] for row in rows]
    chosen = [row["chosen"] if isinstance(row["chosen"], str) else row["chosen"][0]["content"] for row in rows]
    return prompts, chosen


def _is_prompt_only(path: Path) -> bool:
    """A `.jsonl` / `.json` file none of whose objects has a `chosen` field (unreadable files: False, so that
    `load_rows` reports what is wrong with them)."""
    if not path.is_file() or path.suffix.lower() not in PROMPT_FILE_SUFFIXES:
        return False
    try:
        text = path.read_bytes().decode("utf-8-sig")
        objects = _json_objects(text, path, as_list=path.suffix.lower() == ".json" and text.lstrip().startswith("["))
    except (InputError, OSError, UnicodeDecodeError):
        return False
    return bool(objects) and all(isinstance(obj, dict) and "chosen" not in obj for _, obj in objects)


def load_prompt_file(path: str | os.PathLike) -> list:
    """Prompts from a `.txt` file (one per non-blank line) or a `.jsonl` / `.json` file of objects with a
    `prompt` field (a string or a list of {role, content} messages; other fields are ignored)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"prompts: {path} does not exist or is not a file (expected a .txt, .jsonl or .json prompt file)")
    suffix = p.suffix.lower()
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"prompts: {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"prompts: {path}: cannot read ({exc.strerror or exc})") from None
    if suffix == ".txt":
        return [line.strip() for line in _nonblank_lines(text, path)]
    if suffix not in PROMPT_FILE_SUFFIXES:
        raise InputError(f"prompts: {path}: unsupported file type {p.suffix or p.name!r}; expected .txt, .jsonl or .json")
    prompts = []
    for where, obj in _json_objects(text, path, as_list=suffix == ".json" and text.lstrip().startswith("[")):
        if not isinstance(obj, dict) or "prompt" not in obj:
            raise InputError(f"prompts: {path}: {where}: expected an object with a 'prompt' field")
        prompts.append(check_prompt(obj["prompt"], f"prompts: {path}: {where}: field 'prompt'"))
    if not prompts:
        raise InputError(f"prompts: {path} has no prompts")
    return prompts


def _json_objects(text: str, path, *, as_list: bool) -> list[tuple[str, object]]:
    """(where, value) for each item of a top-level JSON list (`as_list`) or each non-blank JSON line."""
    if as_list:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"prompts: {path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        return [(f"item {k + 1}", obj) for k, obj in enumerate(data)]
    items = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"prompts: {path}: line {n}: invalid JSON ({exc.msg}); expected one object per line") from None
    return items


def check_prompt(prompt, where: str):
    """`prompt` if it is a non-blank string, else a copy of a non-empty list of {role, content} messages;
    InputError naming `where` otherwise."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InputError(f"{where}: empty; expected text")
        return prompt
    if isinstance(prompt, list) and prompt:
        for k, msg in enumerate(prompt):
            if not (isinstance(msg, dict) and msg.get("role") in ROLES and isinstance(msg.get("content"), str)):
                raise InputError(f"{where}[{k}]: expected a {{role, content}} message (role one of {', '.join(ROLES)})")
        return [dict(m) for m in prompt]
    raise InputError(f"{where}: expected a string or a non-empty list of {{role, content}} messages")


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
        if isinstance(prompt, str):
            row = prompt_token_ids(tokenizer, [text])[0]
        else:
            row = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        if not row:
            raise InputError(f"prompts: prompt {i + 1} tokenises to no tokens; expected a non-empty prompt")
        if len(row) > max_prompt_length:
            row = row[-max_prompt_length:]
            truncated += 1
        ids.append(list(row))
        texts.append(text)
    return ids, texts, truncated


def tokenize_completions(tokenizer, texts: list[str], eos_id: int) -> list[list[int]]:
    """Response token ids + [EOS] for each text (as `isdaa.data` builds plain-text completions)."""
    return completion_token_ids(tokenizer, list(texts), [[eos_id]] * len(texts))
