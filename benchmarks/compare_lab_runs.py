"""Do two lab runs agree to the last printed digit? (a refactor must leave `make demo` unchanged)

    python benchmarks/compare_lab_runs.py BEFORE.log AFTER.log BEFORE/results.json AFTER/results.json

The logs are the printed output of `isdaa demo` / `isdaa lab`: their per-run lines are compared without the
run's position in the finish order and its seconds. results.json files are compared without timings and paths.
Exit 0 when both agree, 1 otherwise (each difference printed).
"""

import json
import re
import sys

TIMING_KEYS = {"seconds", "wall_seconds", "elapsed_s", "output_dir", "path", "files"}


def run_lines(path: str) -> list[str]:
    lines = []
    for line in open(path, encoding="utf-8"):
        if line.startswith("["):
            line = re.sub(r"^\[\d+/\d+\] ", "", line.rstrip())
            lines.append(re.sub(r"\s+\d+s$", "", line))
    return sorted(lines)


def without_timings(obj):
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def main(log_a: str, log_b: str, json_a: str, json_b: str) -> int:
    a, b = run_lines(log_a), run_lines(log_b)
    same_lines = a == b and bool(a)
    print(f"per-run lines identical: {same_lines} ({len(a)} vs {len(b)} runs)")
    for x, y in zip(a, b):
        if x != y:
            print(f"  before: {x}\n  after:  {y}")
    ra, rb = (without_timings(json.load(open(p, encoding="utf-8"))) for p in (json_a, json_b))
    print(f"results.json identical (timings and paths left out): {ra == rb}")
    for key in sorted(set(ra) | set(rb)):
        if ra.get(key) != rb.get(key):
            print(f"  differs: {key}")
    return 0 if same_lines and ra == rb else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
