"""The lab on a real pretrained model: world kind `model` (`world: {kind: model, model: DIR, prompts: FILE, ...}`).

The world is a local model directory (e.g. SmolLM2-135M-Instruct from `isdaa models prepare smollm2`), a file of
training prompts, a file of held-out prompts and two scorers from `isdaa.generation.scorers`: `gold` (what every
evaluation measures) and `label_scorer` (what the Bradley–Terry labels of the pairs use; default: the gold one, so
that a proxy-vs-gold study is one config line). `ModelWorld` is its `LabWorld`; what differs from the
controlled worlds, in one place:

- the reference is the model itself (no SFT): the policy starts there, LoRA by default (`lora.enabled: false` in a
  regime: full fine-tuning against a frozen copy);
- the pairs (`model_pairs`: rounds of `isdaa.generation.pairs_in_rounds`): training prompts drawn with replacement,
  two completions each sampled from the model in batches (`isdaa.generation.generate_pairs`: KV cache, left padding, T = 1, no top-p, at most
  `max_new_tokens` tokens), labelled by a Bradley–Terry draw on the label scorer at `pairs.label_temperature`.
  Each row carries the model's summed log-probs as `behavior_*_logps` and, since the reference is the same model,
  as `ref_*_logps` too (the trainer then skips its reference pass). One pair set serves every training seed (a
  seed changes the LoRA initialisation, the data order and the evaluation samples): on 2 CPU cores the pairs are
  the most expensive stage;
- the evaluation (`ModelEvaluator`): `eval_samples` completions per held-out prompt at T = 1 without top-p; the
  policy's log-probs are those `generate` sampled from (exact at T = 1 without top-p / top-k), the reference's are
  teacher-forced (`score_logps`; under LoRA the same model with its adapter disabled); KL k1 and k3 with SEs
  clustered by prompt, gold mean ± SE, the label scorer's mean (`proxy`), length in tokens (the final EOS not
  counted), EOS rate — `isdaa.eval.sampled`, as every evaluation;
- the report's reference, policy and timing sections (`isdaa.lab.model_report`): every
  stage's time is measured by the sweep itself and kept in `prepared.json` and the run records.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import json
import math
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from isdaa.config import LabWorldConfig
from isdaa.data.prompts import load_prompt_file, tokenize_prompts
from isdaa.errors import InputError
from isdaa.eval.sampled import Sampling, ScoredSamples, encode_prompts, sampled_eval
from isdaa.generation import generate_pairs, get_scorer, pairs_in_rounds, write_pairs
from isdaa.generation.pairs import bt_probability
from isdaa.lab import store
from isdaa.lab.evaluator import TrainingWindow, eval_fields, eval_seed
from isdaa.lab.model_report import REPORT, WHY
from isdaa.lab.prepare import reference_gold, regime_files, write_eval_prompts
from isdaa.lab.protocol import Prepared
from isdaa.lab.regimes import resolve_regimes
from isdaa.lab.workers import init_worker
from isdaa.modeling.prepare import MODELS, model_dir
from isdaa.modeling.prompt_cache import PromptCache

__all__ = ["ModelWorld", "ModelEvaluator", "load_model_world", "model_pairs", "pair_chunk", "pairs_in_parallel",
           "write_model_pairs", "model_reference_gold", "EXTRA_COLUMNS"]

EXTRA_COLUMNS = ["score_chosen", "score_rejected", "gold_chosen", "gold_rejected"]
QUICK_EVAL_PROMPTS = 16  # held-out prompts per evaluation of `isdaa lab --quick` at most


def _check_scorer(field: str, name: str) -> None:
    try:
        get_scorer(name)
    except InputError as exc:
        raise InputError(f"option world.{field}: {exc}") from None


def model_path(name: str) -> Path:
    """`world.model` as a directory: a name of `isdaa models prepare` (e.g. `smollm2`: its prepared directory in
    this machine's cache), else a path (`~` expanded)."""
    return model_dir(name) if name in MODELS else Path(name).expanduser()


def load_model_world(params) -> ModelWorld:
    """The world of a kind-`model` config, its `model` resolved to a directory (`model_path`); InputError (one
    line naming the option) when its model directory, prompt files or scorers are missing or wrong."""
    if not params.model:
        raise InputError("option world.model: required for world kind 'model' (a local model directory, or "
                         f"{' / '.join(MODELS)} after `isdaa models prepare <name>`)")
    path = model_path(params.model)
    if not (path / "config.json").is_file():
        hint = f"run `isdaa models prepare {params.model}` first" if params.model in MODELS else "no config.json"
        raise InputError(f"option world.model: {path} is not a model directory ({hint})")
    config, params = params, dataclasses.replace(params, model=str(path))
    prompts = {}
    for field in ("prompts", "eval_prompts"):
        path = getattr(params, field)
        if not path:
            raise InputError(f"option world.{field}: required for world kind 'model' (a .txt or .jsonl prompt file)")
        try:
            prompts[field] = load_prompt_file(path)
        except InputError as exc:
            raise InputError(f"option world.{field}: {str(exc).removeprefix('prompts: ')}") from None
    _check_scorer("gold", params.gold)
    if params.label_scorer:
        _check_scorer("label_scorer", params.label_scorer)
    return ModelWorld(params, prompts["prompts"], prompts["eval_prompts"], config)


# ----------------------------------------------------------------------------- pairs
def _round(world: ModelWorld, model, tokenizer, rng, need: int, seed: int, *, label_temperature: float) -> list[dict]:
    """One round of `generate_pairs` over `need` + a few prompts drawn with replacement; rows with scores."""
    draw = need + max(4, int(0.1 * need))
    prompts = [world.train[i] for i in rng.integers(0, len(world.train), size=draw)]
    p = world.params
    return generate_pairs(model, tokenizer, world.rendered(prompts), scorer=world.label_name, label="bt",
                          bt_temperature=label_temperature, max_new_tokens=p.max_new_tokens, seed=seed,
                          batch_size=p.batch_size, with_scores=True, shared_prefill=p.shared_prefill)[:need]


def _text(value) -> str:
    """A prompt's or a completion's text: the string, or the content of its last message."""
    return value if isinstance(value, str) else value[-1]["content"]


def model_pairs(world: ModelWorld, model, tokenizer, n_pairs: int, *, label_temperature: float, seed: int) -> list[dict]:
    """`n_pairs` labelled pairs sampled from `model`: TRL rows with behaviour = reference log-probs, the label
    scorer's scores (`score_*`) and the gold scorer's (`gold_*`)."""
    draw_round = functools.partial(_round, world, model, tokenizer, label_temperature=label_temperature)
    rows = pairs_in_rounds(draw_round, n_pairs, seed=seed, max_rounds=20, who="the model",
                           why="identical or empty completions are left out")
    gold = get_scorer(world.params.gold)
    if world.label_name == world.params.gold:
        gc, gr = [r["score_chosen"] for r in rows], [r["score_rejected"] for r in rows]
    else:
        prompts = tokenize_prompts(tokenizer, [r["prompt"] for r in rows], 10**9)[1]  # as the evaluator's scorer sees them
        gc = gold(prompts, [_text(r["chosen"]) for r in rows])
        gr = gold(prompts, [_text(r["rejected"]) for r in rows])
    for row, c, r in zip(rows, gc, gr):
        row["gold_chosen"], row["gold_rejected"] = float(c), float(r)
        row["ref_chosen_logps"], row["ref_rejected_logps"] = row["behavior_chosen_logps"], row["behavior_rejected_logps"]
    return rows


def pair_chunk(settings: dict, n_pairs: int, label_temperature: float, seed: int) -> list[dict]:
    """`model_pairs` in a worker process (one torch thread), from the world's settings dict."""
    world = load_model_world(LabWorldConfig(**settings))
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(world.params.model)
    model = AutoModelForCausalLM.from_pretrained(world.params.model, use_safetensors=True).eval()
    return model_pairs(world, model, tokenizer, n_pairs, label_temperature=label_temperature, seed=seed)


def pairs_in_parallel(settings: dict, n_pairs: int, label_temperature: float, seed: int, processes: int) -> list:
    """The pairs from `processes` worker processes (one core each), chunk k with seed 1000·seed + k."""
    sizes = [n_pairs // processes + (k < n_pairs % processes) for k in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=processes, mp_context=ctx, initializer=init_worker) as pool:
        chunks = pool.map(pair_chunk, [settings] * processes, sizes, [label_temperature] * processes,
                          [1000 * seed + k for k in range(processes)])
        return [row for chunk in chunks for row in chunk]


def write_model_pairs(rows: list[dict], path: Path, tokenizer, *, label_temperature: float, seconds: float,
                      processes: int) -> dict:
    """Write the pairs (atomically); their statistics with the wall time they took and the processes that made them."""
    write_pairs(rows, path)
    return {**model_pair_stats(rows, tokenizer, label_temperature), "seconds": seconds, "processes": processes,
            "pairs_per_minute": 60 * len(rows) / seconds}


def model_pair_stats(rows: list[dict], tokenizer, label_temperature: float) -> dict:
    """Means of the pairs' gold and label scores and lengths (tokens), ties, and label agreement with the gold."""
    col = {k: np.array([r[k] for r in rows], dtype=float) for k in EXTRA_COLUMNS}
    lengths = {k: np.mean([len(tokenizer(_text(r[k]), add_special_tokens=False)["input_ids"])
                           for r in rows]) for k in ("chosen", "rejected")}
    gc, gr, sc, sr = col["gold_chosen"], col["gold_rejected"], col["score_chosen"], col["score_rejected"]
    differ, label_differ = gc != gr, sc != sr
    hi, lo = np.maximum(sc, sr)[label_differ], np.minimum(sc, sr)[label_differ]
    return {
        "n_pairs": len(rows), "label_temperature": label_temperature,
        "gold_chosen": float(gc.mean()), "gold_rejected": float(gr.mean()),
        "label_chosen": float(sc.mean()), "label_rejected": float(sr.mean()),
        "length_chosen": float(lengths["chosen"]), "length_rejected": float(lengths["rejected"]),
        "ties": float(np.mean(~differ)),
        "agreement": float(np.mean(gc[differ] > gr[differ])) if differ.any() else math.nan,
        "expected_agreement": float(np.mean(bt_probability(hi, lo, label_temperature))) if label_differ.any() else math.nan,
    }


# ----------------------------------------------------------------------------- evaluation
def _prompt_ids(world: ModelWorld, tokenizer) -> tuple[list, list]:
    ids, texts, _ = tokenize_prompts(tokenizer, world.rendered(world.eval_prompts()), 10**9)
    return ids, texts


def model_reference_gold(world: ModelWorld, model, tokenizer, *, n: int, seed: int = 99) -> dict:
    """The model's (= the reference's) gold on the held-out prompts from `n` samples per prompt, with its time."""
    t0 = time.perf_counter()
    ids, texts = _prompt_ids(world, tokenizer)
    p = world.params
    scorer = get_scorer(p.gold)

    def gold(samples) -> list[float]:
        return scorer([texts[s.prompt_index] for s in samples], [s.text for s in samples])

    measured = reference_gold(model, tokenizer, ids, gold, n=n, max_new_tokens=p.max_new_tokens,
                              batch_size=p.batch_size, seed=seed)
    return {**measured, "n_prompts": len(ids), "seconds": time.perf_counter() - t0}


class ModelEvaluator:
    """The lab's evaluation callback for a model world (see the module docstring); `reference` None: the policy
    is a PEFT model and the reference is the policy with its adapter disabled."""

    def __init__(self, world: ModelWorld, tokenizer, reference=None, *, n_samples: int = 2, seed: int = 0,
                 n_examples: int = 3, samples_file: Path | None = None):
        self.world, self.tokenizer, self.reference = world, tokenizer, reference
        self.n, self.seed, self.n_examples = n_samples, seed, n_examples
        self.batch_size, self.max_new_tokens = world.params.batch_size, world.params.max_new_tokens
        self.prompt_ids, self.prompts = _prompt_ids(world, tokenizer)
        self.contents = [_text(p) for p in world.eval_prompts()]
        self.scorer = get_scorer(world.params.gold)
        self.proxy = get_scorer(world.label_name) if world.label_name != world.params.gold else None
        self.samples_file, self._step = samples_file, 0
        if samples_file is not None:
            samples_file.unlink(missing_ok=True)  # a rerun's samples only
        self.evals: list[dict] = []
        self.reference_prompts: PromptCache | None = None
        self.window = TrainingWindow()
        self._t0 = time.time()
        self._mark, self._step_times = None, []

    def on_log(self, step, metrics):
        """The weight statistics (`TrainingWindow`) and the wall time of the step that ended here."""
        self.window.observe(metrics)
        now = time.perf_counter()
        if step > 0 and self._mark is not None:
            self._step_times.append(now - self._mark)
        self._mark = now

    def on_eval(self, step, model, tokenizer):
        """Sample, score, record gold, proxy, KL, length, EOS rate, examples and the times (one entry of `evals`).
        The policy's log-probs are those `generate` sampled from."""
        t0, self._step = time.perf_counter(), step
        sampling = Sampling(n=self.n, max_new_tokens=self.max_new_tokens, seed=eval_seed(self.seed, step),
                            batch_size=self.batch_size, policy_logps_from_generate=True,
                            shared_prefill=self.world.params.shared_prefill)
        reference, context = ((self.reference, contextlib.nullcontext) if self.reference is not None
                              else (model, model.disable_adapter))
        if self.reference_prompts is None:  # the frozen reference's prompt cache serves every evaluation
            with context():
                self.reference_prompts = encode_prompts(reference, self.prompt_ids, sampling)
        result = sampled_eval(model, tokenizer, self.prompt_ids, self.prompts, sampling, reference=reference,
                              reference_context=context, scorer=self.scorer, extra=self._world_fields,
                              reference_prompts=self.reference_prompts)
        rec = {**eval_fields(step, result), "ess_min_so_far": self.window.ess_min_so_far(), **result.extra,
               **self.window.take()}
        if self._step_times:
            rec["step_seconds"] = float(np.mean(self._step_times))
        self._step_times = []
        rec["eval_seconds"] = time.perf_counter() - t0
        rec["seconds"] = time.time() - self._t0
        self.evals.append(rec)
        self._mark = time.perf_counter()

    def _world_fields(self, scored: ScoredSamples) -> dict:
        """The first sample of the first few prompts, and the label scorer's mean (`proxy`) when it is not the
        gold scorer."""
        texts = [s.text for s in scored.samples]
        out = {"examples": [f"{self.contents[scored.prompt_index[i]]} -> {texts[i]}"
                            for i in range(0, len(texts), self.n)][: self.n_examples]}
        if self.samples_file is not None:  # every sample of every evaluation, for reading later
            with open(self.samples_file, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": self._step, "prompt_index": list(scored.prompt_index),
                                    "completions": texts, "gold": scored.gold}) + "\n")
        if self.proxy is not None:
            out["proxy"] = float(np.mean(self.proxy([self.prompts[i] for i in scored.prompt_index], texts,
                                                    prompt_ids=[self.prompt_ids[i] for i in scored.prompt_index],
                                                    completion_ids=[s.completion_ids for s in scored.samples])))
        return out


# ----------------------------------------------------------------------------- the world
@dataclasses.dataclass
class ModelWorld:
    """A real-model world (`LabWorld`): its settings (`params`, the model resolved to a directory; `config`, as
    given) and prompts (strings or message lists, as in the files)."""

    params: LabWorldConfig
    train: list
    held_out: list
    config: LabWorldConfig

    extra_columns = tuple(EXTRA_COLUMNS)
    report = REPORT

    @staticmethod
    def load(config: LabWorldConfig) -> ModelWorld:
        """`load_model_world`."""
        return load_model_world(config)

    @staticmethod
    def quick(config: LabWorldConfig) -> LabWorldConfig:
        """The world of `isdaa lab --quick`: at most 16 held-out prompts per evaluation."""
        n = config.n_eval_prompts
        return dataclasses.replace(config, n_eval_prompts=min(n, QUICK_EVAL_PROMPTS) if n else QUICK_EVAL_PROMPTS)

    @property
    def label_name(self) -> str:
        return self.params.label_scorer or self.params.gold

    def train_prompts(self) -> list:
        return self.train

    def eval_prompts(self) -> list:
        n = self.params.n_eval_prompts
        return self.held_out[:n] if n else self.held_out

    def rendered(self, prompts: list) -> list:
        """`prompts` as generate / the trainer see them: a string becomes one user message when `chat`."""
        if not self.params.chat:
            return list(prompts)
        return [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]

    def settings(self) -> dict:
        """Its config as given (every field)."""
        return dataclasses.asdict(self.config)

    def describe(self) -> str:
        p = self.params
        proxy = (f"the label scorer `{self.label_name}` is a proxy of the gold scorer `{p.gold}`"
                 if self.label_name != p.gold else f"the labels use the gold scorer `{p.gold}` itself")
        return "\n".join([
            f"- Kind: `model` — a real pretrained model, `{p.model}`, is the reference, the behaviour policy and "
            f"the start of every run.",
            f"- Prompts: {len(self.train)} training prompts (`{p.prompts}`), {len(self.eval_prompts())} held-out "
            f"prompts (`{p.eval_prompts}`)" + (", each one user message of the chat template." if p.chat else "."),
            f"- Completions: at most {p.max_new_tokens} new tokens, sampled at temperature 1 without top-p / top-k.",
            f"- Gold reward: scorer `{p.gold}` of the completion; {proxy}.",
        ])

    def why(self) -> str:
        return WHY

    def train_overrides(self) -> dict:
        """LoRA on every linear layer of the attention and the MLP, no truncation (the pairs' log-probs are of the
        whole sequences), the pairs' score columns."""
        return {
            "lora.enabled": True, "lora.r": 16, "lora.alpha": 32,
            "lora.target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "data.max_length": 1024, "data.max_prompt_length": 512, "data.extra_columns": list(self.extra_columns),
        }

    def evaluator(self, spec) -> ModelEvaluator:
        """`ModelEvaluator`; its reference: the policy with its LoRA adapter disabled, else a frozen copy."""
        tokenizer = AutoTokenizer.from_pretrained(spec.reference_dir)
        full = not spec.train.lora.enabled
        reference = (AutoModelForCausalLM.from_pretrained(spec.reference_dir, use_safetensors=True).eval()
                     if full else None)
        return ModelEvaluator(self, tokenizer, reference, n_samples=spec.eval_samples, seed=spec.seed,
                              samples_file=Path(spec.train.output_dir) / "samples.jsonl")

    def _pairs(self, config, model, tokenizer, n_pairs: int, out: Path, progress) -> dict:
        """{"file", "stats"}: the one pair set, from one process or two (64 pairs or more, two workers)."""
        t0, processes = time.perf_counter(), min(config.workers, 2) if n_pairs >= 64 else 1
        lt, seed = config.pairs.label_temperature, config.pairs.seed
        if processes == 1:
            rows = model_pairs(self, model, tokenizer, n_pairs, label_temperature=lt, seed=seed)
        else:
            rows = pairs_in_parallel(self.settings(), n_pairs, lt, seed, processes)
        path = out / "pairs" / "pairs.jsonl"
        stats = write_model_pairs(rows, path, tokenizer, label_temperature=lt, seconds=time.perf_counter() - t0,
                                  processes=processes)
        if progress:
            progress(f"pairs: {n_pairs} in {stats['seconds']:.0f}s ({stats['pairs_per_minute']:.0f}/min); gold chosen "
                     f"{stats['gold_chosen']:.3f} vs rejected {stats['gold_rejected']:.3f}")
        return {"file": str(path), "stats": stats}

    def prepare(self, config, out: Path, progress) -> Prepared:
        """The model is the reference (no SFT); one pair set serves every seed; the model's gold. What
        `prepared.json` holds for the same settings is reused."""
        regimes = resolve_regimes(config.regimes)
        n_pairs = max(r["n_pairs"] for r in regimes)
        key = store.preparation_key(self.settings(), config, n_pairs)
        saved = store.load_prepared(out, key) or {}
        tokenizer = AutoTokenizer.from_pretrained(self.params.model)
        model = AutoModelForCausalLM.from_pretrained(self.params.model, use_safetensors=True).eval()
        entry = next(iter(saved.get("pairs", {}).values()), None)
        if entry is None:
            entry = self._pairs(config, model, tokenizer, n_pairs, out, progress)
        pairs = regime_files({int(s): {"file": entry["file"], "stats": entry["stats"]} for s in config.seeds}, out,
                             regimes)
        ref_gold = saved.get("reference_gold") or model_reference_gold(self, model, tokenizer,
                                                                       n=max(2, config.eval_samples))
        write_eval_prompts(self.eval_prompts(), out / "eval_prompts.txt")
        reference = {"path": self.params.model, "kind": "model"}
        store.save_prepared(out, key, {"reference": reference, "behavior": None, "pairs": pairs,
                                       "reference_gold": ref_gold})
        return Prepared(reference, pairs, ref_gold, None)
