#!/usr/bin/env bash
# SmolLM2-135M-Instruct, offline, with sentiment (VADER) as the gold reward:
#   prepare -> pairs (train, eval) -> DPO (LoRA) -> IS-DPO (LoRA) -> isdaa eval x3 (vs the base model) -> table.
# From the repository root:  make models && bash examples/smollm2-sentiment/run.sh
# About 20-25 minutes on 2 idle CPU cores (an estimate; 91 min measured on a shared, oversubscribed machine: see
# docs/smollm2.md). Outputs (pairs, runs, eval JSON, merged weights) go to $OUT
# (default runs/smollm2-sentiment, git-ignored); the table goes to $RESULTS (default this folder):
# results.md and results.json, small text files. Environment: OUT, RESULTS, THREADS (default 2),
# TRAIN_ARGS (extra `isdaa train` options for both runs, e.g. TRAIN_ARGS="--lr 1e-4").
set -euo pipefail
EX=examples/smollm2-sentiment
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/smollm2-sentiment}
RESULTS=${RESULTS:-$EX}
THREADS=${THREADS:-2}
read -r -a TRAIN_ARGS <<< "${TRAIN_ARGS:-}"  # extra options for both training runs, e.g. TRAIN_ARGS="--lr 1e-4"
export OMP_NUM_THREADS=$THREADS TOKENIZERS_PARALLELISM=false
if [ -x .venv/bin/isdaa ]; then ISDAA=${ISDAA:-.venv/bin/isdaa}; PY=${PY:-.venv/bin/python}; else ISDAA=${ISDAA:-isdaa}; PY=${PY:-python3}; fi
mkdir -p "$OUT"
: > "$OUT/timings.tsv"

stage() {  # stage NAME COMMAND...: run it; print and record its wall time and CPU time (user + sys)
  local name=$1; shift
  echo "== $name: $*" >&2
  local tf; tf=$(mktemp)
  local TIMEFORMAT='%3R %3U %3S'
  { time "$@" 2>&3 ; } 3>&2 2>"$tf"
  local real user sys; read -r real user sys < "$tf"; rm -f "$tf"
  local cpu; cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
  printf '%s\t%.1f\t%.1f\n' "$name" "$real" "$cpu" >> "$OUT/timings.tsv"
  printf '== %s: %.1f s wall, %.1f s CPU\n' "$name" "$real" "$cpu" >&2
}

T0=$(date +%s.%N)
stage prepare "$ISDAA" models prepare smollm2 > "$OUT/model_dir.txt"
MODEL=$(cat "$OUT/model_dir.txt")
P=(--config "$EX/pairs.yaml" --model "$MODEL" --num-threads "$THREADS")
stage pairs_train "$ISDAA" pairs "${P[@]}" --prompts "$EX/prompts/train.txt" --seed 0 \
  --out "$OUT/train_pairs.jsonl" --stats-out "$OUT/train_pairs.stats.json"
stage pairs_eval "$ISDAA" pairs "${P[@]}" --prompts "$EX/prompts/eval.txt" --seed 1 \
  --out "$OUT/eval_pairs.jsonl" --stats-out "$OUT/eval_pairs.stats.json"
for method in dpo is-dpo; do
  stage "train_$method" "$ISDAA" train --config "$EX/$method.yaml" --model "$MODEL" --num_threads "$THREADS" \
    --output_dir "$OUT/$method" --ref_cache_dir "$OUT/ref-cache" \
    --data.train_file "$OUT/train_pairs.jsonl" --data.eval_file "$OUT/eval_pairs.jsonl" ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"}
done
E=(--config "$EX/eval.yaml" --reference "$MODEL" --prompts "$OUT/eval_pairs.jsonl" --num_threads "$THREADS")
stage eval_base "$ISDAA" eval "${E[@]}" --policy "$MODEL" --output "$OUT/eval_base.json"
for method in dpo is-dpo; do
  stage "eval_$method" "$ISDAA" eval "${E[@]}" --policy "$OUT/$method/final" --output "$OUT/eval_$method.json"
done
printf 'total\t%.1f\n' "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" >> "$OUT/timings.tsv"
"$PY" "$EX/table.py" "$OUT" --results "$RESULTS" --threads "$THREADS"
