"""The lab's `isdaa.train` callback: at every evaluation it samples from the policy at temperature 1 and
records the exact gold reward, the KL to the reference (k1, k3), lengths and a few example samples; from
`on_log` it keeps the importance-weight statistics seen since the previous evaluation."""

from __future__ import annotations

import math
import time

import numpy as np

from isdaa.eval.kl import kl_estimates
from isdaa.eval.stats import mean_se
from isdaa.generation import get_scorer, register_scorer, sample_completions, score_logps
from isdaa.lab.preference_data import completion_words
from isdaa.lab.world import TOPICS, lab_scorer

WEIGHT_KEYS = ("weights/ess", "weights/mean", "weights/min", "weights/max", "weights/clipped_frac",
               "weights/raw_log_mean")


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
        self._start_log()

    def _start_log(self) -> None:
        """No evaluation yet, an empty window of logged steps, the clock started."""
        self.evals: list[dict] = []
        self._window: list[dict] = []
        self._ess_min = math.inf
        self._t0 = time.time()

    def on_log(self, step, metrics):
        """Keep this step's weight statistics and training numbers for the next evaluation's window."""
        rec = {k: float(metrics[k]) for k in WEIGHT_KEYS if k in metrics and metrics[k] is not None}
        if "weights/ess" in rec and math.isfinite(rec["weights/ess"]):
            self._ess_min = min(self._ess_min, rec["weights/ess"])
        for k in ("rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "loss"):
            if k in metrics:
                rec[k] = float(metrics[k])
        self._window.append(rec)

    def _window_stats(self) -> dict:
        out = {}
        if not self._window:
            return out

        def col(k):
            return [r[k] for r in self._window if k in r and math.isfinite(r[k])]

        for k, fn, name in (("weights/ess", min, "ess_min"), ("weights/ess", np.mean, "ess_mean"),
                            ("weights/mean", np.mean, "w_mean"), ("weights/min", min, "w_min"),
                            ("weights/max", max, "w_max"), ("weights/clipped_frac", np.mean, "clipped_frac"),
                            ("weights/raw_log_mean", np.mean, "raw_log_w_mean"),
                            ("rewards/accuracies", np.mean, "train_acc"), ("logps/chosen", np.mean, "logps_chosen"),
                            ("logps/rejected", np.mean, "logps_rejected"), ("loss", np.mean, "train_loss")):
            v = col(k)
            if v:
                out[name] = float(fn(v))
        return out

    def on_eval(self, step, model, tokenizer):
        """Sample from the policy, record gold, KL, lengths, target counts and examples (one entry of `evals`)."""
        samples = sample_completions(
            model, tokenizer, self.prompt_ids, n=self.n, max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size, seed=self.seed * 1_000_003 + int(step), progress=False,
        )
        pids = [self.prompt_ids[s.prompt_index] for s in samples]
        comp = [s.completion_ids for s in samples]
        groups = [s.prompt_index for s in samples]
        pol = score_logps(model, pids, comp, batch_size=self.batch_size)
        ref = score_logps(self.reference, pids, comp, batch_size=self.batch_size)
        kl = kl_estimates(pol, ref, groups=groups)
        prompts = [self.prompts[g] for g in groups]
        gold = np.asarray(self.scorer(prompts, [s.text for s in samples], prompt_ids=pids, completion_ids=comp))
        g_mean, g_se = mean_se(gold, groups)
        words = [completion_words(tokenizer, c) for c in comp]
        vocab = set(self.world.words)
        hits, reps = [], []
        for p, w in zip(prompts, words):
            targets = TOPICS[self.world.topic_of(p)]
            counts = [w.count(t) for t in targets]
            hits.append(sum(c > 0 for c in counts))
            reps.append(sum(max(c - 1, 0) for c in counts))
        n_tokens = sum(len(w) for w in words)
        rec = {
            "step": int(step),
            "gold": g_mean, "gold_se": g_se,
            "kl_k1": kl["kl_k1"], "kl_k1_se": kl["kl_k1_se"], "kl_k3": kl["kl_k3"], "kl_k3_se": kl["kl_k3_se"],
            "kl_k3_clamped": kl["kl_k3_clamped"],
            "sqrt_kl": math.sqrt(max(kl["kl_k3"], 0.0)),
            "length": float(np.mean([len(w) for w in words])),
            "finished": float(np.mean([s.finished for s in samples])),
            "target_hits": float(np.mean(hits)), "target_repeats": float(np.mean(reps)),
            "off_vocab": float(sum(t not in vocab for w in words for t in w) / max(n_tokens, 1)),
            "ess_min_so_far": self._ess_min if math.isfinite(self._ess_min) else None,
            "seconds": time.time() - self._t0,
            "examples": [f"{prompts[i]} -> {' '.join(words[i])}" for i in range(0, len(samples), self.n)][: self.n_examples],
        }
        rec.update(self._window_stats())
        self._window = []
        self.evals.append(rec)
