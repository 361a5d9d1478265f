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
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOCAB = 49_152
SPECIALS = 4  # <pad>=0 <bos>=1 <eos>=2 <unk>=3 (isdaa.modeling.tiny.word_tokenizer)

MODELS = {
    # SmolLM2-135M's shape (random init): 134.5M parameters
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, tie_word_embeddings=True),
    # the orientation model of the issue: 4 layers, hidden 256, the same vocabulary (28.4M parameters)
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=False),
}
COMMON_INIT = dict(vocab_size=VOCAB, max_position_embeddings=2048, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                   rms_norm_eps=1e-5, attention_dropout=0.0)

# token lengths (uniform, inclusive); completions get an EOS on top. `var`: the variable-length set of the
# length-grouping measurement (prompts 50-800, completions 10-300)
SHAPES = {"tldr": dict(prompt=(360, 440), completion=(40, 56)), "hh": dict(prompt=(130, 170), completion=(130, 170)),
          "var": dict(prompt=(50, 800), completion=(10, 300))}
MAX_LENGTHS = {"var": (1152, 800)}  # (data.max_length, data.max_prompt_length); others: (1024, 768)

VARIANTS = ("isdaa", "trl-pre", "isdaa-is", "trl-live", "isdaa-ckpt", "isdaa-compile", "isdaa-group", "trl-pre-ckpt")
DEFAULT_VARIANTS = ("isdaa", "trl-pre", "isdaa-is", "trl-live")  # alternating isdaa / TRL
# the isdaa variants' config on top of the plain run
ISDAA_OPTIONS = {"isdaa": {}, "isdaa-is": {"objective.weighting": "is"},
                 "isdaa-ckpt": {"model.gradient_checkpointing": True}, "isdaa-compile": {"model.compile": True},
                 "isdaa-group": {"data.group_by_length": True}}

BATCH, ACCUM, LR, BETA = 4, 1, 1e-6, 0.1


# ---------------------------------------------------------------------------------------------- data


def words(vocab: int = VOCAB) -> list[str]:
    return [f"t{i}" for i in range(vocab - SPECIALS)]  # word i has token id i + SPECIALS


def make_rows(shape: str, n: int, seed: int, length_scale: float = 1.0) -> list[dict]:
    """Random-token pairs; completions start with a space so that TRL's prompt+completion text splits alike."""
    rng = random.Random(seed)
    spec = SHAPES[shape]

    def n_tokens(lo_hi):
        lo, hi = (max(1, round(x * length_scale)) for x in lo_hi)
        return rng.randint(lo, hi)

    def text(k):
        return " ".join(f"t{rng.randrange(VOCAB - SPECIALS)}" for _ in range(k))

    return [{"prompt": text(n_tokens(spec["prompt"])), "chosen": " " + text(n_tokens(spec["completion"])),
             "rejected": " " + text(n_tokens(spec["completion"]))} for _ in range(n)]


def prepare(work: Path, shape: str, n_pairs: int, length_scale: float) -> tuple[Path, Path]:
    """The tokenizer directory (shared) and the JSONL data of a shape (deterministic)."""
    tok_dir = work / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        from isdaa.modeling.tiny import word_tokenizer

        word_tokenizer(words(), chat_roles=False).save_pretrained(tok_dir)
    data = work / f"{shape}-{n_pairs}-{length_scale:g}.jsonl"
    if not data.is_file():
        rows = make_rows(shape, n_pairs, seed=1234, length_scale=length_scale)
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tok_dir, data


def model_init(name: str) -> dict:
    return {**COMMON_INIT, **MODELS[name]}


# ---------------------------------------------------------------------------------------------- workers


def _vm_hwm_kb() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# process CPU time (all threads) at the end of each step: on cores shared with other jobs, CPU seconds per step
# measure a trainer's work far more steadily than wall time (the OpenMP threads wait passively, not spinning)
CPU_ENDS: list[float] = []


def _finish(args, t_start, t_loop, step_ends, tokens_per_pair, extra=None) -> dict:
    w = max(args.warmup, 1)
    timed = len(step_ends) - w
    elapsed = step_ends[-1] - step_ends[w - 1]
    cpu_elapsed = CPU_ENDS[-1] - CPU_ENDS[w - 1]
    pairs = timed * BATCH * ACCUM
    out = {
        "variant": args.worker, "model": args.model, "shape": args.shape, "steps": len(step_ends),
        "timed_steps": timed, "setup_s": t_loop - t_start, "timed_s": elapsed, "pairs_per_s": pairs / elapsed,
        "step_s": elapsed / timed, "tokens_per_pair": tokens_per_pair, "vm_hwm_mb": _vm_hwm_kb() / 1024,
        "threads": args.threads, "cpu_step_s": cpu_elapsed / timed, "pairs_per_cpu_s": pairs / cpu_elapsed,
    }
    out.update(extra or {})
    return out


def run_isdaa(args, tok_dir: Path, data: Path, out_dir: Path) -> dict:
    import torch

    import isdaa
    from isdaa.config import TrainConfig, load_config

    max_length, max_prompt = MAX_LENGTHS.get(args.shape, (1024, 768))
    cfg = load_config(TrainConfig, None, {
        "output_dir": str(out_dir / "run"), "seed": 0, "batch_size": BATCH, "grad_accum": ACCUM,
        "max_steps": args.steps, "log_every": 1, "eval_every": 0, "save_every": 0, "progress": False,
        "num_threads": args.threads, "precompute_ref": True, "ref_cache_dir": str(out_dir / "ref-cache"),
        "eval_batch_size": 8, "model.init": model_init(args.model), "model.tokenizer": str(tok_dir),
        "data.train_file": str(data), "data.max_length": max_length, "data.max_prompt_length": max_prompt,
        "optim.lr": LR, "optim.scheduler": "cosine", "objective.loss": "sigmoid", "objective.beta": BETA,
        "objective.weighting": "none", **ISDAA_OPTIONS[args.worker],
    })

    class Timer:
        t_loop = None
        ends: list = []
        losses: list = []

        def on_train_begin(self, model, tokenizer):
            self.t_loop = time.perf_counter()

        def on_log(self, step, metrics):
            self.ends.append(time.perf_counter())
            CPU_ENDS.append(time.process_time())
            self.losses.append(metrics["loss"])

    timer = Timer()
    t_start = time.perf_counter()
    isdaa.train(cfg, callbacks=[timer])
    assert torch.get_num_threads() == args.threads

    from isdaa.data import load_rows, tokenize_rows
    from isdaa.modeling.loading import load_tokenizer

    examples, _ = tokenize_rows(load_rows(data), load_tokenizer(cfg.model), max_length=max_length,
                                max_prompt_length=max_prompt)
    tpp = statistics.fmean(2 * len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in examples)
    shared = statistics.fmean(len(e.prompt_ids) for e in examples) >= _min_shared_prompt()
    order = _trained_order(examples, cfg, shared)
    return _finish(args, t_start, timer.t_loop, timer.ends, tpp, {
        "first_loss": timer.losses[0], "prompt_sharing": shared, "padding_fraction": padding_fraction(
            [examples[i] for i in order[: len(timer.ends) * BATCH * ACCUM]], shared),
        "flops_per_pair": train_flops(examples, model_init(args.model)) / len(examples),
        "step_times": _step_times(timer),
    })


def _step_times(timer) -> list[float]:
    ends = [timer.t_loop, *timer.ends]
    return [b - a for a, b in zip(ends, ends[1:])]


def _trained_order(examples, cfg, shared: bool) -> list[int]:
    """The example order of epoch 0 exactly as the trainer draws it (one process)."""
    from isdaa.training.data_order import EpochOrder

    group = BATCH * ACCUM if cfg.data.group_by_length else 0
    return EpochOrder(examples, cfg.seed, 0, group, shared).order


def padding_fraction(examples_in_order, shared: bool) -> float:
    """Pad slots / all slots over the batches of BATCH pairs, in the layout the trainer used: shared prompt
    (prompts to the longest prompt, the 2B completions to the longest completion) or concatenated (2B rows
    to the longest prompt + completion)."""
    pad = slots = 0
    for start in range(0, len(examples_in_order) // BATCH * BATCH, BATCH):
        ex = examples_in_order[start : start + BATCH]
        real = sum(2 * len(e.prompt_ids) * (not shared) + len(e.prompt_ids) * shared + len(e.chosen_ids)
                   + len(e.rejected_ids) for e in ex)
        if shared:
            width = BATCH * max(len(e.prompt_ids) for e in ex) + 2 * BATCH * max(
                max(len(e.chosen_ids), len(e.rejected_ids)) for e in ex)
        else:
            width = 2 * BATCH * max(len(e.prompt_ids) + max(len(e.chosen_ids), len(e.rejected_ids)) for e in ex)
        pad, slots = pad + width - real, slots + width
    return pad / slots if slots else 0.0


def train_flops(examples, init: dict) -> float:
    """Useful matmul FLOPs of training (forward + backward = 3 forwards) on `examples`, counting each prompt
    once, no padding, the LM head only on response tokens, attention scores and values (causal); the
    recomputation of activation checkpointing is not counted (it is overhead, not useful work)."""
    h, inter, layers, vocab = init["hidden_size"], init["intermediate_size"], init["num_hidden_layers"], init["vocab_size"]
    kv = h // init["num_attention_heads"] * init["num_key_value_heads"]
    per_token = 2 * layers * (2 * h * h + 2 * h * kv + 3 * h * inter)  # q, o; k, v; gate, up, down
    total = 0.0
    for e in examples:
        p, c1, c2 = len(e.prompt_ids), len(e.chosen_ids), len(e.rejected_ids)
        attended = p * (p + 1) / 2 + sum(c * p + c * (c + 1) / 2 for c in (c1, c2))  # (query, key) pairs
        total += per_token * (p + c1 + c2) + 4 * layers * h * attended + 2 * h * vocab * (c1 + c2)
    return 3 * total


def _min_shared_prompt() -> int:
    from isdaa.training.trainer import MIN_SHARED_PROMPT_TOKENS

    return MIN_SHARED_PROMPT_TOKENS


def run_trl(args, tok_dir: Path, data: Path, out_dir: Path) -> dict:
    import copy

    import torch
    from datasets import load_dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    precompute = args.worker.startswith("trl-pre")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    with torch.random.fork_rng(devices=[]):  # the same initial weights as isdaa's `model.init` (seed 0)
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**model_init(args.model)))
    ref = None if precompute else copy.deepcopy(model).requires_grad_(False).eval()  # no hub id to reload from
    ds = load_dataset("json", data_files=str(data), split="train", cache_dir=str(out_dir / "hf-cache"))
    cfg = DPOConfig(
        output_dir=str(out_dir / "trl"), per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUM,
        max_steps=args.steps, learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=0, optim="adamw_torch",
        weight_decay=0.0, max_grad_norm=1.0, bf16=False, fp16=False,
        gradient_checkpointing=args.worker.endswith("-ckpt"),
        loss_type=["sigmoid"], beta=BETA, precompute_ref_log_probs=precompute, precompute_ref_batch_size=8,
        max_length=1024, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        seed=0, data_seed=0, dataloader_num_workers=0, remove_unused_columns=False,
    )

    class Timer(TrainerCallback):
        t_loop = None
        ends: list = []

        def on_train_begin(self, args_, state, control, **kw):
            self.t_loop = time.perf_counter()

        def on_step_end(self, args_, state, control, **kw):
            self.ends.append(time.perf_counter())
            CPU_ENDS.append(time.process_time())

    timer = Timer()
    trainer = DPOTrainer(model=model, ref_model=ref, args=cfg, train_dataset=ds, processing_class=tok,
                         callbacks=[timer])
    trainer.train()
    assert torch.get_num_threads() == args.threads
    td = trainer.train_dataset
    tpp = statistics.fmean(2 * len(p) + len(c) + len(r) for p, c, r in zip(td["prompt_ids"], td["chosen_ids"],
                                                                           td["rejected_ids"]))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return _finish(args, t_start, timer.t_loop, timer.ends, tpp, {"first_loss": losses[0] if losses else None})


def worker_main(args) -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="isdaa-bench-"))
    n_pairs = BATCH * ACCUM * args.steps
    tok_dir, data = prepare(work, args.shape, n_pairs, args.length_scale)
    out_dir = Path(tempfile.mkdtemp(prefix=f"{args.worker}-", dir=work))
    # a fresh inductor cache per run: `isdaa-compile` pays its real (cold) compile time, in its warm-up steps
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(out_dir / "inductor-cache"))
    fn = run_isdaa if args.worker.startswith("isdaa") else run_trl
    result = fn(args, tok_dir, data, out_dir)
    import shutil

    shutil.rmtree(out_dir, ignore_errors=True)  # the trained model (0.5 GB for the SmolLM2 shape) and caches
    text = json.dumps(result)
    if args.result:
        Path(args.result).write_text(text)
    print(text)


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


def gemm_peak(threads: int, n: int = 2048, reps: int = 10) -> tuple[float, float]:
    """(FLOP per wall second, FLOP per CPU second) of an n x n x n fp32 `torch.mm` on `threads` threads (the
    best of `reps` after a warm-up): the machine's practical matmul ceiling."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        torch.mm(a, b)
    best = best_cpu = float("inf")
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    return 2 * n**3 / best, 2 * n**3 / best_cpu


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def is_objective_overhead(batch: int = BATCH, reps: int = 300) -> dict:
    """Seconds per call of `daa_objective` (+ its backward) with IS weights vs without, on (B,) log-probs."""
    import torch

    from isdaa.objectives import daa_objective

    g = torch.Generator().manual_seed(0)
    base = [-100 + torch.randn(batch, generator=g) for _ in range(4)]

    def one(weighting):
        pc, pr = (b.clone().requires_grad_(True) for b in base[:2])
        out = daa_objective(loss="sigmoid", beta=BETA, policy_chosen_logps=pc, policy_rejected_logps=pr,
                            ref_chosen_logps=base[2], ref_rejected_logps=base[3], weighting=weighting,
                            chosen_lengths=torch.full((batch,), 48.0), rejected_lengths=torch.full((batch,), 48.0))
        out.loss.backward()

    times = {}
    for weighting in ("none", "is", "none", "is"):  # second round measured
        t = time.perf_counter()
        for _ in range(reps):
            one(weighting)
        times[weighting] = (time.perf_counter() - t) / reps
    return {"objective_none_s": times["none"], "objective_is_s": times["is"]}


def _median_key(rs: list[dict], key: str):
    vals = [r.get(key) for r in rs]
    return median(vals) if any(v is not None for v in vals) else None


def summarize(runs: list[dict], model: str, shape: str, overhead: dict, gemm: dict | None = None) -> dict:
    by = lambda v: [r for r in runs if r["variant"] == v]  # noqa: E731
    reps = sorted({r["rep"] for r in runs})

    def paired(num, den, key, invert=False):
        vals = []
        for rep in reps:
            a = [r for r in runs if r["rep"] == rep and r["variant"] == num]
            b = [r for r in runs if r["rep"] == rep and r["variant"] == den]
            if a and b:
                vals.append(b[0][key] / a[0][key] if invert else a[0][key] / b[0][key])
        return median(vals), vals

    flops_per_pair = _median_key([r for r in runs if r["variant"].startswith("isdaa")], "flops_per_pair")
    gemm = gemm or {}
    s = {"model": model, "shape": shape, "reps": len(reps), "variants": {}, "gemm_flops": gemm.get("gemm_flops"),
         "flops_per_pair": flops_per_pair}
    for v in VARIANTS:
        rs = by(v)
        if rs:
            m = {k: _median_key(rs, k) for k in ("pairs_per_s", "step_s", "setup_s", "peak_rss_mb", "tokens_per_pair",
                                                 "first_loss", "padding_fraction", "cpu_step_s", "pairs_per_cpu_s")}
            m["warmup_s"] = median([sum(r["step_times"][: r["steps"] - r["timed_steps"]]) for r in rs
                                    if r.get("step_times")]) if rs[0].get("step_times") else None
            if gemm and flops_per_pair:  # wall: pairs/s vs the mm's FLOP/s; cpu: the same per CPU-second
                m["gemm_fraction"] = flops_per_pair * m["pairs_per_s"] / gemm["gemm_flops"]
                m["gemm_fraction_cpu"] = flops_per_pair * m["pairs_per_cpu_s"] / gemm["gemm_flops_per_cpu_s"]
            s["variants"][v] = m
    s["ratios"] = {}
    present = [v for v in VARIANTS if by(v)]
    for trl in ("trl-pre", "trl-live", "trl-pre-ckpt"):
        for v in (x for x in present if x.startswith("isdaa") and x != "isdaa-is"):
            if by(trl):
                s["ratios"][f"pairs_per_s {v}/{trl}"] = paired(v, trl, "pairs_per_s")
                s["ratios"][f"pairs_per_cpu_s {v}/{trl}"] = paired(v, trl, "pairs_per_cpu_s")
                s["ratios"][f"peak_rss {v}/{trl}"] = paired(v, trl, "peak_rss_mb")
    for v in ("isdaa-is", "isdaa-ckpt", "isdaa-compile", "isdaa-group"):
        if by(v) and by("isdaa"):
            s["ratios"][f"step_time {v}/isdaa"] = paired(v, "isdaa", "step_s")
            s["ratios"][f"cpu_step_time {v}/isdaa"] = paired(v, "isdaa", "cpu_step_s")
    step = s["variants"].get("isdaa", {}).get("step_s")
    if step:
        s["is_objective_overhead"] = (overhead["objective_is_s"] - overhead["objective_none_s"]) / step
    return s


def print_summary(s: dict) -> None:
    print(f"\n== {s['model']} / {s['shape']}: medians over {s['reps']} repetition(s)")
    if s.get("flops_per_pair"):
        print(f"useful training FLOPs per pair (prompt once, no padding): {s['flops_per_pair'] / 1e9:.1f} GFLOP; "
              f"GEMM peak (2048^3 fp32 torch.mm): {(s['gemm_flops'] or float('nan')) / 1e9:.1f} GFLOP/s")
    print(f"{'variant':13s} {'pairs/s':>9s} {'step s':>8s} {'CPU s/step':>10s} {'warm-up s':>9s} {'setup s':>8s} {'peak RSS MB':>12s}"
          f" {'tok/pair':>9s} {'pad frac':>8s} {'GEMM frac':>9s} {'(CPU)':>6s} {'loss@1':>8s}")
    nan = float("nan")
    for v, m in s["variants"].items():
        def f(key):
            return nan if m.get(key) is None else m[key]

        print(f"{v:13s} {m['pairs_per_s']:9.3f} {m['step_s']:8.2f} {f('cpu_step_s'):10.2f} {f('warmup_s'):9.1f} {m['setup_s']:8.1f}"
              f" {m['peak_rss_mb']:12.0f} {m['tokens_per_pair']:9.1f} {f('padding_fraction'):8.3f}"
              f" {f('gemm_fraction'):9.3f} {f('gemm_fraction_cpu'):6.3f} {f('first_loss'):8.4f}")
    for name, (med, vals) in s["ratios"].items():
        print(f"ratio {name:38s} median {med:6.3f}   per repetition: {', '.join(f'{x:.3f}' for x in vals)}")
    if "is_objective_overhead" in s:
        print(f"IS objective (weights + stats) cost per step, isolated: {100 * s['is_objective_overhead']:.3f}% "
              f"of an isdaa step")


def main(argv=None) -> None:
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
