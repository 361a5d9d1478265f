#!/usr/bin/env bash
# One-GPU check: isdaa's real training step (isdaa.train: shared prompt, completion-only fp32 head, cached
# reference) in bf16 autocast on a ~0.67B-parameter random Llama; prints tokens/s and model-FLOPs utilisation.
# Finishes in well under 5 minutes on an H100.
#
#   bash benchmarks/gpu_check.sh                      # from the repository root, .venv or python on PATH
#   PEAK_TFLOPS=989 SHAPE=hh BATCH=8 STEPS=12 bash benchmarks/gpu_check.sh
#   CHECKPOINTING=1 COMPILE=1 GROUP_BY_LENGTH=1 bash benchmarks/gpu_check.sh   # model.gradient_checkpointing,
#                                                  # model.compile, data.group_by_length (each off by default)
#
# MFU = 6 * N * tokens/s / peak, N = parameters without the input embedding, tokens = the tokens the decoder ran
# (each prompt once + both completions); `useful MFU` counts the LM head only where isdaa applies it (response
# positions). PEAK_TFLOPS: dense bf16 peak of the card, default 989 (H100 SXM; H100 PCIe ~756, H200 989, A100 312).
# A bare bf16 matmul is timed too, as the achievable ceiling of this card.
# Dry run of the code path on a CPU (tiny model): ALLOW_CPU=1 LAYERS=2 HIDDEN=64 HEADS=4 KV_HEADS=2 INTER=128 \
#   STEPS=3 BATCH=2 SHAPE=hh bash benchmarks/gpu_check.sh
# Status: written without access to a GPU (only the CPU dry run was executed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export PEAK_TFLOPS="${PEAK_TFLOPS:-989}" SHAPE="${SHAPE:-hh}" BATCH="${BATCH:-8}" STEPS="${STEPS:-12}" WARMUP="${WARMUP:-2}"
export LAYERS="${LAYERS:-24}" HIDDEN="${HIDDEN:-1536}" HEADS="${HEADS:-16}" KV_HEADS="${KV_HEADS:-4}" INTER="${INTER:-4096}"
export CHECKPOINTING="${CHECKPOINTING:-0}" COMPILE="${COMPILE:-0}" GROUP_BY_LENGTH="${GROUP_BY_LENGTH:-0}"
# a fresh inductor cache: COMPILE=1 then pays (and shows) the real compile time, and no torn entry of an earlier,
# killed compilation is loaded
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d -t isdaa-inductor-XXXXXX)}"
export ALLOW_CPU="${ALLOW_CPU:-0}" TQDM_DISABLE=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
timeout "${TIMEOUT_S:-290}" "$PY" - <<'EOF'
import json, os, statistics, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, "benchmarks")
import train_throughput as tt  # data and tokenizer of the CPU benchmark

import isdaa
from isdaa.config import TrainConfig, load_config

env = os.environ
cuda = torch.cuda.is_available()
if not cuda and env["ALLOW_CPU"] != "1":
    sys.exit("gpu_check: no CUDA device (ALLOW_CPU=1 runs the code path on the CPU as a dry run)")
dev = torch.device("cuda" if cuda else "cpu")
print("device:", torch.cuda.get_device_name(0) if cuda else "cpu (dry run)", "| torch", torch.__version__)
peak = float(env["PEAK_TFLOPS"]) * 1e12

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
    del a, b

# 2. isdaa.train on a random Llama
init = dict(tt.COMMON_INIT, hidden_size=int(env["HIDDEN"]), intermediate_size=int(env["INTER"]),
            num_hidden_layers=int(env["LAYERS"]), num_attention_heads=int(env["HEADS"]),
            num_key_value_heads=int(env["KV_HEADS"]), tie_word_embeddings=True, max_position_embeddings=2048)
batch, steps, warmup, shape = int(env["BATCH"]), int(env["STEPS"]), int(env["WARMUP"]), env["SHAPE"]
work = Path(tempfile.mkdtemp(prefix="isdaa-gpu-"))
tok_dir, data = tt.prepare(work, shape, batch * steps, 1.0)
cfg = load_config(TrainConfig, None, {
    "output_dir": str(work / "run"), "batch_size": batch, "max_steps": steps, "log_every": 1, "progress": False,
    "mixed_precision": "bf16" if cuda else "no", "eval_batch_size": 2 * batch, "model.init": init,
    "model.tokenizer": str(tok_dir), "data.train_file": str(data), "data.max_length": 1024,
    "data.max_prompt_length": 768, "optim.lr": 1e-6, "objective.weighting": "is",
    "model.gradient_checkpointing": env["CHECKPOINTING"] == "1", "model.compile": env["COMPILE"] == "1",
    "data.group_by_length": env["GROUP_BY_LENGTH"] == "1",
})
t0 = time.perf_counter()
isdaa.train(cfg)
wall = time.perf_counter() - t0
hist = [json.loads(l) for l in (work / "run" / "metrics.jsonl").read_text().splitlines()]
hist = [m for m in hist if "throughput/pairs_per_s" in m][warmup:]
pairs_s = statistics.median(m["throughput/pairs_per_s"] for m in hist)

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
      f"{'bf16 autocast' if cuda else 'fp32'}, IS-DPO; {len(hist)} timed steps, whole run {wall:.0f}s; "
      f"checkpointing {env['CHECKPOINTING']}, compile {env['COMPILE']}, group_by_length {env['GROUP_BY_LENGTH']}")
print(f"pairs/s {pairs_s:.2f} | decoder tokens/s {tok_s:,.0f} | sequence tokens/s {pairs_s * seq_tok:,.0f}")
print(f"MFU (6*N*tokens/s / peak) {100 * mfu:.1f}% | useful MFU (head on response tokens only) {100 * useful:.1f}%")
if cuda:
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
EOF
