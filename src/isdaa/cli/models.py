"""`isdaa models <list | prepare NAME | path NAME> [--cache-dir DIR] [--force]` (isdaa.modeling.prepare)."""

from __future__ import annotations

import argparse

from isdaa.cli.argv import ArgumentParser
from isdaa.errors import InputError
from isdaa.modeling import prepare

MODELS_USAGE = """usage: isdaa models <list | prepare NAME | path NAME> [--cache-dir DIR] [--force]

  list           known models, and where each is prepared (if it is)
  prepare NAME   convert NAME once into <cache>/models/ and print the directory (reused afterwards)
  path NAME      print the directory NAME is (or would be) prepared in

<cache> is --cache-dir, else $ISDAA_CACHE, else ~/.cache/isdaa. Models: """ + ", ".join(prepare.MODELS)


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="isdaa models", add_help=False, allow_abbrev=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--cache-dir", "--cache_dir", dest="cache_dir", metavar="DIR")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("names", nargs="*")
    return parser


def _list(cache_dir: str | None) -> None:
    for key, spec in prepare.MODELS.items():
        where = prepare.model_dir(key, cache_dir)
        state = f"prepared at {where}" if prepare.is_prepared(where) else f"not prepared (isdaa models prepare {key})"
        print(f"{key:<10} {spec.description}; {state}")


def models_command(args: list[str]) -> int:
    """`isdaa models ...` (see MODELS_USAGE); returns the exit code."""
    if not args or args[0] in ("-h", "--help"):
        print(MODELS_USAGE)
        return 0 if args else 2
    action = args[0]
    options, unknown = _parser().parse_known_intermixed_args(args[1:])
    if options.help:
        print(MODELS_USAGE)
        return 0
    if unknown:
        raise InputError(f"isdaa models: unknown option {unknown[0]!r}; expected --cache-dir DIR or --force")
    if action == "list":
        _list(options.cache_dir)
        return 0
    if action not in ("prepare", "path"):
        raise InputError(f"isdaa models: unknown action {action!r}; expected list, prepare or path")
    if len(options.names) != 1:
        raise InputError(f"isdaa models {action}: expected one model name ({', '.join(prepare.MODELS)})")
    if action == "path":
        print(prepare.model_dir(options.names[0], options.cache_dir))
        return 0
    print(prepare.prepare_model(options.names[0], options.cache_dir, force=options.force, verbose=True))
    return 0
