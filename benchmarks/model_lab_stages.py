"""The real-model lab's three stages, the old way and the new way side by side in this one process (1 thread):

- pairs: `generate_pairs` with transformers' `generate` and the concatenated behaviour pass, against
  `shared_prefill` (each prompt run once for its two samples and once for their log-probs; rows leave the batch
  at EOS);
- one evaluation (`--eval-prompts` × 2 samples, reference KL) of a LoRA policy: LoRA on every layer, `generate` and
  the reference over prompt and completion, against LoRA on the top `--layers` layers, shared prefill and the
  reference's prompt cache kept from the run's first evaluation;
- one training step of 8 pairs (forward, backward, AdamW): LoRA r16 on every layer (the old protocol) against LoRA
  on the top `--layers` layers with the frozen trunk cached (`lora.layers`, `lora.cache_trunk`; the trunk of a
  pair is computed at its first visit: "not cached yet" is that step, "cached" any later epoch's; medians of 3).

    python benchmarks/model_lab_stages.py [--model smollm2] [--pairs 32] [--eval-prompts 64] [--layers 4]

Prints each stage's seconds and the ratio, with the machine's load average (absolute times are comparable only at
equal load; the ratios are the result). Needs `isdaa models prepare smollm2` (or --model DIR).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from isdaa.config import LoraConfig  # noqa: E402
from isdaa.data import collate, tokenize_rows  # noqa: E402
from isdaa.data.prompts import load_prompt_file, tokenize_prompts  # noqa: E402
from isdaa.eval.sampled import Sampling, sample_and_score  # noqa: E402
from isdaa.generation import generate_pairs  # noqa: E402
from isdaa.modeling.loading import apply_lora  # noqa: E402
from isdaa.modeling.logprobs import batch_logps  # noqa: E402
from isdaa.modeling.prepare import MODELS, model_dir  # noqa: E402
from isdaa.modeling.prompt_cache import PromptCache  # noqa: E402
from isdaa.modeling.trunk import TrunkCache  # noqa: E402
from isdaa.objectives import Objective, PairLogps  # noqa: E402

PROMPTS = ROOT / "examples/smollm2-sentiment/prompts"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _chat(prompts):
    return [[{"role": "user", "content": p}] for p in prompts]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_pairs(model, tok, prompts) -> dict:
    def run(shared):
        return generate_pairs(model, tok, _chat(prompts), scorer="vader", label="bt", bt_temperature=0.1,
                              max_new_tokens=32, seed=0, batch_size=64, with_scores=True, shared_prefill=shared)
    old, rows = _timed(lambda: run(False))
    new, _ = _timed(lambda: run(True))
    return {"stage": f"pairs ({len(prompts)} prompts)", "old": old, "new": new, "rows": rows}


def bench_eval(old_model, new_model, tok, prompt_ids, texts) -> list[dict]:
    def run(model, shared, cache):
        sampling = Sampling(n=2, max_new_tokens=32, seed=1, batch_size=64, policy_logps_from_generate=True,
                            shared_prefill=shared)
        return sample_and_score(model, tok, prompt_ids, texts, sampling, reference=model,
                                reference_context=model.disable_adapter, reference_prompts=cache)
    old, _ = _timed(lambda: run(old_model, False, None))
    with new_model.disable_adapter():
        build, cache = _timed(lambda: PromptCache.encode(new_model, prompt_ids, group_size=32,
                                                         pad_id=tok.pad_token_id))
    new, _ = _timed(lambda: run(new_model, True, cache))
    n = len(prompt_ids)
    return [{"stage": f"evaluation ({n} prompts x 2), reference cache kept", "old": old, "new": new},
            {"stage": f"evaluation ({n} prompts x 2), the run's first (cache built)", "old": old, "new": new + build}]


def _lora_model(path, layers):
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    return apply_lora(model, LoraConfig(enabled=True, r=16, alpha=32, target_modules=TARGETS, layers=layers), seed=0)


def bench_step(path, tok, rows, layers) -> list[dict]:
    examples, _ = tokenize_rows(rows[:8], tok, max_length=1024, max_prompt_length=512, source="pairs")
    batch = collate(examples, tok.pad_token_id)
    objective = Objective(loss="sigmoid", beta=0.05)
    ref = PairLogps(torch.tensor([r["behavior_chosen_logps"] for r in rows[:8]]),
                    torch.tensor([r["behavior_rejected_logps"] for r in rows[:8]]))

    def step(model, opt, logps_fn):
        logps = logps_fn(model, batch)
        out = objective(PairLogps(logps["chosen_logps"], logps["rejected_logps"], logps["chosen_lengths"],
                                  logps["rejected_lengths"]), ref)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def setup(layers_):
        model = _lora_model(path, layers_).train()
        return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    old_model, old_opt = setup(0)
    step(old_model, old_opt, batch_logps)  # warm-up
    old = statistics.median(_timed(lambda: step(old_model, old_opt, batch_logps))[0] for _ in range(3))
    old_model = old_opt = None  # memory back before the new model
    model, opt = setup(layers)
    trunk = TrunkCache(model.get_base_model().config.num_hidden_layers - layers)
    cold, _ = _timed(lambda: step(model, opt, trunk.batch_logps))
    warm = statistics.median(_timed(lambda: step(model, opt, trunk.batch_logps))[0] for _ in range(3))
    return [{"stage": f"training step, 8 pairs: LoRA on all layers -> top {layers}, trunk not cached yet",
             "old": old, "new": cold},
            {"stage": f"training step, 8 pairs: LoRA on all layers -> top {layers}, trunk cached", "old": old,
             "new": warm}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--pairs", type=int, default=32, help="training prompts sampled for the pairs stage")
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = model_dir(args.model) if args.model in MODELS else Path(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    rows_out = []
    plain = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True).eval()  # the pairs' sampler
    pair_result = bench_pairs(plain, tok, load_prompt_file(PROMPTS / "train.txt")[: args.pairs])
    del plain
    rows = pair_result.pop("rows")
    rows_out.append(pair_result)
    ids, texts, _ = tokenize_prompts(tok, _chat(load_prompt_file(PROMPTS / "eval.txt")[: args.eval_prompts]), 10**9)
    # adapters at their zero init: both policies equal the reference; what differs is the code path and LoRA's cost
    old_model, new_model = _lora_model(path, 0).eval(), _lora_model(path, args.layers).eval()
    rows_out += bench_eval(old_model, new_model, tok, ids, texts)
    del old_model, new_model
    rows_out += bench_step(path, tok, rows, args.layers)
    print(f"load average before/after: {LOAD0} / {os.getloadavg()[0]:.2f}; torch threads 1; model {path.name}")
    print("| stage | old s | new s | old / new |\n| --- | --- | --- | --- |")
    for r in rows_out:
        print(f"| {r['stage']} | {r['old']:.1f} | {r['new']:.1f} | {r['old'] / r['new']:.2f}x |")


LOAD0 = f"{os.getloadavg()[0]:.2f}"

if __name__ == "__main__":
    main()
