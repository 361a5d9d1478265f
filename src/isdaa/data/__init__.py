"""Preference data: reading, validation, tokenisation, collation (TRL format).

    rows = load_rows("pairs.jsonl")                       # validated, normalised dicts
    examples, n_dropped = tokenize_rows(rows, tokenizer, max_length=1024, max_prompt_length=512)
    batch = collate(examples[:8], tokenizer.pad_token_id)

Every problem with the user's data raises `isdaa.errors.InputError` with a one-line message naming
the file, the row (or JSON line) and the field (helpers for those messages: `isdaa.data.text`).
Prompt files (eval's and `isdaa pairs`') and prompt tokenisation: `isdaa.data.prompts`.
"""

from isdaa.data.collate import SHARED_KEYS, collate, collate_shared
from isdaa.data.reading import load_rows
from isdaa.data.tokenization import Example, length, tokenize_rows
from isdaa.data.validation import KNOWN_COLUMNS, LOGPS_COLUMNS, OPTIONAL_COLUMNS, validate_rows

__all__ = [
    "Example",
    "KNOWN_COLUMNS",
    "LOGPS_COLUMNS",
    "OPTIONAL_COLUMNS",
    "SHARED_KEYS",
    "collate",
    "collate_shared",
    "length",
    "load_rows",
    "tokenize_rows",
    "validate_rows",
]
