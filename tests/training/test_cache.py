"""Torn caches: a reference-cache file that is truncated, corrupted, of the wrong shape or without its checksum is
reported in one warning line and recomputed, never used; a checkpoint whose weights are torn is refused in one
line (exit 2) instead of a traceback."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from isdaa.cli import main
from isdaa.data import load_rows, tokenize_rows
from isdaa.modeling.tiny import tiny_llama, word_tokenizer
from isdaa.training.reference_cache import cached_reference_logps, compute_reference_logps, read_cache

from conftest import WORDS


@pytest.fixture(scope="module")
def setting(pairs_file):
    """(model, examples, the reference log-probs computed directly)."""
    tok = word_tokenizer(WORDS)
    examples, _ = tokenize_rows(load_rows(pairs_file)[:12], tok, max_length=32, max_prompt_length=16)
    model = tiny_llama(len(tok), hidden_size=16, num_layers=1, num_heads=2, seed=0, pad_token_id=tok.pad_token_id)
    expected = compute_reference_logps(model, examples, pad_token_id=tok.pad_token_id, batch_size=4)
    return model, examples, tok.pad_token_id, expected


def _cached(setting, cache_dir):
    model, examples, pad, _ = setting
    return cached_reference_logps(model, examples, cache_dir=cache_dir, model_id="tiny", pad_token_id=pad, batch_size=4)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40  # inside the last float of `rejected`: the header still parses
    path.write_bytes(bytes(data))


def _wrong_shape(path):
    save_file({"chosen": torch.zeros(5), "rejected": torch.zeros(5)}, str(path))


def _no_checksum(path):  # a file of the format before checksums
    save_file({"chosen": torch.full((12,), -1.0), "rejected": torch.full((12,), -2.0)}, str(path))


@pytest.mark.parametrize("damage, why", [
    (_truncate, "unreadable"), (_flip_last_byte, "checksum mismatch"),
    (_wrong_shape, "of shape (5,), expected float32 of shape (12,)"), (_no_checksum, "no checksum"),
])
def test_damaged_cache_is_recomputed_with_one_warning(setting, tmp_path, capsys, damage, why):
    expected = setting[3]
    chosen, rejected, hit = _cached(setting, tmp_path)
    assert not hit and capsys.readouterr().err == ""
    (path,) = tmp_path.iterdir()
    assert _cached(setting, tmp_path)[2]  # a whole file: hit

    damage(path)
    chosen, rejected, hit = _cached(setting, tmp_path)
    err = capsys.readouterr().err
    assert not hit
    assert err.count("\n") == 1 and err.startswith(f"isdaa: warning: reference cache {path} is unusable (")
    assert why in err and err.endswith("); recomputing it\n")
    assert torch.equal(chosen, expected[0]) and torch.equal(rejected, expected[1])  # never the damaged values
    assert read_cache(path, 12)[0] is not None  # rewritten whole
    assert _cached(setting, tmp_path)[2] and capsys.readouterr().err == ""


def test_checkpoint_with_torn_weights_is_refused_in_one_line(tokenizer_dir, pairs_file, tmp_path, capsys):
    from test_lock import _train_args

    run = tmp_path / "run"
    args = [a for a in _train_args(run, tokenizer_dir, pairs_file) if a != "--overwrite"] + ["--max_steps", "4",
                                                                                           "--save_every", "2"]
    assert main(args) == 0
    weights = run / "checkpoints" / "step-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # complete by its state file, torn inside
    capsys.readouterr()
    assert main(args + ["--max_steps", "6"]) == 2  # the finished run continued from its newest checkpoint
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: option resume: checkpoint {weights.parent} cannot be loaded")
