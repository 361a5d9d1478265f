"""`isdaa logps --model DIR --data FILE --out FILE --as behavior|ref [...]`: argv ->
`isdaa.training.dataset_logps.write_dataset_logps`."""

from __future__ import annotations

import argparse

from isdaa.cli.argv import ArgumentParser
from isdaa.config import ModelConfig
from isdaa.errors import InputError
from isdaa.training.dataset_logps import KINDS, write_dataset_logps

DTYPES = ("float32", "bfloat16", "float16")
LOGPS_USAGE = """usage: isdaa logps --model DIR --data FILE --out FILE --as behavior|ref [options]

Summed response log-probs of every row of FILE under the model DIR, written with the rows to --out as the
behavior_chosen_logps / behavior_rejected_logps columns (--as behavior: DIR generated the data) or
ref_chosen_logps / ref_rejected_logps (--as ref: ship the reference's log-probs with the data). Tokenised and
truncated as `isdaa train` does: pass the run's --max_length / --max_prompt_length. Rows the trainer would drop
are left out (counted). --out (.jsonl or .json) is written atomically and never over the input.

options:
  --model DIR              a local model directory (from_pretrained) or .gguf file
  --data FILE              preference data (.jsonl, .json, .parquet or a datasets directory)
  --out FILE               the output .jsonl or .json file
  --as KIND                behavior | ref
  --tokenizer DIR          a tokenizer directory (default: the model's)
  --pad_token TEXT         when the tokenizer has no pad token (e.g. "<|endoftext|>")
  --dtype DTYPE            float32 (default) | bfloat16 | float16: the weights; log-probs stay fp32
  --max_length N           default 1024 (as isdaa train)
  --max_prompt_length N    default 512 (as isdaa train)
  --batch_size N           pairs per forward pass, default 16
  --device DEV             cpu | cuda | cuda:N (default: cuda when available)
  --progress true|false    a progress bar (default true)"""


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="isdaa logps", add_help=False, allow_abbrev=False)
    for name, kwargs in (("model", {"required": True}), ("data", {"required": True}), ("out", {"required": True}),
                         ("as", {"required": True, "dest": "kind", "choices": KINDS}), ("tokenizer", {}),
                         ("pad_token", {}), ("dtype", {"default": "float32", "choices": DTYPES}), ("device", {}),
                         ("max_length", {"type": int, "default": 1024}),
                         ("max_prompt_length", {"type": int, "default": 512}),
                         ("batch_size", {"type": int, "default": 16}), ("progress", {"default": "true",
                                                                                      "choices": ("true", "false")})):
        flags = {f"--{name}", f"--{name.replace('_', '-')}"}
        parser.add_argument(*sorted(flags), **kwargs)
    return parser


def logps_command(args: list[str]) -> int:
    """`isdaa logps ...` (see LOGPS_USAGE); returns the exit code."""
    if not args or "-h" in args or "--help" in args:
        print(LOGPS_USAGE)
        return 0 if args else 2
    options = _parser().parse_args(args)
    if options.batch_size < 1:
        raise InputError(f"option --batch_size: must be >= 1, got {options.batch_size}")
    if options.device is not None and not (options.device == "cpu" or options.device.startswith("cuda")):
        raise InputError(f"option --device: expected cpu, cuda or cuda:N, got {options.device!r}")
    model = ModelConfig(name_or_path=options.model, tokenizer=options.tokenizer, pad_token=options.pad_token,
                        dtype=options.dtype)
    stats = write_dataset_logps(
        model, options.data, options.out, kind=options.kind, max_length=options.max_length,
        max_prompt_length=options.max_prompt_length, batch_size=options.batch_size,
        progress=options.progress == "true", device=options.device,
    )
    replaced = " (replacing the input's)" if stats["replaced"] else ""
    print(f"isdaa: {options.kind}_*_logps{replaced} of {stats['written']} of {stats['rows']} rows "
          f"({stats['dropped']} dropped as isdaa train drops them) written to {stats['out']}")
    return 0
