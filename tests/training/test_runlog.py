"""metrics.jsonl on resume: lines after the resumed step, and a line torn by a crash, are dropped."""

from isdaa.training.runlog import MetricsLog, aggregate, read_metrics


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
