"""What durable checkpoints cost: `save_checkpoint` with fsync (every file, then the directory; what isdaa does)
against the same write without it, side by side, alternating, on the disk of `--dir`.

    python benchmarks/fsync_cost.py [--dir DIR] [--repeats 7] [--sizes tiny,small]

Sizes: `tiny` is a 2-layer Llama with hidden size 32, `small` a 4-layer one with hidden size 256 (vocabulary
512). Prints, per size, the checkpoint's size, the median milliseconds per checkpoint with and without fsync, the
difference and the ratio, and the machine's load average (`os.getloadavg`), which matters: quote them together.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from isdaa.modeling.tiny import tiny_llama
from isdaa.training import checkpoint as ckpt

SIZES = {"tiny": dict(hidden_size=32, num_layers=2, num_heads=4), "small": dict(hidden_size=256, num_layers=4, num_heads=4)}
ckpt_durable = ckpt.durable_rename  # what save_checkpoint calls: fsync every file, rename, fsync the directory


def _prepared(size: str):
    """An accelerator with a model and an Adam optimizer that has state (one step taken)."""
    acc = Accelerator(cpu=True)
    model = tiny_llama(512, **SIZES[size])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = acc.prepare(model, optimizer)
    model(torch.randint(0, 512, (2, 16))).logits.sum().backward()
    optimizer.step()
    return acc


def _plain_rename(src: Path, dst: Path) -> Path:
    """The checkpoint rename without any fsync (what isdaa did before)."""
    src.rename(dst)
    return dst


def _time_save(acc, run_dir: Path, step: int, durable: bool) -> float:
    ckpt.durable_rename = ckpt_durable if durable else _plain_rename
    started = time.perf_counter()
    ckpt.save_checkpoint(acc, run_dir, step, {"skipped_steps": 0, "bad_streak": 0, "epoch": 0}, keep_last=2)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to write (default: the system temporary directory)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="tiny,small")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = Path(tempfile.mkdtemp(prefix="fsync-cost-", dir=args.dir))
    print(f"writing under {base} (load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    for size in args.sizes.split(","):
        acc = _prepared(size)
        times = {True: [], False: []}
        for i in range(args.repeats):
            for durable in (i % 2 == 0, i % 2 == 1):  # alternate which goes first
                times[durable].append(_time_save(acc, base / size, 2 * i + durable, durable))
        on, off = statistics.median(times[True]), statistics.median(times[False])
        mb = sum(f.stat().st_size for f in ckpt.latest_checkpoint(base / size).rglob("*") if f.is_file()) / 2**20
        print(f"{size:>5} ({mb:.1f} MB): with fsync {on * 1000:.1f} ms, without {off * 1000:.1f} ms, "
              f"+{(on - off) * 1000:.1f} ms per checkpoint ({on / off:.2f}x)")
    ckpt.durable_rename = ckpt_durable
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    shutil.rmtree(base)


if __name__ == "__main__":
    main()
