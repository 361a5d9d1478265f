"""The lab's `isdaa.train` callback: at every evaluation it samples from the policy at temperature 1 and
records the exact gold reward, the KL to the reference (k1, k3), lengths and a few example samples
(`isdaa.eval.sampled`, with the controlled world's own fields: target words, off-support tokens); from
`on_log` it keeps the importance-weight statistics seen since the previous evaluation (`TrainingWindow`, shared
with the model world's `ModelEvaluator`)."""

from __future__ import annotations

import math
import time

import numpy as np

from isdaa.eval.sampled import SampledEval, Sampling, ScoredSamples, sampled_eval
from isdaa.generation import get_scorer, register_scorer
from isdaa.lab.preference_data import completion_words
from isdaa.lab.world import TOPICS, lab_scorer

__all__ = ["LabEvaluator", "TrainingWindow", "eval_fields", "eval_seed", "WEIGHT_KEYS"]

WEIGHT_KEYS = ("weights/ess", "weights/mean", "weights/min", "weights/max", "weights/clipped_frac",
               "weights/raw_log_mean")
TRAIN_KEYS = ("rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "loss")
# (logged metric, reduction over the window, the evaluation record's field)
WINDOW_STATS = (("weights/ess", min, "ess_min"), ("weights/ess", np.mean, "ess_mean"),
                ("weights/mean", np.mean, "w_mean"), ("weights/min", min, "w_min"), ("weights/max", max, "w_max"),
                ("weights/clipped_frac", np.mean, "clipped_frac"), ("weights/raw_log_mean", np.mean, "raw_log_w_mean"),
                ("rewards/accuracies", np.mean, "train_acc"), ("logps/chosen", np.mean, "logps_chosen"),
                ("logps/rejected", np.mean, "logps_rejected"), ("loss", np.mean, "train_loss"))


def eval_seed(seed: int, step: int) -> int:
    """The sampling seed of the evaluation at `step` of a run with seed `seed`."""
    return seed * 1_000_003 + int(step)


def eval_fields(step: int, result: SampledEval) -> dict:
    """The fields every lab evaluation records: gold, KL, √KL, length (tokens, EOS not counted), EOS rate."""
    return {
        "step": int(step), "gold": result.gold, "gold_se": result.gold_se,
        "kl_k1": result.kl_k1, "kl_k1_se": result.kl_k1_se, "kl_k3": result.kl_k3, "kl_k3_se": result.kl_k3_se,
        "kl_k3_clamped": result.kl_k3_clamped, "sqrt_kl": result.sqrt_kl, "length": result.length,
        "finished": result.eos_rate,
    }


class TrainingWindow:
    """The weight statistics and training numbers logged since the previous evaluation, and the lowest ESS
    of the whole run."""

    def __init__(self):
        self.logged: list[dict] = []
        self.ess_min = math.inf

    def observe(self, metrics: dict) -> None:
        """Keep this step's weight statistics and training numbers."""
        rec = {k: float(metrics[k]) for k in WEIGHT_KEYS if k in metrics and metrics[k] is not None}
        if "weights/ess" in rec and math.isfinite(rec["weights/ess"]):
            self.ess_min = min(self.ess_min, rec["weights/ess"])
        for k in TRAIN_KEYS:
            if k in metrics:
                rec[k] = float(metrics[k])
        self.logged.append(rec)

    def ess_min_so_far(self) -> float | None:
        return self.ess_min if math.isfinite(self.ess_min) else None

    def take(self) -> dict:
        """The window's reductions (`WINDOW_STATS`, over the finite values), then an empty window."""
        out = {}
        for key, reduce, name in WINDOW_STATS:
            values = [r[key] for r in self.logged if key in r and math.isfinite(r[key])]
            if values:
                out[name] = float(reduce(values))
        self.logged = []
        return out


class LabEvaluator:
    """`isdaa.train` callback: samples from the policy at every evaluation and records gold, KL, lengths
    and the importance-weight statistics seen since the previous evaluation."""

    def __init__(self, world, reference, tokenizer, *, n_samples: int = 32, seed: int = 0, batch_size: int = 256,
                 max_new_tokens: int | None = None, n_examples: int = 4):
        self.world = world
        self.reference = reference.eval()
        self.tokenizer = tokenizer
        self.n = n_samples
        self.seed = seed
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens or world.params.max_len + 1
        self.n_examples = n_examples
        self.prompts = world.eval_prompts()
        self.prompt_ids = [tokenizer(p)["input_ids"] for p in self.prompts]
        register_scorer("lab", lab_scorer(world, tokenizer))
        self.scorer = get_scorer("lab")
        self.evals: list[dict] = []
        self.window = TrainingWindow()
        self._t0 = time.time()

    def on_log(self, step, metrics):
        """Keep this step's weight statistics and training numbers for the next evaluation's window."""
        self.window.observe(metrics)

    def on_eval(self, step, model, tokenizer):
        """Sample from the policy, record gold, KL, lengths, target counts and examples (one entry of `evals`)."""
        sampling = Sampling(n=self.n, max_new_tokens=self.max_new_tokens, seed=eval_seed(self.seed, step),
                            batch_size=self.batch_size)
        result = sampled_eval(model, tokenizer, self.prompt_ids, self.prompts, sampling, reference=self.reference,
                              scorer=self.scorer, extra=lambda scored: self._world_fields(scored, tokenizer))
        self.evals.append({
            **eval_fields(step, result), **result.extra, "ess_min_so_far": self.window.ess_min_so_far(),
            "seconds": time.time() - self._t0, **self.window.take(),
        })

    def _world_fields(self, scored: ScoredSamples, tokenizer) -> dict:
        """Distinct target words and their extra copies per response, the share of generated words outside the
        world's vocabulary, and the first sample of the first few prompts."""
        prompts = [self.prompts[i] for i in scored.prompt_index]
        words = [completion_words(tokenizer, s.completion_ids) for s in scored.samples]
        vocab = set(self.world.words)
        hits, reps = [], []
        for p, w in zip(prompts, words):
            targets = TOPICS[self.world.topic_of(p)]
            counts = [w.count(t) for t in targets]
            hits.append(sum(c > 0 for c in counts))
            reps.append(sum(max(c - 1, 0) for c in counts))
        n_tokens = sum(len(w) for w in words)
        return {
            "target_hits": float(np.mean(hits)), "target_repeats": float(np.mean(reps)),
            "off_vocab": float(sum(t not in vocab for w in words for t in w) / max(n_tokens, 1)),
            "examples": [f"{prompts[i]} -> {' '.join(words[i])}"
                         for i in range(0, len(scored.samples), self.n)][: self.n_examples],
        }
