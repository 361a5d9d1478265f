#!/usr/bin/env bash
# The real-model lab (examples/smollm2-lab.yaml): SmolLM2-135M-Instruct, VADER sentiment as the gold reward,
# DPO / IS-DPO / IPO / IS-IPO / the recommended weighting / chiPO, 2 seeds, frontier plots and a verdict.
# From the repository root:  make models && bash examples/smollm2-sentiment/run.sh [--quick] [--key value ...]
# Outputs go to runs/smollm2-lab (runs/smollm2-lab-quick with --quick); a second call resumes (finished runs are
# skipped). This folder holds the lab's prompts (make_prompts.py writes them) and results.md, the measurement of
# the single DPO / IS-DPO run this example used to be (kept for docs/smollm2.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -x .venv/bin/isdaa ]; then ISDAA=${ISDAA:-.venv/bin/isdaa}; else ISDAA=${ISDAA:-isdaa}; fi
export TOKENIZERS_PARALLELISM=false
"$ISDAA" models prepare smollm2 > /dev/null
exec "$ISDAA" lab --config examples/smollm2-lab.yaml "$@"
