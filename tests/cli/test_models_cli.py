"""`isdaa models`: argparse behind it, yet a bad option is still one `error:` line and exit code 2."""

from __future__ import annotations

import pytest

from isdaa.cli import main


def test_usage(capsys):
    assert main(["models"]) == 2
    assert "usage: isdaa models" in capsys.readouterr().out
    assert main(["models", "--help"]) == 0
    assert main(["models", "path", "-h"]) == 0
    assert "Models: smollm2" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--cache-dir", "--cache_dir"])
def test_path_and_list_take_a_cache_dir(flag, tmp_path, capsys):
    assert main(["models", "path", flag, str(tmp_path), "smollm2"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'models' / 'smollm2-135m-instruct'}\n"
    assert main(["models", "list", f"{flag}={tmp_path}"]) == 0
    assert "not prepared (isdaa models prepare smollm2)" in capsys.readouterr().out


@pytest.mark.parametrize("args, expect", [
    (["path", "smollm2", "--bogus"], "isdaa models: unknown option '--bogus'; expected --cache-dir DIR or --force"),
    (["path", "smollm2", "--cache-dir"], "isdaa models: argument --cache-dir/--cache_dir: expected one argument"),
    (["frob"], "isdaa models: unknown action 'frob'; expected list, prepare or path"),
    (["path"], "isdaa models path: expected one model name (smollm2)"),
    (["path", "gpt5"], "unknown model 'gpt5'; expected one of smollm2"),
])
def test_bad_arguments_are_one_line(args, expect, tmp_path, capsys):
    assert main(["models", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: {expect}\n"
