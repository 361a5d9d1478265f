"""What the in-run monitor costs: examples/tiny-is-dpo.yaml trained with and without `monitor.every 16`,
side by side (alternating, in this one process), and the ratio of wall times.

    python benchmarks/monitor_overhead.py [--repeats 3] [--threads 1] [--set monitor.n_samples=4 ...]

After one untimed warm-up run, each repetition trains the example once without and once with the monitor (the monitor's defaults, gold
scored by the `length` scorer; plots off in both, so only the monitor is measured) in fresh directories and
reports the median of the paired ratios, with the machine's load average next to it (absolute times are
only comparable at equal load; the ratio is the result).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import isdaa  # noqa: E402  (after the src path is set)
from isdaa.config import TrainConfig, load_config  # noqa: E402

EXAMPLE = ROOT / "examples" / "tiny-is-dpo.yaml"


def _timed_run(out: Path, threads: int, monitored: bool, extra: dict) -> float:
    overrides = {"output_dir": str(out), "progress": False, "plots": False, "num_threads": threads,
                 "data.train_file": str(ROOT / "examples/tiny/train.jsonl"),
                 "data.eval_file": str(ROOT / "examples/tiny/eval.jsonl"),
                 "model.tokenizer": str(ROOT / "examples/tiny/tokenizer")}
    if monitored:
        overrides.update({"monitor.every": 16, "monitor.scorer": "length", **extra})
    cfg = load_config(TrainConfig, EXAMPLE, overrides)
    start = time.perf_counter()
    isdaa.train(cfg)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], help="extra monitor options, e.g. monitor.n_samples=8")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.set)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _timed_run(Path(tmp) / "warm-up", args.threads, True, extra)  # first-call costs (lazy imports), not timed
        for r in range(args.repeats):
            plain = _timed_run(Path(tmp) / f"plain-{r}", args.threads, False, extra)
            watched = _timed_run(Path(tmp) / f"watched-{r}", args.threads, True, extra)
            rows.append((plain, watched))
            print(f"repeat {r + 1}: without monitor {plain:.2f} s, with monitor every 16 steps {watched:.2f} s, "
                  f"ratio {watched / plain:.3f}", flush=True)
    ratio = statistics.median(w / p for p, w in rows)
    total = sum(w for _, w in rows) / sum(p for p, _ in rows)
    print(f"median wall-time ratio (monitored / plain): {ratio:.3f}  (+{100 * (ratio - 1):.1f}%); "
          f"ratio of the summed times: {total:.3f}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}; "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs; "
          f"{args.threads} torch thread(s)")


if __name__ == "__main__":
    main()
