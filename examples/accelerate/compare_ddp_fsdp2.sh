#!/bin/bash
# Two CPU processes (torchrun, gloo): DDP (distributed: accelerate) against isdaa's FSDP2 (distributed: fsdp2),
# alternating, twice; prints each launch's peak resident memory of its largest process and the median pairs/s.
#   bash examples/accelerate/compare_ddp_fsdp2.sh          (from the repository root; ~5 min on 2 cores)
# The model: a random 4-layer Llama, hidden 1024 (51M parameters, 205 MB in fp32); prompts of 64-80 tokens.
set -euo pipefail
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
$PY - "$WORK/pairs.jsonl" <<'PYEOF'
import json, random, sys
rng = random.Random(0)
words = lambda n: " ".join(f"w{rng.randrange(24)}" for _ in range(n))
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        tail = words(rng.randrange(1, 4))
        f.write(json.dumps({"prompt": f"topic{rng.randrange(4)} " + words(rng.randrange(64, 80)),
                            "chosen": "good " + tail, "rejected": "bad " + tail}) + "\n")
PYEOF
INIT="{'hidden_size': 1024, 'intermediate_size': 2816, 'num_hidden_layers': 4, 'num_attention_heads': 8, 'num_key_value_heads': 8, 'max_position_embeddings': 128, 'pad_token_id': 0, 'bos_token_id': 1, 'eos_token_id': 2, 'vocab_size': 40}"
uptime
for rep in 1 2; do
  for mode in accelerate fsdp2; do
    out="$WORK/run-$mode"
    /usr/bin/time -f "$mode: peak RSS of the largest process %M kB" \
      $PY -m torch.distributed.run --nproc_per_node 2 --master_port 29651 -m isdaa.cli train --output_dir "$out" \
      --overwrite --distributed $mode --batch_size 4 --max_steps 5 --progress false --num_threads 1 --plots false \
      --model.init "$INIT" --model.tokenizer examples/tiny/tokenizer --data.train_file "$WORK/pairs.jsonl" \
      --data.max_length 112 --data.max_prompt_length 96 --optim.lr 1e-5 2>&1 | grep -E "peak RSS|^error"
    $PY -c "import json, statistics; m = [json.loads(l) for l in open('$out/metrics.jsonl') if 'throughput/pairs_per_s' in l]
print('$mode: median pairs/s of steps 2-5', round(statistics.median(x['throughput/pairs_per_s'] for x in m[1:]), 3))"
  done
done
uptime
