"""The one reader of `metrics.jsonl` (isdaa.runtime.read_metrics), used by training, the monitor and `isdaa plot`:
a run directory or the file itself, [] without one, a line torn by a crash skipped."""

from __future__ import annotations

from isdaa.runtime import read_metrics


def test_reads_a_run_directory_or_the_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n\n{"step": 2, "loss": "nan"}\n{"step": 3, "lo')
    assert read_metrics(tmp_path) == read_metrics(path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": "nan"}]


def test_no_file_no_records(tmp_path):
    assert read_metrics(tmp_path) == [] and read_metrics(tmp_path / "metrics.jsonl") == []
