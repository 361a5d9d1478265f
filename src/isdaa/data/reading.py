"""Reading preference rows from .jsonl, .json, .parquet files and `datasets` directories.

Parsing is left to `json`, pyarrow and `datasets.load_from_disk`; this module only maps their
failures to one-line `InputError`s and hands the rows to `validate_rows`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from isdaa.data.text import one_line, short_repr, type_name
from isdaa.data.validation import validate_rows
from isdaa.errors import InputError

FORMATS = ".jsonl, .json or .parquet file, or a directory saved with `datasets` save_to_disk"


def load_rows(path: str | os.PathLike, *, extra_columns: Iterable[str] = ()) -> list[dict]:
    """Read and validate preference rows; see `validate_rows` for the checks and normalisation.

    `path`: a .jsonl (one object per line; blank lines skipped; errors name the line), .json (a
    top-level list of objects; JSON lines in a .json file are accepted too), .parquet, or a directory
    written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` (the "train" split). Columns other
    than prompt/chosen/rejected and the optional ones are an error unless named in `extra_columns`.
    """
    source = os.fspath(path)
    p = Path(source)
    if not p.exists():
        raise InputError(f"{source}: no such file or directory; expected a {FORMATS}")
    where = None
    try:
        if p.is_dir():
            rows = _read_dataset_dir(p, source)
        else:
            suffix = p.suffix.lower()
            if suffix in (".jsonl", ".ndjson"):
                rows, where = _read_jsonl(p.read_bytes(), source)
            elif suffix == ".json":
                rows, where = _read_json(p.read_bytes(), source)
            elif suffix == ".parquet":
                rows = _read_parquet(p, source)
            else:
                kind = short_repr(p.suffix or p.name)
                raise InputError(f"{source}: unsupported file type {kind}; expected a {FORMATS}")
    except OSError as e:  # permissions, a vanished file, ...
        raise InputError(f"{source}: cannot read ({e.strerror or e}); expected a readable {FORMATS}") from e
    return validate_rows(rows, source, extra_columns=extra_columns, where=where)


def _decode(raw: bytes, source: str, line: int | None = None) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        at = f"line {line}: " if line is not None else ""
        raise InputError(f"{source}: {at}not UTF-8 text (byte {e.start}); expected UTF-8 encoded JSON") from e


def _read_jsonl(raw: bytes, source: str) -> tuple[list, list[str]]:
    rows, where = [], []
    for n, line in enumerate(raw.splitlines(), start=1):
        text = _decode(line, source, n)
        if not text.strip():
            continue
        try:
            rows.append(json.loads(text))
        except json.JSONDecodeError as e:
            raise InputError(
                f"{source}: line {n}: invalid JSON ({e.msg} at column {e.colno}); expected one JSON object per line"
            ) from e
        where.append(f"line {n}")
    return rows, where


def _read_json(raw: bytes, source: str) -> tuple[list, list[str] | None]:
    text = _decode(raw, source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # several top-level values: JSON lines saved as .json
            return _read_jsonl(raw, source)
        raise InputError(
            f"{source}: line {e.lineno}: invalid JSON ({e.msg} at column {e.colno}); expected a list of objects"
        ) from e
    if not isinstance(data, list):
        hint = ""
        if isinstance(data, dict):
            lists = [k for k, v in data.items() if isinstance(v, list)]
            if lists:
                hint = f" (found the list under key {short_repr(lists[0])}: put it at the top level, or use .jsonl)"
        raise InputError(f"{source}: top level is {type_name(data)}; expected a list of row objects{hint}")
    return data, None


def _read_parquet(p: Path, source: str) -> list:
    import pyarrow as pa  # heavy import, needed only for .parquet files
    import pyarrow.parquet as pq  # (the same)

    try:
        return pq.read_table(p).to_pylist()
    except (pa.ArrowException, ValueError) as e:
        raise InputError(f"{source}: not a readable parquet file ({one_line(e)})") from e


def _read_dataset_dir(p: Path, source: str) -> list:
    import datasets  # heavy import, needed only for `datasets` directories

    try:
        ds = datasets.load_from_disk(str(p))
    except FileNotFoundError as e:
        raise InputError(
            f"{source}: a directory, but not a dataset saved with `datasets` save_to_disk "
            f"(no dataset_info.json / dataset_dict.json); expected a {FORMATS}"
        ) from e
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise InputError(
                f"{source}: DatasetDict has no 'train' split (splits: {', '.join(ds) or 'none'}); "
                "expected a 'train' split"
            )
        ds = ds["train"]
    return ds.to_list()
