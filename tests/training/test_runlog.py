"""metrics.jsonl on resume: lines after the resumed step, and a line torn by a crash, are dropped; a metrics line or
config.yaml that cannot be written is one clear error, and config.yaml is replaced atomically."""

import errno
import io
import os
from pathlib import Path

import pytest
import yaml

from isdaa.config import TrainConfig, config_yaml
from isdaa.errors import WriteFailed
from isdaa.training.runlog import MetricsLog, aggregate, write_run_config
from isdaa.runtime import read_metrics


def test_truncate_after_keeps_earlier_steps_and_drops_a_torn_line(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in range(1, 6):
        log.write({"step": step, "loss": 1.0 / step})
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 6, "lo')  # killed mid-write
    log.truncate_after(3)
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2, 3]


def test_aggregate_takes_min_of_min_max_of_max_mean_of_rest():
    out = aggregate([{"weights/min": 0.2, "weights/max": 3.0, "loss": 1.0},
                     {"weights/min": 0.1, "weights/max": 2.0, "loss": 3.0}])
    assert out == {"weights/min": 0.1, "weights/max": 3.0, "loss": 2.0}


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_metrics_line_that_cannot_be_written_is_one_clear_error(tmp_path, monkeypatch):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write({"step": 1, "loss": 1.0})

    class FullFile(io.StringIO):
        write = _no_space

    monkeypatch.setattr(Path, "open", lambda self, *a, **k: FullFile())
    with pytest.raises(WriteFailed) as failed:
        log.write({"step": 2, "loss": 0.5})
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(f"cannot write the metrics log {tmp_path / 'metrics.jsonl'} (No space left on device; ")
    monkeypatch.undo()
    assert [m["step"] for m in read_metrics(tmp_path)] == [1]  # the good line is kept


def test_run_config_is_replaced_atomically_or_not_at_all(tmp_path, monkeypatch):
    old = TrainConfig(seed=1)
    write_run_config(old, tmp_path)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["seed"] == 1
    monkeypatch.setattr(os, "fsync", _no_space)  # the disk fills while the new config is written
    with pytest.raises(WriteFailed, match=r"^cannot write the config .*config\.yaml \(No space left on device; "):
        write_run_config(TrainConfig(seed=2), tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "config.yaml").read_text() == config_yaml(old)  # the previous file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no temporary left behind
