"""The in-run monitor: while a run trains, the policy's sampled KL to the reference and its gold reward, a KL
budget, the best checkpoint — and an alarm when the importance weights collapse.

Two trainer callbacks (`isdaa.training.callbacks`), attached by `isdaa.training.run.train`
(what `isdaa.train` and `isdaa train` run):

- `Monitor` (`monitor.every > 0`), hook `on_step_end` on every process: at step 0, every `monitor.every`
  optimizer steps and at the last step it draws `monitor.n_samples` completions (temperature 1, no top-p) for
  each held-out prompt with `isdaa eval`'s own code (`isdaa.eval.sampled`: same sampler, same estimators; the
  same seed at every evaluation) and logs `monitor/kl_k3`, `monitor/kl_k3_se`, `monitor/kl_k1`,
  `monitor/kl_k1_se`, `monitor/length` (generated tokens, the EOS included: `isdaa eval`'s `length_mean`),
  `monitor/eos_rate`, with a scorer `monitor/gold`, `monitor/gold_se`, and `monitor/n_samples` (over all
  processes), `monitor/seconds`. The reference log-probs come from the reference model (loaded once, like the
  trainer's) or, with LoRA, from the policy with its adapter disabled. Under DDP each process samples the
  prompts i ≡ rank (mod processes) and the per-sample numbers (with each sample's prompt number) are gathered,
  so every process computes the same record (and makes the same stop / save decisions).
  `stop_at_kl`: once `monitor/kl_k3` exceeds it, the run stops after this step (`stop_requested`).
  `keep_best`: a strictly better `monitor/gold` saves the policy as `best/` (like `final/`) with `best/best.json`
  (its step and record). On resume the best so far is read back from `metrics.jsonl` (already cut back to
  the resumed step), so a resumed run keeps the same `best/` an uninterrupted one would.
- `EssAlarm` (`monitor.ess_warn > 0`), hook `on_log`: one warning line when `weights/ess` stays below
  `ess_warn` for `ess_patience` consecutive logged steps; it fires again only after the ESS recovered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import broadcast_object_list, gather_object

from isdaa.config import TrainConfig
from isdaa.data.prompts import load_prompt_file, load_prompts, tokenize_prompts
from isdaa.errors import InputError
from isdaa.eval.sampled import Sampling, ScoredSamples, encode_prompts, sample_and_score, summarize
from isdaa.eval.stats import is_finite_number
from isdaa.generation.scorers import get_scorer
from isdaa.modeling.loading import load_policy, load_tokenizer
from isdaa.runtime import read_metrics, write_json

__all__ = ["Monitor", "EssAlarm", "MONITOR_KEYS", "monitor_callbacks", "check_monitor"]

# the evaluation's field (`isdaa.eval.sampled.SampledEval`) -> the metric the monitor logs
MONITOR_KEYS = {
    "kl_k3": "monitor/kl_k3", "kl_k3_se": "monitor/kl_k3_se", "kl_k1": "monitor/kl_k1", "kl_k1_se": "monitor/kl_k1_se",
    "generated_tokens": "monitor/length", "eos_rate": "monitor/eos_rate", "gold": "monitor/gold",
    "gold_se": "monitor/gold_se",
}
BEST_FILE = "best.json"


# ------------------------------------------------------------------------------------------ validation
def check_monitor(config: TrainConfig):
    """The monitor's options beyond each field's own limit, and its gold scorer (None for `none`).
    Raises InputError naming the option; reads nothing but the scorer."""
    m = config.monitor
    if m.every == 0:
        for key, on in (("stop_at_kl", m.stop_at_kl > 0), ("keep_best", m.keep_best), ("scorer", m.scorer != "none"),
                        ("prompts", m.prompts is not None)):
            if on:
                raise InputError(f"option monitor.{key}: needs the monitor on (monitor.every > 0)")
        return None
    if m.keep_best and m.scorer == "none":
        raise InputError("option monitor.keep_best: needs monitor.scorer (a gold scorer, e.g. length or hf-rm:<dir>)")
    if m.prompts is None and config.data.eval_file is None:
        raise InputError("option monitor.prompts: required when data.eval_file is not set (held-out prompts to sample)")
    if m.scorer == "none":
        return None
    try:
        return get_scorer(m.scorer)
    except InputError as exc:
        raise InputError(f"option monitor.scorer: {exc}") from None


def _prompts(config: TrainConfig, tokenizer) -> tuple[list[list[int]], list[str]]:
    """Token ids and texts of the monitor's prompts: `monitor.prompts`, else the prompts of `data.eval_file`."""
    m = config.monitor
    try:
        prompts = load_prompt_file(m.prompts) if m.prompts else load_prompts(config.data.eval_file)[0]
        ids, texts, _ = tokenize_prompts(tokenizer, prompts[: m.max_prompts], config.data.max_prompt_length)
    except InputError as exc:
        message = str(exc)
        if m.prompts and message.startswith("prompts:"):
            message = "option monitor.prompts:" + message[len("prompts:"):]
        raise InputError(message) from None
    return ids, texts


def monitor_callbacks(config: TrainConfig, scorer=None) -> list:
    """The callbacks `config.monitor` asks for (`Monitor`, `EssAlarm`), given `check_monitor`'s scorer; the
    prompts are read and tokenised (the run's tokenizer) here, so a bad prompt file fails before training."""
    callbacks = []
    if config.monitor.every > 0:
        callbacks.append(Monitor(config, *_prompts(config, load_tokenizer(config.model)), scorer))
    if config.monitor.ess_warn > 0:
        callbacks.append(EssAlarm(config.monitor.ess_warn, config.monitor.ess_patience, config.output_dir))
    return callbacks


# ------------------------------------------------------------------------------------------ the monitor
class Monitor:
    """Trainer callback: sampled KL and gold every `monitor.every` steps, the KL budget and `best/`."""

    def __init__(self, config: TrainConfig, prompt_ids: list[list[int]], prompt_texts: list[str], scorer=None):
        self.cfg = config.monitor
        self.model_cfg, self.seed = config.model, config.seed
        self.run_dir = Path(config.output_dir)
        self.prompt_ids, self.prompt_texts, self.scorer = prompt_ids, prompt_texts, scorer
        # by default as long as a training completion can be: longer ones were never in the data
        new_tokens = self.cfg.max_new_tokens or config.data.max_length - config.data.max_prompt_length
        self.sampling = Sampling(n=self.cfg.n_samples, max_new_tokens=new_tokens, seed=self.cfg.seed,
                                 batch_size=self.cfg.batch_size, shared_prefill=self.cfg.shared_prefill)
        self.reference = None  # loaded at the first evaluation (not with LoRA)
        self.reference_prompts = None  # the frozen reference's KV cache of this process's prompts, for every evaluation
        self.best: dict | None = None
        self.stop_requested: str | None = None
        self._restored = False

    def due(self, step: int, total_steps: int) -> bool:
        return step % self.cfg.every == 0 or step == total_steps

    def on_step_end(self, step: int, run) -> None:
        """Evaluate when due, log the record, then check the KL budget and the best gold."""
        if not self.due(step, run.total_steps):
            return
        self._restore(run)
        record = self.measure(run)
        run.log(step, record)
        kl, budget = record.get("monitor/kl_k3"), self.cfg.stop_at_kl
        if budget > 0 and is_finite_number(kl) and kl > budget and step < run.total_steps:  # at the last step: it ends anyway
            self.stop_requested = f"monitor/kl_k3 {kl:.4g} exceeded monitor.stop_at_kl {budget:g}"
        if self.cfg.keep_best:
            self._keep_best(step, record, run)

    def measure(self, run) -> dict:
        """One evaluation of `run.model`: this process's share of the prompts sampled and scored, the
        per-sample numbers gathered from every process, summarised as `monitor/...` metrics."""
        start = time.perf_counter()
        acc = run.accelerator
        mine = list(range(acc.process_index, len(self.prompt_ids), acc.num_processes))
        reference, context = self._reference(run)
        prompt_ids = [self.prompt_ids[i] for i in mine]
        if self.sampling.shared_prefill and self.reference_prompts is None:
            with context():
                self.reference_prompts = encode_prompts(reference, prompt_ids, self.sampling)
        scored = sample_and_score(
            run.model, run.tokenizer, prompt_ids, [self.prompt_texts[i] for i in mine], self.sampling,
            reference=reference, reference_context=context, scorer=self.scorer, prompt_labels=mine,
            reference_prompts=self.reference_prompts,
        )
        if acc.num_processes > 1:
            scored = _gathered(scored)
        result = summarize(scored)
        record = {name: float(getattr(result, key)) for key, name in MONITOR_KEYS.items()
                  if getattr(result, key) is not None}
        record["monitor/n_samples"] = result.n_samples
        record["monitor/seconds"] = time.perf_counter() - start
        return record

    def _reference(self, run):
        """(the reference model, the context it is scored in): the adapter-disabled policy under LoRA, else
        the model the trainer's reference is loaded as (same config and seed), frozen, on the policy's device."""
        if run.lora:
            return run.model, run.model.disable_adapter
        if self.reference is None:
            reference = load_policy(self.model_cfg, seed=self.seed)
            reference.requires_grad_(False)
            self.reference = reference.to(next(run.model.parameters()).device).eval()
        return self.reference, contextlib.nullcontext

    def _restore(self, run) -> None:
        """Once: the best gold so far from `metrics.jsonl` (read by the main process, sent to the others)."""
        if self._restored:
            return
        self._restored = True
        best = None
        if run.accelerator.is_main_process:
            for record in read_metrics(self.run_dir):
                gold = record.get("monitor/gold")
                if is_finite_number(gold) and (best is None or gold > best["monitor/gold"]):
                    best = {k: v for k, v in record.items() if k == "step" or k.startswith("monitor/")}
        if run.accelerator.num_processes > 1:
            best = broadcast_object_list([best])[0]
        self.best = best

    def on_train_end(self, result) -> None:
        self.reference = self.reference_prompts = None  # their memory back once the run is over

    def _keep_best(self, step: int, record: dict, run) -> None:
        gold = record.get("monitor/gold")
        if not is_finite_number(gold) or (self.best is not None and gold <= self.best["monitor/gold"]):
            return
        path = run.save_model("best")
        self.best = {"step": step, **record}
        if run.accelerator.is_main_process:
            write_json(self.best, path / BEST_FILE)


def _gathered(scored: ScoredSamples) -> ScoredSamples:
    """The per-sample numbers of every process, concatenated in process order."""
    def gather(values):
        return None if values is None else gather_object(list(values))

    return ScoredSamples(*(gather(getattr(scored, f.name)) for f in dataclasses.fields(ScoredSamples)))


# ------------------------------------------------------------------------------------------ the ESS alarm
@dataclass
class EssAlarm:
    """Trainer callback: one warning line when `weights/ess` stays below `threshold` for `patience`
    consecutive logged steps, naming the step, the mean weight and what to try; re-armed once the ESS is
    back above the threshold. On a resumed run the streak is replayed from `metrics.jsonl`, silently."""

    threshold: float
    patience: int
    run_dir: str | None = None
    streak: int = 0
    fired: bool = False

    def on_train_begin(self, model, tokenizer) -> None:
        for record in read_metrics(self.run_dir) if self.run_dir else []:
            self.observe(record.get("step", 0), record)

    def on_log(self, step: int, metrics: dict) -> None:
        message = self.observe(step, metrics)
        if message:
            print(message, file=sys.stderr, flush=True)

    def observe(self, step: int, metrics: dict) -> str | None:
        """Count this step; the warning text the first time the streak reaches `patience`, else None."""
        ess = metrics.get("weights/ess")
        if not is_finite_number(ess):
            return None
        if ess >= self.threshold:
            self.streak, self.fired = 0, False
            return None
        self.streak += 1
        if self.streak < self.patience or self.fired:
            return None
        self.fired = True
        mean = metrics.get("weights/mean")
        mean_text = f"{mean:.3g}" if is_finite_number(mean) else "n/a"
        return (
            f"isdaa: warning: step {step}: weights/ess {ess:.3g} has stayed below monitor.ess_warn {self.threshold:g} "
            f"for {self.streak} logged steps (mean weight {mean_text}): a few pairs carry the gradient; try "
            "objective.weighting is_two_sided or is_token_mean, a smaller objective.is_eps, or a lower optim.lr"
        )

