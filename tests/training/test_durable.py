"""Durable writes: before each atomic rename every file of what is renamed is fsynced (a checkpoint, `final/`,
the reference cache, JSON outputs), and the directory that receives it is fsynced after, so "atomic" also
holds against a power cut. A power cut cannot be staged in a test: this records the system calls instead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isdaa.runtime import write_json
from isdaa.training.trainer import fit


@pytest.fixture
def calls(monkeypatch):
    """The fsync / rename / replace calls made while the test runs, in order, with resolved paths."""
    log = []
    real = {name: getattr(os, name) for name in ("fsync", "rename", "replace")}

    def fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real["fsync"](fd)

    def renamer(name):
        def rename(src, dst, **kw):
            log.append((name, os.path.abspath(src), os.path.abspath(dst)))
            return real[name](src, dst, **kw)
        return rename

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", renamer("rename"))
    monkeypatch.setattr(os, "replace", renamer("replace"))
    return log


def _assert_durable(log: list, dst: Path) -> None:
    """`dst` got there by one rename; each of its files (and directories) was fsynced under the source name
    before it, and `dst`'s parent directory after it."""
    moves = [i for i, e in enumerate(log) if e[0] in ("rename", "replace") and e[2] == str(dst)]
    assert moves, f"{dst} was not renamed into place"
    at = moves[-1]
    src = Path(log[at][1])
    synced_before = {e[1] for e in log[:at] if e[0] == "fsync"}
    inside = [dst] + sorted(dst.rglob("*")) if dst.is_dir() else [dst]
    for path in inside:
        assert str(src / path.relative_to(dst)) in synced_before, f"{path} not fsynced before the rename"
    assert ("fsync", str(dst.parent)) in log[at + 1:], f"{dst.parent} not fsynced after the rename"


def test_checkpoint_final_and_cache_are_fsynced_before_their_rename(tiny_config, tmp_path, calls):
    run = tmp_path / "run"
    fit(tiny_config(output_dir=str(run), max_steps=4, save_every=2))
    _assert_durable(calls, run / "checkpoints" / "step-2")
    _assert_durable(calls, run / "final")
    (cache,) = (run / "ref-cache").iterdir()
    _assert_durable(calls, cache)


def test_json_outputs_are_fsynced_before_their_rename(tmp_path, calls):
    path = write_json({"gold": 1.5}, tmp_path / "out" / "result.json")
    _assert_durable(calls, path)
