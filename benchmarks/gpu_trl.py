#!/usr/bin/env python
"""TRL 1.16's `DPOTrainer` on the GPU check's model, data and batch (the baseline of benchmarks/gpu_check.sh).

    python benchmarks/gpu_trl.py                          # one CUDA GPU; the same env variables as gpu_check.sh
    BATCH=8 STEPS=12 SHAPE=hh PEAK_TFLOPS=989 python benchmarks/gpu_trl.py
    TRL_CHECKPOINTING=1 TRL_OPTIM=adamw_torch_fused python benchmarks/gpu_trl.py   # TRL's own defaults
    PROFILE=1 python benchmarks/gpu_trl.py                # + a profile of 2 steps and their host-device syncs
    ALLOW_CPU=1 LAYERS=2 HIDDEN=64 HEADS=4 KV_HEADS=2 INTER=128 STEPS=3 BATCH=2 python benchmarks/gpu_trl.py  # dry run

What runs: the random Llama of `throughput.setup.gpu_init` (24 layers, hidden 1536: ~0.67B parameters, tied 49,152
vocabulary; seed 0, the weights isdaa's `model.init` builds), the same random-token pairs (`throughput.setup.prepare`:
batch x steps pairs, seed 1234), bf16 autocast over fp32 weights (`bf16=True`), sigmoid DPO, beta 0.1, lr 1e-6,
`precompute_ref_log_probs=True` (TRL at its fastest), TRL's default fused LM head (Triton on a GPU). As in
benchmarks/train_throughput.py, `optim="adamw_torch"` (the optimizer isdaa uses) and no gradient checkpointing,
unless TRL_OPTIM / TRL_CHECKPOINTING=1 say otherwise (TRL's own defaults: adamw_torch_fused, checkpointing on).

Timing: pairs/s over the wall clock between the ends of the steps after WARMUP (default 2), the device
synchronised at each end (logging every step included, as gpu_check.sh). MFU = 6 * N * tokens/s / peak with
the tokens TRL's decoder ran (prompt + completion, twice per pair); `useful MFU` counts what isdaa's check counts
(each prompt once, the head on response tokens only), so it compares the two trainers on the same work.
RESULT_JSON=path writes the figures as JSON too.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import setup as tt  # noqa: E402


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


class _StepEnds:
    """A TrainerCallback (built lazily: transformers is imported inside `main`) recording synchronised step ends."""

    @staticmethod
    def make(cuda: bool, profile=None):
        import torch
        from transformers import TrainerCallback

        class StepEnds(TrainerCallback):
            def __init__(self):
                self.t_loop, self.ends = None, []

            def on_train_begin(self, args, state, control, **kw):
                self.t_loop = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if cuda:
                    torch.cuda.synchronize()
                self.ends.append(time.perf_counter())
                if profile is not None:
                    profile.step()

        return StepEnds()


def _token_counts(train_dataset) -> dict:
    """Tokens per pair as TRL tokenised them: concatenated (what its decoder runs), prompt once, responses."""
    rows = list(zip(train_dataset["prompt_ids"], train_dataset["chosen_ids"], train_dataset["rejected_ids"]))
    return {
        "sequence_tokens_per_pair": statistics.fmean(2 * len(p) + len(c) + len(r) for p, c, r in rows),
        "decoder_tokens_per_pair": statistics.fmean(len(p) + len(c) + len(r) for p, c, r in rows),
        "response_tokens_per_pair": statistics.fmean(len(c) + len(r) for _, c, r in rows),
    }


def main() -> None:
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and _env("ALLOW_CPU", "0") != "1":
        sys.exit("gpu_trl: no CUDA device (ALLOW_CPU=1 runs the code path on the CPU as a dry run)")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import trl
    from datasets import load_dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    card = torch.cuda.get_device_name(0) if cuda else "cpu (dry run)"
    print("device:", card, "| torch", torch.__version__, "| trl", trl.__version__)
    peak = float(_env("PEAK_TFLOPS", "989")) * 1e12
    batch, steps, warmup = int(_env("BATCH", "8")), int(_env("STEPS", "12")), int(_env("WARMUP", "2"))
    shape, checkpointing = _env("SHAPE", "hh"), _env("TRL_CHECKPOINTING", "0") == "1"
    optim = _env("TRL_OPTIM", "adamw_torch")
    init = tt.gpu_init(os.environ)
    work = Path(tempfile.mkdtemp(prefix="isdaa-gpu-trl-"))
    tok_dir, data = tt.prepare(work, shape, batch * steps, 1.0)

    tok = AutoTokenizer.from_pretrained(tok_dir)
    with torch.random.fork_rng(devices=[]):  # the weights of isdaa's `model.init` (seed 0)
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**init))
    ds = load_dataset("json", data_files=str(data), split="train", cache_dir=str(work / "hf-cache"))
    cfg = DPOConfig(
        output_dir=str(work / "trl"), per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        max_steps=steps, learning_rate=1e-6, lr_scheduler_type="cosine", warmup_steps=0, optim=optim,
        weight_decay=0.0, max_grad_norm=1.0, bf16=cuda, fp16=False, gradient_checkpointing=checkpointing,
        loss_type=["sigmoid"], beta=0.1, precompute_ref_log_probs=True, precompute_ref_batch_size=2 * batch,
        max_length=1024, logging_steps=1, save_strategy="no", report_to="none", use_cpu=not cuda,
        disable_tqdm=True, seed=0, data_seed=0, dataloader_num_workers=0, remove_unused_columns=False,
    )
    from contextlib import nullcontext

    from throughput.gpu_profile import StepProfile

    profile = StepProfile(warmup) if _env("PROFILE", "0") == "1" else None
    timer = _StepEnds.make(cuda, profile)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer = DPOTrainer(model=model, ref_model=None, args=cfg, train_dataset=ds, processing_class=tok,
                         callbacks=[timer])
    with profile or nullcontext():
        trainer.train()
    wall = time.perf_counter() - t0
    profiled = profile.report() if profile is not None else None

    w = max(warmup, 1)
    pairs_s = (len(timer.ends) - w) * batch / (timer.ends[-1] - timer.ends[w - 1])
    counts = _token_counts(trainer.train_dataset)
    with torch.device("meta"):
        m = LlamaForCausalLM(LlamaConfig(**init))
    n_all = sum(p.numel() for p in m.parameters())  # tied: the head counted once
    n_head = m.lm_head.weight.numel()
    mfu = 6 * n_all * pairs_s * counts["sequence_tokens_per_pair"] / peak
    useful = 6 * pairs_s * ((n_all - n_head) * counts["decoder_tokens_per_pair"]
                            + n_head * counts["response_tokens_per_pair"]) / peak
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result = {
        "trainer": "trl", "trl": trl.__version__, "device": card, "torch": torch.__version__,
        "peak_tflops": peak / 1e12, "model_params": n_all, "layers": init["num_hidden_layers"],
        "hidden": init["hidden_size"], "shape": shape, "batch": batch, "steps": steps,
        "timed_steps": len(timer.ends) - w, "optim": optim, "checkpointing": checkpointing, "whole_run_s": wall,
        "pairs_per_s": pairs_s, **counts, "sequence_tokens_per_s": pairs_s * counts["sequence_tokens_per_pair"],
        "mfu": mfu, "useful_mfu": useful, "first_loss": losses[0] if losses else None,
        "step_s": [b - a for a, b in zip([timer.t_loop, *timer.ends], timer.ends)],
    }
    if profiled is not None:
        result["profile"] = profiled
    print(f"model: {n_all / 1e6:.0f}M parameters; shape {shape}: {counts['sequence_tokens_per_pair']:.0f} decoder "
          f"tokens/pair (2 concatenated sequences), batch {batch}, {'bf16 autocast' if cuda else 'fp32'}, DPO "
          f"sigmoid, precompute_ref_log_probs, optim {optim}, checkpointing {int(checkpointing)}; "
          f"{result['timed_steps']} timed steps, whole run {wall:.0f}s")
    print(f"pairs/s {pairs_s:.2f} | decoder tokens/s {pairs_s * counts['sequence_tokens_per_pair']:,.0f}")
    print(f"MFU (6*N*tokens/s / peak) {100 * mfu:.1f}% | useful MFU (isdaa's work: prompt once, head on "
          f"response tokens) {100 * useful:.1f}%")
    if cuda:
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        print(f"peak GPU memory {result['peak_memory_gib']:.1f} GiB allocated "
              f"({result['peak_reserved_gib']:.1f} GiB reserved)")
    if os.environ.get("RESULT_JSON"):
        Path(os.environ["RESULT_JSON"]).write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
