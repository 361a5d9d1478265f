#!/usr/bin/env bash
# One short GPU session, everything in one command (a lent GPU is short of time, not of memory):
#   1. the card and the library versions;
#   2. benchmarks/gpu_check.sh: isdaa's real step, bf16 autocast, random ~0.67B Llama, HH shape, batch 8, IS-DPO;
#   3. benchmarks/gpu_trl.py: TRL 1.16's DPOTrainer on the same card, model, data and batch (its fused head);
#   4. the tiny example's `isdaa train` (examples/tiny-is-dpo.yaml) with the in-run monitor, bf16, on the GPU;
#   5. extras while time is left: isdaa with plain DPO (the like-for-like ratio), a profile of 2 steps of each
#      trainer with their host-device syncs (PROFILE=1), batch 32 for both trainers, isdaa with model.compile.
# Each stage is a fresh process with its own time limit; a stage that fails is logged and the next one runs.
#
#   OUT=/tmp/gpu-out PEAK_TFLOPS=989 bash benchmarks/gpu_session.sh
#   WHEELS=dir ...   # first install trl / datasets / dill / multiprocess from wheels in dir (a machine offline)
#   BUDGET_S=390 ... # stop starting stages that would not finish within this many seconds of the start
#   ONLY="versions isdaa-profile-b8 trl-profile-b8" ...   # only these stages (names as in the log)
# Dry run on a CPU (tiny model, every stage): ALLOW_CPU=1 LAYERS=2 HIDDEN=64 HEADS=4 KV_HEADS=2 INTER=128 \
#   STEPS=3 BATCH=2 BIG_BATCH=2 OUT=/tmp/gpu-out bash benchmarks/gpu_session.sh
#
# Writes under $OUT: session.log (everything printed), results.jsonl (one line per measured run), stages.tsv
# (each stage's exit code and seconds), tiny-run.tar.gz (the tiny run's metrics, summary and plots).
# PROFILE=1 runs' pairs/s include the profiler's overhead: only the measured runs go to results.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET_S="${BUDGET_S:-390}"
OUT="${OUT:-$(mktemp -d -t isdaa-gpu-session-XXXXXX)}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHON="$PY" PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
export PEAK_TFLOPS="${PEAK_TFLOPS:-989}" SHAPE="${SHAPE:-hh}" BATCH="${BATCH:-8}" STEPS="${STEPS:-12}"
BIG_BATCH="${BIG_BATCH:-32}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
WORK="$(mktemp -d -t isdaa-gpu-work-XXXXXX)"
export PY OUT WORK

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

# stage NAME SECONDS CMD...: run CMD under `timeout SECONDS` if that many seconds are left, else skip it
stage() {
    local name="$1" limit="$2"
    shift 2
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then
        return 0
    fi
    if [ "$(left)" -lt "$limit" ]; then
        echo "=== $name: skipped ($(left)s left, needs $limit)"
        printf '%s\tskipped\t0\n' "$name" >> "$OUT/stages.tsv"
        return 0
    fi
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s, $(left)s left)"
    local t=$(date +%s)
    timeout -k 10 "$limit" bash -c '"$@"' stage "$@"  # a fresh bash: the functions below are exported
    local rc=$?
    echo "=== $name: exit $rc in $(( $(date +%s) - t ))s"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t ))" >> "$OUT/stages.tsv"
}

install_wheels() {
    [ -n "${WHEELS:-}" ] || return 0
    local pa datasets
    pa="$("$PY" -c 'import pyarrow; print(pyarrow.__version__.split(".")[0])' 2>/dev/null || echo 0)"
    # datasets 5.2 asks pyarrow >= 24; an older pyarrow on the machine gets datasets 4.8.5 (pyarrow >= 21)
    if [ "$pa" -ge 24 ]; then datasets="$(ls "$WHEELS"/datasets-5*.whl)"; else datasets="$(ls "$WHEELS"/old/datasets-4*.whl)"; fi
    echo "pyarrow major $pa: installing $(basename "$datasets"), trl, dill, multiprocess into $WORK/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        "$datasets" "$WHEELS"/trl-*.whl "$WHEELS"/dill-*.whl "$WHEELS"/multiprocess-*.whl || return 1
    export PYTHONPATH="$PYTHONPATH:$WORK/site"
}

versions() {
    nvidia-smi 2>/dev/null || echo "(no nvidia-smi)"
    "$PY" - <<'EOF'
import importlib, platform
import torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
for name in ("transformers", "accelerate", "trl", "datasets", "pyarrow", "triton", "peft"):
    try:
        print(f"  {name} {importlib.import_module(name).__version__}")
    except Exception as exc:  # a missing one is reported, not fatal
        print(f"  {name}: {type(exc).__name__}: {exc}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"  {p.name}: {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}")
EOF
}

# one measured run: its JSON line (RESULT_JSON) appended to results.jsonl with the stage's name
measure() {
    local name="$1"
    shift
    local json="$WORK/$name.json"
    RESULT_JSON="$json" "$@" && [ -s "$json" ] && "$PY" -c \
        'import json,sys; r=json.load(open(sys.argv[1])); r["run"]=sys.argv[2]; print(json.dumps(r))' \
        "$json" "$name" >> "$OUT/results.jsonl"
}

isdaa_check() { TIMEOUT_S=100000 bash benchmarks/gpu_check.sh; }
trl_check() { "$PY" benchmarks/gpu_trl.py; }

tiny_train() {
    "$PY" - "$WORK/tiny" <<'EOF'
import json, sys
from pathlib import Path

import torch

from isdaa.cli import main

out = Path(sys.argv[1])
cuda = torch.cuda.is_available()
rc = main(["train", "--config", "examples/tiny-is-dpo.yaml", "--output_dir", str(out), "--monitor.every", "16",
           "--mixed_precision", "bf16" if cuda else "no", "--progress", "false"])
records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
monitor = [r for r in records if "monitor/kl_k3" in r]
print(f"tiny isdaa train: exit {rc}; {len(records)} records, {len(monitor)} monitor evaluations; last monitor: "
      + json.dumps({k: v for k, v in (monitor[-1] if monitor else {}).items() if k.startswith("monitor/")}))
if cuda:
    print(f"tiny run on {torch.cuda.get_device_name(0)}: peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
ok = rc == 0 and len(monitor) >= 2 and (not cuda or torch.cuda.max_memory_allocated() > 0)
sys.exit(0 if ok else 1)
EOF
    local rc=$?
    tar -czf "$OUT/tiny-run.tar.gz" -C "$WORK" --exclude='*.safetensors' --exclude='ref-cache' --exclude='checkpoints' tiny \
        2>/dev/null
    return $rc
}

export -f measure isdaa_check trl_check tiny_train versions

session() {
echo "gpu_session: $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET_S}s, out $OUT"
install_wheels || echo "=== wheels: install failed (the TRL stages will fail)"
stage versions 60 versions
stage isdaa-is-b$BATCH 170 measure isdaa-is-b$BATCH isdaa_check
stage trl-b$BATCH 170 measure trl-b$BATCH trl_check
stage tiny-train 100 tiny_train
stage isdaa-dpo-b$BATCH 120 measure isdaa-dpo-b$BATCH env WEIGHTING=none bash -c 'TIMEOUT_S=100000 bash benchmarks/gpu_check.sh'
stage isdaa-profile-b$BATCH 120 env WEIGHTING=none PROFILE=1 STEPS=6 bash -c 'TIMEOUT_S=100000 bash benchmarks/gpu_check.sh'
stage trl-profile-b$BATCH 120 env PROFILE=1 STEPS=6 "$PY" benchmarks/gpu_trl.py
stage isdaa-dpo-b$BIG_BATCH 130 measure isdaa-dpo-b$BIG_BATCH env WEIGHTING=none BATCH=$BIG_BATCH STEPS=8 \
    bash -c 'TIMEOUT_S=100000 bash benchmarks/gpu_check.sh'
stage trl-b$BIG_BATCH 130 measure trl-b$BIG_BATCH env BATCH=$BIG_BATCH STEPS=8 "$PY" benchmarks/gpu_trl.py
stage isdaa-dpo-compile-b$BATCH 150 measure isdaa-dpo-compile-b$BATCH env WEIGHTING=none COMPILE=1 STEPS=12 WARMUP=4 \
    bash -c 'TIMEOUT_S=100000 bash benchmarks/gpu_check.sh'

echo "=== summary ($(( $(date +%s) - START ))s in all)"
cat "$OUT/stages.tsv"
[ -s "$OUT/results.jsonl" ] && "$PY" - "$OUT/results.jsonl" "$BATCH" "$BIG_BATCH" <<'EOF'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'run':24s} {'pairs/s':>8s} {'tok/s (own)':>12s} {'MFU':>6s} {'useful':>7s} {'peak GiB':>9s}")
for r in rows:
    own = r.get("decoder_tokens_per_s") or r.get("sequence_tokens_per_s")
    print(f"{r['run']:24s} {r['pairs_per_s']:8.2f} {own:12,.0f} {100 * r['mfu']:5.1f}% {100 * r['useful_mfu']:6.1f}% "
          f"{r.get('peak_memory_gib', float('nan')):9.1f}")
by = {r["run"]: r for r in rows}
small, big = sys.argv[2], sys.argv[3]
for a, b in ((f"isdaa-is-b{small}", f"trl-b{small}"), (f"isdaa-dpo-b{small}", f"trl-b{small}"),
             (f"isdaa-dpo-b{big}", f"trl-b{big}")):
    if a in by and b in by:
        print(f"{a} / {b}: pairs/s {by[a]['pairs_per_s'] / by[b]['pairs_per_s']:.2f}x, peak memory "
              f"{by[a].get('peak_memory_gib', float('nan')) / by[b].get('peak_memory_gib', float('nan')):.2f}x")
EOF
}

session 2>&1 | tee -a "$OUT/session.log"
rm -rf "$WORK"
