#!/usr/bin/env python
"""Where one isdaa training step spends its time and memory (CPU), on the benchmark's model and data.

    python benchmarks/profile_step.py --model smollm2 --shape tldr --threads 2

Builds the same random Llama and synthetic batch as `train_throughput.py`, then runs `--steps` steps of exactly
what the trainer does per micro-batch (shared-prompt log-probs with the cached reference, DPO objective,
backward, clip, AdamW) and reports, for the last step: wall time per phase, the process RSS after each phase
(VmRSS) and the high-water mark (VmHWM), and the top operators of the torch profiler.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from throughput import setup as tt  # noqa: E402  (the benchmark's model and data shapes)


def status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=tuple(tt.MODELS), default="smollm2")
    p.add_argument("--shape", choices=tuple(tt.SHAPES), default="tldr")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--layout", choices=("shared", "concat"), default="shared")
    p.add_argument("--ops", type=int, default=15, help="operators listed (0: no torch profiler)")
    p.add_argument("--checkpointing", action="store_true", help="per-layer activation checkpointing (as "
                   "`model.gradient_checkpointing: true`)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import tempfile

    from transformers import LlamaConfig, LlamaForCausalLM

    from isdaa.data import SHARED_KEYS, collate, collate_shared, load_rows, tokenize_rows
    from isdaa.modeling.checkpointing import enable_layer_checkpointing
    from isdaa.modeling.logprobs import batch_logps, batch_logps_shared_prompt
    from isdaa.modeling.loading import load_tokenizer
    from isdaa.config import ModelConfig
    from isdaa.objectives import daa_objective

    work = Path(tempfile.mkdtemp(prefix="isdaa-prof-"))
    tok_dir, data = tt.prepare(work, args.shape, tt.BATCH, 1.0)
    examples, _ = tokenize_rows(load_rows(data), load_tokenizer(ModelConfig(tokenizer=str(tok_dir))),
                                max_length=1024, max_prompt_length=768)
    shutil.rmtree(work)  # the examples are tokenized: the random data and tokenizer are no longer needed
    for e in examples:  # a cached reference, as after the precompute
        e.ref_chosen_logps, e.ref_rejected_logps = -500.0, -500.0
    rss0 = status_mb("VmRSS")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**tt.model_init(args.model))).train()
    if args.checkpointing:
        enable_layer_checkpointing(model)
    n_params = sum(q.numel() for q in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=tt.LR)
    rss_model = status_mb("VmRSS")

    if args.layout == "shared":
        batch = collate_shared(examples, 0)
        run = lambda: batch_logps_shared_prompt(model, *(batch[k] for k in SHARED_KEYS))  # noqa: E731
    else:
        batch = collate(examples, 0)
        run = lambda: batch_logps(model, batch)  # noqa: E731

    def step(marks):
        t = time.perf_counter()
        out = run()
        marks.append(("forward (log-probs)", time.perf_counter() - t, status_mb("VmRSS")))
        t = time.perf_counter()
        obj = daa_objective(loss="sigmoid", beta=tt.BETA, policy_chosen_logps=out["chosen_logps"],
                            policy_rejected_logps=out["rejected_logps"], ref_chosen_logps=batch["ref_chosen_logps"],
                            ref_rejected_logps=batch["ref_rejected_logps"], chosen_lengths=out["chosen_lengths"],
                            rejected_lengths=out["rejected_lengths"])
        marks.append(("objective + metrics", time.perf_counter() - t, status_mb("VmRSS")))
        t = time.perf_counter()
        obj.loss.backward()
        marks.append(("backward", time.perf_counter() - t, status_mb("VmRSS")))
        t = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        marks.append(("clip + AdamW step", time.perf_counter() - t, status_mb("VmRSS")))

    for _ in range(args.steps - 1):
        step([])
    marks = []
    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(marks)
    else:
        step(marks)
    print(f"{args.model} / {args.shape}, layout {args.layout}, checkpointing {args.checkpointing}, batch {tt.BATCH}, "
          f"{args.threads} thread(s); "
          f"{n_params / 1e6:.1f}M parameters")
    print(f"RSS before the model {rss0:.0f} MB; after model + AdamW object {rss_model:.0f} MB")
    total = sum(m[1] for m in marks)
    for name, dt, rss in marks:
        print(f"  {name:22s} {dt:7.2f} s ({100 * dt / total:4.1f}%)   RSS after {rss:7.0f} MB")
    print(f"  step {total:.2f} s; VmHWM {status_mb('VmHWM'):.0f} MB; params+grads+Adam = "
          f"{16 * n_params / 2**20:.0f} MB (fp32)")
    if args.ops:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops, max_name_column_width=48))


if __name__ == "__main__":
    main()
