#!/usr/bin/env bash
# One-GPU check: isdaa's real training step (isdaa.train: shared prompt, completion-only fp32 head, cached
# reference) in bf16 autocast on a ~0.67B-parameter random Llama; prints tokens/s and model-FLOPs utilisation.
# Finishes in about a minute on an H200 (benchmarks/gpu_session.sh runs it with TRL's DPOTrainer beside it).
#
#   bash benchmarks/gpu_check.sh                      # from the repository root, .venv or python on PATH
#   PEAK_TFLOPS=989 SHAPE=hh BATCH=8 STEPS=12 bash benchmarks/gpu_check.sh
#   CHECKPOINTING=1 COMPILE=1 GROUP_BY_LENGTH=1 bash benchmarks/gpu_check.sh   # model.gradient_checkpointing,
#                                                  # model.compile, data.group_by_length (each off by default)
#   WEIGHTING=none bash benchmarks/gpu_check.sh    # plain DPO (default: is, IS-DPO)
#   RESULT_JSON=out.json bash benchmarks/gpu_check.sh   # the figures as JSON too
#   PROFILE=1 bash benchmarks/gpu_check.sh         # + a profile of 2 steps and their host-device syncs
#                                                  # (benchmarks/throughput/gpu_profile.py; pairs/s then not comparable)
#   THREADS=8: torch CPU threads (the random init of the model, the data; default 8 on a GPU machine)
#
# MFU = 6 * N * tokens/s / peak, N = parameters without the input embedding, tokens = the tokens the decoder ran
# (each prompt once + both completions); `useful MFU` counts the LM head only where isdaa applies it (response
# positions). PEAK_TFLOPS: dense bf16 peak of the card, default 989 (H100 SXM; H100 PCIe ~756, H200 989, A100 312).
# pairs/s: the wall clock between the ends of the timed steps (the device synchronised; logging included), and
# `in-step`: isdaa's own throughput/pairs_per_s (forward, backward, clip, optimizer only).
# A bare bf16 matmul is timed too, as the achievable ceiling of this card.
# Dry run of the code path on a CPU (tiny model): ALLOW_CPU=1 LAYERS=2 HIDDEN=64 HEADS=4 KV_HEADS=2 INTER=128 \
#   STEPS=3 BATCH=2 SHAPE=hh bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export PEAK_TFLOPS="${PEAK_TFLOPS:-989}" SHAPE="${SHAPE:-hh}" BATCH="${BATCH:-8}" STEPS="${STEPS:-12}" WARMUP="${WARMUP:-2}"
export LAYERS="${LAYERS:-24}" HIDDEN="${HIDDEN:-1536}" HEADS="${HEADS:-16}" KV_HEADS="${KV_HEADS:-4}" INTER="${INTER:-4096}"
export CHECKPOINTING="${CHECKPOINTING:-0}" COMPILE="${COMPILE:-0}" GROUP_BY_LENGTH="${GROUP_BY_LENGTH:-0}"
export WEIGHTING="${WEIGHTING:-is}" RESULT_JSON="${RESULT_JSON:-}" PROFILE="${PROFILE:-0}"
# a fresh inductor cache: COMPILE=1 then pays (and shows) the real compile time, and no torn entry of an earlier,
# killed compilation is loaded
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d -t isdaa-inductor-XXXXXX)}"
export ALLOW_CPU="${ALLOW_CPU:-0}" TQDM_DISABLE=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
timeout "${TIMEOUT_S:-290}" "$PY" - <<'EOF'
import json, os, statistics, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, "benchmarks")
from throughput import setup as tt  # data, tokenizer and model shapes of the CPU benchmark

import isdaa
from isdaa.config import TrainConfig, load_config

env = os.environ
cuda = torch.cuda.is_available()
if not cuda and env["ALLOW_CPU"] != "1":
    sys.exit("gpu_check: no CUDA device (ALLOW_CPU=1 runs the code path on the CPU as a dry run)")
dev = torch.device("cuda" if cuda else "cpu")
card = torch.cuda.get_device_name(0) if cuda else "cpu (dry run)"
print("device:", card, "| torch", torch.__version__)
peak = float(env["PEAK_TFLOPS"]) * 1e12
result = {"trainer": "isdaa", "device": card, "torch": torch.__version__, "peak_tflops": peak / 1e12}

# 1. the card's bf16 matmul ceiling
if cuda:
    n = 8192
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    mm = 20 * 2 * n**3 / (time.perf_counter() - t)
    print(f"bf16 matmul {n}x{n}: {mm / 1e12:.0f} TFLOP/s = {100 * mm / peak:.0f}% of PEAK_TFLOPS={peak / 1e12:.0f}")
    result["matmul_tflops"] = mm / 1e12
    del a, b
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()

# 2. isdaa.train on a random Llama
init = tt.gpu_init(env)
batch, steps, warmup, shape = int(env["BATCH"]), int(env["STEPS"]), int(env["WARMUP"]), env["SHAPE"]
work = Path(tempfile.mkdtemp(prefix="isdaa-gpu-"))
tok_dir, data = tt.prepare(work, shape, batch * steps, 1.0)
cfg = load_config(TrainConfig, None, {
    "output_dir": str(work / "run"), "batch_size": batch, "max_steps": steps, "log_every": 1, "progress": False,
    "mixed_precision": "bf16" if cuda else "no", "eval_batch_size": 2 * batch, "model.init": init,
    "model.tokenizer": str(tok_dir), "data.train_file": str(data), "data.max_length": 1024,
    "data.max_prompt_length": 768, "optim.lr": 1e-6, "objective.weighting": env["WEIGHTING"],
    "model.gradient_checkpointing": env["CHECKPOINTING"] == "1", "model.compile": env["COMPILE"] == "1",
    "data.group_by_length": env["GROUP_BY_LENGTH"] == "1", "plots": False,
    "num_threads": int(env.get("THREADS", "8" if cuda else "0")),  # CPU threads: the random init, data
})


class StepEnds:
    """Wall-clock ends of the steps, the device synchronised (the on_log hook runs once per logged step)."""

    def __init__(self, profile=None):
        self.t_loop, self.ends, self.profile = None, [], profile

    def on_train_begin(self, model, tokenizer):
        self.t_loop = time.perf_counter()

    def on_log(self, step, metrics):
        if cuda:
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())
        if self.profile is not None:
            self.profile.step()


from contextlib import nullcontext

from throughput.gpu_profile import StepProfile

profile = StepProfile(warmup) if env["PROFILE"] == "1" else None
timer = StepEnds(profile)
t0 = time.perf_counter()
with profile or nullcontext():
    isdaa.train(cfg, callbacks=[timer])
wall = time.perf_counter() - t0
if profile is not None:
    result["profile"] = profile.report()
hist = [json.loads(l) for l in (work / "run" / "metrics.jsonl").read_text().splitlines()]
hist = [m for m in hist if "throughput/pairs_per_s" in m][warmup:]
in_step_pairs_s = statistics.median(m["throughput/pairs_per_s"] for m in hist)
w = max(warmup, 1)
pairs_s = (len(timer.ends) - w) * batch / (timer.ends[-1] - timer.ends[w - 1])

from isdaa.data import load_rows, tokenize_rows
from isdaa.modeling.loading import load_tokenizer

ex, _ = tokenize_rows(load_rows(data), load_tokenizer(cfg.model), max_length=1024, max_prompt_length=768)
run_tok = statistics.fmean(len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in ex)  # prompt once
resp_tok = statistics.fmean(len(e.chosen_ids) + len(e.rejected_ids) for e in ex)
seq_tok = statistics.fmean(2 * len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in ex)
from transformers import LlamaConfig, LlamaForCausalLM

with torch.device("meta"):
    m = LlamaForCausalLM(LlamaConfig(**init))
n_all = sum(p.numel() for p in m.parameters())  # tied: the head counted once
n_head = m.lm_head.weight.numel()
n_body = n_all - n_head  # decoder layers + norms
n_mfu = n_all  # N without the input embedding: tied, so the embedding matrix counts once, as the head
tok_s = pairs_s * run_tok
mfu = 6 * n_mfu * tok_s / peak
useful = 6 * pairs_s * (n_body * run_tok + n_head * resp_tok) / peak
print(f"model: {n_all / 1e6:.0f}M parameters ({init['num_hidden_layers']} layers, hidden {init['hidden_size']}); "
      f"shape {shape}: {run_tok:.0f} decoder tokens/pair ({seq_tok:.0f} as 2 concatenated sequences), batch {batch}, "
      f"{'bf16 autocast' if cuda else 'fp32'}, weighting {env['WEIGHTING']}; {len(timer.ends) - w} timed steps, "
      f"whole run {wall:.0f}s; checkpointing {env['CHECKPOINTING']}, compile {env['COMPILE']}, "
      f"group_by_length {env['GROUP_BY_LENGTH']}")
print(f"pairs/s {pairs_s:.2f} (in-step {in_step_pairs_s:.2f}) | decoder tokens/s {tok_s:,.0f} | "
      f"sequence tokens/s {pairs_s * seq_tok:,.0f}")
print(f"MFU (6*N*tokens/s / peak) {100 * mfu:.1f}% | useful MFU (head on response tokens only) {100 * useful:.1f}%")
result.update(
    model_params=n_all, layers=init["num_hidden_layers"], hidden=init["hidden_size"], shape=shape, batch=batch,
    steps=steps, timed_steps=len(timer.ends) - w, weighting=env["WEIGHTING"], checkpointing=env["CHECKPOINTING"] == "1",
    compile=env["COMPILE"] == "1", group_by_length=env["GROUP_BY_LENGTH"] == "1", whole_run_s=wall,
    pairs_per_s=pairs_s, in_step_pairs_per_s=in_step_pairs_s, decoder_tokens_per_pair=run_tok,
    sequence_tokens_per_pair=seq_tok, response_tokens_per_pair=resp_tok, decoder_tokens_per_s=tok_s,
    sequence_tokens_per_s=pairs_s * seq_tok, mfu=mfu, useful_mfu=useful,
    step_s=[b - a for a, b in zip([timer.t_loop, *timer.ends], timer.ends)],
)
if cuda:
    result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    print(f"peak GPU memory {result['peak_memory_gib']:.1f} GiB allocated "
          f"({result['peak_reserved_gib']:.1f} GiB reserved)")
if env.get("RESULT_JSON"):
    Path(env["RESULT_JSON"]).write_text(json.dumps(result) + "\n")
EOF
