#!/usr/bin/env python
"""Training throughput and peak memory: isdaa vs TRL 1.16 `DPOTrainer`, same model, data, batch and precision.

    pip install -e '.[bench]'                       # trl==1.16.0, a benchmark-only dependency
    python benchmarks/train_throughput.py           # both models, both shapes (long: ~1 h on 2 cores)
    python benchmarks/train_throughput.py --quick   # the small model only, few steps (smoke test)
    # issue 15: isdaa with and without activation checkpointing vs TRL, one invocation (~6 min here)
    python benchmarks/train_throughput.py --model smollm2 --shape tldr --reps 1 --variants isdaa,isdaa-ckpt,trl-pre
    # length grouping on the variable-length set, a whole epoch of 16 steps
    python benchmarks/train_throughput.py --model small --shape var --reps 1 --steps 16 --variants isdaa,isdaa-group
    # model.compile (warm-up 2: the 2nd step recompiles for dynamic lengths)
    python benchmarks/train_throughput.py --model smollm2 --shape tldr --reps 1 --steps 5 --warmup 2 \
        --variants isdaa,isdaa-compile

What runs: a randomly initialised Llama (`smollm2`: shaped like SmolLM2-135M — 30 layers, hidden 576, 9 heads,
3 KV heads, intermediate 1536, 49,152-token vocabulary, tied embeddings; `small`: 4 layers, hidden 256, same
vocabulary), fp32 on CPU, on synthetic random-token pairs (`tldr`: prompt ~400 tokens, completions ~48; `hh`:
prompt ~150, completions ~150; `var`: prompts 50-800, completions 10-300), batch 4 pairs, no gradient
accumulation, AdamW, lr 1e-6, DPO sigmoid loss, beta 0.1, no eval, no checkpoints; each pair is seen once (the
data set has steps x 4 pairs). Variants, each in its own fresh subprocess:

- `isdaa`         : `isdaa.train` (its real loop), DPO, reference log-probs precomputed (the default)
- `isdaa-is`      : the same with IS-DPO weights (`objective.weighting=is`)
- `isdaa-ckpt`    : with `model.gradient_checkpointing` (per-layer, prompt sharing kept)
- `isdaa-compile` : with `model.compile` (inductor on the MLPs and norms)
- `isdaa-group`   : with `data.group_by_length`
- `trl-pre`       : `DPOTrainer(loss_type=["sigmoid"], precompute_ref_log_probs=True)` — TRL at its best
- `trl-pre-ckpt`  : the same with `gradient_checkpointing=True` (TRL's memory-lean setting)
- `trl-live`      : the reference model run at every step (`precompute_ref_log_probs=False`)

Each repetition runs every variant once, alternating isdaa and TRL, the order rotated between repetitions,
so that machine load affects all alike; ratios are computed within a repetition and the MEDIAN over
repetitions is reported. Timing: pairs/s over the steps after `--warmup` steps, wall clock between the ends
of steps (data loading, forward, backward, optimizer, logging — all of the loop); `warm-up s` is the time of
the warm-up steps (compilation shows there). Set-up (model build, tokenisation, reference precompute) is timed
apart and excluded. Peak memory: the child process's RSS high-water mark (`wait4` ru_maxrss), over the whole
run including set-up. Also printed: the padding fraction of isdaa's batches (pad slots / all slots, in the
layout it used), and the fraction of the GEMM peak — useful training FLOPs per pair (prompt once, no padding,
head on response tokens, no recomputation) x pairs/s ÷ the FLOP/s of a 2048^3 fp32 `torch.mm` on the same
number of threads, measured by this invocation.

A single variant can be run alone (e.g. under py-spy):
    python benchmarks/train_throughput.py --worker trl-pre --model small --shape tldr --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput.setup import ACCUM, BATCH, BETA, DEFAULT_VARIANTS, LR, MODELS, SHAPES, VARIANTS
from throughput.summary import gemm_peak, is_objective_overhead, print_summary, summarize
from throughput.workers import worker_main


# ---------------------------------------------------------------------------------------------- driver


def run_child(argv: list[str], result: Path, threads: int, log: Path, wait_policy: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TQDM_DISABLE": "1",
           "OMP_WAIT_POLICY": wait_policy,
           "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, __file__, *argv, "--result", str(result)], env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise SystemExit(f"worker {argv} failed (exit {proc.returncode}); log {log}:\n{tail}")
    out = json.loads(result.read_text())
    out["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small model only, few steps (a smoke test)")
    p.add_argument("--shape", choices=("tldr", "hh", "var", "both"), default="both",
                   help="both = tldr and hh; var: prompts 50-800, completions 10-300 (the length-grouping set)")
    p.add_argument("--model", choices=("small", "smollm2", "both"), default=None,
                   help="default: both (small with --quick)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 2 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run incl. warm-up (default 4 small, "
                   "3 smollm2; 2 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="steps left out of the timing")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every run")
    p.add_argument("--omp-wait-policy", default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                   choices=("PASSIVE", "ACTIVE"), help="OMP_WAIT_POLICY of every run (default PASSIVE: on cores "
                   "shared with other jobs, spinning OpenMP threads made 2-thread steps up to 5x slower)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--length-scale", type=float, default=1.0, help="scale every sequence length (smoke tests)")
    p.add_argument("--json", default=None, help="write every run and the summaries to this file")
    p.add_argument("--work-dir", default=None, help="data, tokenizer and run outputs (default: a temp dir)")
    # internal: one run in this process
    p.add_argument("--worker", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    p.add_argument("--gemm-worker", action="store_true", help=argparse.SUPPRESS)
    return p


def _machine(args, log: Path, work: Path) -> dict:
    """The machine, library versions and command of this invocation (printed and kept in the JSON)."""
    import torch
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    import isdaa

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    machine = {"cpu": cpu, "cores": cores, "threads": args.threads, "omp_wait_policy": args.omp_wait_policy,
               "load_avg_at_start": os.getloadavg()[0], "python": platform.python_version(),
               "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl_version,
               "isdaa": isdaa.__version__ if hasattr(isdaa, "__version__") else "dev",
               "command": " ".join([Path(sys.executable).name, *sys.argv])}
    print("machine:", json.dumps(machine))
    print(f"batch {BATCH} pairs x accumulation {ACCUM}, fp32, lr {LR}, beta {BETA}; {args.threads} torch thread(s), "
          f"OMP_WAIT_POLICY={args.omp_wait_policy}; warm-up {args.warmup} step(s); "
          f"work dir {work}; worker log {log}")
    return machine


def _run_cell(args, model: str, shape: str, steps: int, reps: int, variants: list[str], work: Path, log: Path) -> list[dict]:
    """Every variant `reps` times on one (model, shape), in fresh subprocesses, the order rotated per repetition."""
    runs = []
    for rep in range(reps):
        order = variants[rep % len(variants):] + variants[: rep % len(variants)]
        for v in order:
            argv_ = ["--worker", v, "--model", model, "--shape", shape, "--steps", str(steps), "--warmup",
                     str(args.warmup), "--threads", str(args.threads), "--length-scale", str(args.length_scale),
                     "--work-dir", str(work)]
            t = time.perf_counter()
            r = run_child(argv_, work / f"result-{model}-{shape}-{rep}-{v}.json", args.threads, log,
                          args.omp_wait_policy)
            r.update(rep=rep, wall_s=time.perf_counter() - t, load_avg=os.getloadavg()[0])
            runs.append(r)
            print(f"[{model}/{shape} rep {rep}] {v:9s} {r['pairs_per_s']:8.3f} pairs/s  step {r['step_s']:7.2f}s"
                  f"  setup {r['setup_s']:6.1f}s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
                  f"(wall {r['wall_s']:.0f}s, load {r['load_avg']:.1f})", flush=True)
    tpp = {round(r["tokens_per_pair"], 3) for r in runs}
    if len(tpp) > 1:
        print(f"WARNING: the variants saw different token counts per pair: {sorted(tpp)}")
    return runs


def main(argv=None) -> None:
    p = _parser()
    args = p.parse_args(argv)

    if args.gemm_worker:
        wall, cpu = gemm_peak(args.threads)
        Path(args.result).write_text(json.dumps({"gemm_flops": wall, "gemm_flops_per_cpu_s": cpu}))
        return
    if args.worker:
        args.model = args.model if args.model in MODELS else "small"
        args.shape = args.shape if args.shape in SHAPES else "tldr"
        args.steps = args.steps or 3
        worker_main(args)
        return

    models = ["small"] if args.quick else (["small", "smollm2"] if args.model in (None, "both") else [args.model])
    if args.quick and args.model not in (None, "small"):
        models = [args.model]
    shapes = ["tldr", "hh"] if args.shape == "both" else [args.shape]
    reps = args.reps or (2 if args.quick else 3)
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {bad}; expected some of {VARIANTS}")
    if any(v.startswith("trl") for v in variants):
        try:
            import trl  # noqa: F401
        except ImportError:
            p.error("trl is not installed: pip install -e '.[bench]'  (trl==1.16.0)")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="isdaa-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "workers.log"

    machine = _machine(args, log, work)

    overhead = is_objective_overhead()
    gemm = run_child(["--gemm-worker", "--threads", str(args.threads)], work / "gemm.json", args.threads, log,
                     args.omp_wait_policy)
    print(f"GEMM peak: 2048^3 fp32 torch.mm on {args.threads} thread(s): {gemm['gemm_flops'] / 1e9:.1f} GFLOP/s "
          f"wall, {gemm['gemm_flops_per_cpu_s'] / 1e9:.1f} GFLOP per CPU-second (load {os.getloadavg()[0]:.1f})")
    machine.update(gemm_flops=gemm["gemm_flops"], gemm_flops_per_cpu_s=gemm["gemm_flops_per_cpu_s"])
    all_runs, summaries = [], []
    for model in models:
        steps = args.steps or (2 if args.quick else (4 if model == "small" else 3))
        if steps <= args.warmup:
            p.error(f"--steps ({steps}) must exceed --warmup ({args.warmup})")
        for shape in shapes:
            runs = _run_cell(args, model, shape, steps, reps, variants, work, log)
            s = summarize(runs, model, shape, overhead, gemm)
            print_summary(s)
            all_runs += runs
            summaries.append(s)
    print(f"\nIS objective alone: {1e3 * overhead['objective_none_s']:.3f} ms (none) vs "
          f"{1e3 * overhead['objective_is_s']:.3f} ms (is) per call incl. backward, batch {BATCH}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "overhead": overhead, "summaries": summaries,
                                               "runs": all_runs}, indent=1))


if __name__ == "__main__":
    main()
