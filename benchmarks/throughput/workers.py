"""The benchmark's worker processes: one variant (isdaa or TRL) trained and timed in a fresh subprocess."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from throughput.setup import ACCUM, BATCH, BETA, ISDAA_OPTIONS, LR, MAX_LENGTHS, model_init, padding_fraction, prepare, train_flops



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
