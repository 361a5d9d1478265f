"""The lab sweep: world → SFT reference → pairs → methods × β × seeds × regimes through `isdaa.train`.

Every run is an ordinary `isdaa.train(TrainConfig)` with a `LabEvaluator` callback. At step 0, every
`eval_every` steps and at the end, the evaluator samples `eval_samples` completions per held-out prompt from
the policy (temperature 1, no top-p, `isdaa.generation.sample_completions`), scores them teacher-forced under
the policy and the frozen reference (`score_logps`), and records KL (k1 and k3, `kl_estimates`, SE clustered by
prompt), the exact gold reward (the world's scorer, registered as `lab`), lengths, repeats and target hits;
from `on_log` it keeps the importance-weight statistics (ESS, mean, clipped share) of every step.

Runs go to a pool of `workers` processes (one torch thread each); each finished run prints one line.
Outputs (in `output_dir`): `results.json`, `results.csv` (one row per run × evaluation), `report.md`,
`frontier_*.png`, `over_steps_*.png` (`isdaa.lab.outputs`), plus `reference/`, `pairs/` and
`runs/<regime>/<method>/beta-*/seed-*/`. The methods and regimes compared are resolved by `isdaa.lab.regimes`.
A world of kind `model` (a real pretrained model, `isdaa.lab.model_world`) branches here in four places: its
preparation (`_prepare_model`: no SFT, one pair set for every seed), its evaluator, its training keys (LoRA) and
its validation; everything else — specs, store, pool, outputs — is shared.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from isdaa.config import LabConfig, TrainConfig, load_config
from isdaa.errors import InputError, RunInterrupted
from isdaa.eval.stats import mean_se
from isdaa.generation import sample_completions
from isdaa.lab import store
from isdaa.lab.evaluator import LabEvaluator
from isdaa.lab.model_world import (ModelEvaluator, ModelWorld, is_model_world, load_model_world, model_pairs,
                                   model_reference_gold, model_train_overrides, pair_chunk, write_model_pairs)
from isdaa.lab.outputs import write_outputs
from isdaa.lab.preference_data import completion_words, make_pairs, write_eval_prompts
from isdaa.lab.regimes import regime_overrides, regime_steps, resolve_methods, resolve_regimes
from isdaa.lab.sft import train_reference
from isdaa.lab.world import World, WorldParams
from isdaa.runtime import atomic_write_text
from isdaa.training.trainer import fit


def say(message: str) -> None:
    """The default progress printer: one line, flushed (progress lines arrive while the sweep runs)."""
    print(message, flush=True)


def slug(text: str) -> str:
    """`text` as a directory name (a method label in `runs/<regime>/<method>/`)."""
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", str(text)).strip("_") or "method"


# ----------------------------------------------------------------------------- one run (in a worker)
def exit_with_parent(parent: int, poll_seconds: float = 1.0) -> None:
    """Exit this process as soon as `parent` is no longer its parent (the sweep was killed): a worker must not
    go on training after its sweep is gone, or a restarted sweep would run the same run beside it."""
    while os.getppid() == parent:
        time.sleep(poll_seconds)
    os._exit(1)


def _init_worker():
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    hf_logging.disable_progress_bar()

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def run_one(spec: dict) -> dict:
    """Train and evaluate one (method, β, seed, regime) run; returns its record (never raises: a diverged or
    failed run is a result, recorded with its status and the evaluations it reached)."""
    t0 = time.time()
    meta = spec["meta"]
    evals: list[dict] = []
    status = "ok"
    run_dir = Path(spec["train"]["output_dir"])
    try:
        torch.set_num_threads(1)
        evaluator = _evaluator(spec)
        evals = evaluator.evals
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = load_config(TrainConfig, None, spec["train"])
        fit(cfg, callbacks=[evaluator])
    except RunInterrupted as exc:  # a lab run is not resumed from its checkpoint: it runs again
        raise RunInterrupted(f"lab: {exc.event} in run {meta['method']} β={meta['beta']} seed={meta['seed']}; the finished "
                             f"runs are kept: run the same command to go on (this run starts again)",
                             exc.exit_code) from None
    except Exception as exc:  # noqa: BLE001
        status = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    if not spec.get("keep_models"):
        shutil.rmtree(run_dir / "final", ignore_errors=True)
    shutil.rmtree(run_dir / "ref-cache", ignore_errors=True)
    record = {**meta, "status": status, "seconds": time.time() - t0, "evals": evals}
    run_dir.mkdir(parents=True, exist_ok=True)
    store.save_record(spec, record)  # a sweep run again skips this run
    return record


def _evaluator(spec: dict):
    """The run's evaluation callback: `LabEvaluator` against the SFT reference, or for a model world
    `ModelEvaluator` (its reference: the policy with its LoRA adapter disabled, else a frozen copy of the model)."""
    ref_dir = spec["reference_dir"]
    tokenizer = AutoTokenizer.from_pretrained(ref_dir)
    if is_model_world(spec["world"]):
        full = not spec["train"].get("lora.enabled")
        reference = AutoModelForCausalLM.from_pretrained(ref_dir, use_safetensors=True).eval() if full else None
        return ModelEvaluator(load_model_world(WorldParams(**spec["world"])), tokenizer, reference,
                              n_samples=spec["eval_samples"], seed=spec["meta"]["seed"])
    world = World(WorldParams(**spec["world"]))
    reference = AutoModelForCausalLM.from_pretrained(ref_dir, use_safetensors=True).eval()
    return LabEvaluator(world, reference, tokenizer, n_samples=spec["eval_samples"], seed=spec["meta"]["seed"])


def _fmt_run(rec: dict, i: int, n: int) -> str:
    ev = rec["evals"]
    if not ev:
        return f"[{i}/{n}] {rec['method']} beta={rec['beta']} seed={rec['seed']} ({rec['regime']}): no evaluation — {rec['status']}"
    best = max(ev, key=lambda e: e["gold"])
    last = ev[-1]
    ess = min((e["ess_min"] for e in ev if e.get("ess_min") is not None), default=float("nan"))
    tail = "" if rec["status"] == "ok" else f"  [{rec['status'][:80]}]"
    return (f"[{i}/{n}] {rec['method']:<24} beta={rec['beta']:<5} seed={rec['seed']} {rec['regime']:<9} "
            f"peak gold {best['gold']:6.3f} (KL {best['kl_k3']:6.2f})  final gold {last['gold']:6.3f}  "
            f"final KL {last['kl_k3']:7.2f}  min ESS {ess:5.3f}  {rec['seconds']:4.0f}s{tail}")


# ----------------------------------------------------------------------------- before the runs
@dataclasses.dataclass
class Prepared:
    """What every run shares: the world, the SFT reference, the pair files per seed, the reference's gold, and
    the behaviour policy that sampled the pairs (None: the reference did)."""

    world: object
    reference: dict
    pairs: dict  # seed -> {"file": all its pairs, "files": {regime: its first n_pairs}, "stats"}
    ref_gold: dict
    behavior: dict | None = None


def _pairs_per_seed(config: LabConfig, world: World, sampler_path: str, out: Path, regimes: list[dict],
                    seeds: list) -> dict:
    """seed -> {"files": {regime name: its first n_pairs pairs}, "stats"}: one pair set per training seed, sampled
    from the model in `sampler_path` (the reference, or the behaviour policy μ)."""
    n_max = max(r["n_pairs"] for r in regimes)
    pairs = {}
    for seed in seeds:
        path = out / "pairs" / f"seed-{seed}.jsonl"
        stats = make_pairs(world, sampler_path, n_max, path, label_temperature=config.pairs.label_temperature,
                           seed=config.pairs.seed * 7919 + int(seed))
        pairs[int(seed)] = {"file": str(path), "stats": stats}
    return pairs


def _regime_files(pairs: dict, out: Path, regimes: list[dict]) -> dict:
    """Each seed's pairs with `files`: {regime name: a file of its first n_pairs pairs} (written for every regime,
    so a resumed sweep may add regimes)."""
    for seed, entry in pairs.items():
        lines = Path(entry["file"]).read_text(encoding="utf-8").splitlines(keepends=True)
        entry["files"] = {}
        for reg in regimes:
            sub = out / "pairs" / f"{reg['name']}-seed-{seed}.jsonl"
            text = "".join(lines[: reg["n_pairs"]])
            if not sub.is_file() or sub.read_text(encoding="utf-8") != text:  # runs may be reading it
                atomic_write_text(sub, text)
            entry["files"][reg["name"]] = str(sub)
    return pairs


def _fit(world: World, rc, out: Path, seed: int, progress) -> dict:
    """An SFT model of `world`'s base, saved under `out/reference/`."""
    return train_reference(world, out, hidden_size=rc.hidden_size, num_layers=rc.num_layers, num_heads=rc.num_heads,
                           steps=rc.steps, batch_size=rc.batch_size, lr=rc.lr, seed=seed, progress=progress)


def _fit_behavior(world: World, rc, out: Path, progress) -> dict | None:
    """The behaviour policy μ of a `behavior` world (an SFT model of its own base, in `out/behavior/`), else None."""
    mu = world.behavior_world()
    if mu is None:
        return None
    if progress:
        progress("behaviour policy mu:")
    return _fit(mu, rc, out / "behavior", rc.seed + 1, progress)


def _pairs_in_parallel(settings: dict, n_pairs: int, label_temperature: float, seed: int, processes: int) -> list:
    """A model world's pairs from `processes` worker processes (one core each), chunk k with seed 1000·seed + k."""
    sizes = [n_pairs // processes + (k < n_pairs % processes) for k in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=processes, mp_context=ctx, initializer=_init_worker) as pool:
        chunks = pool.map(pair_chunk, [settings] * processes, sizes, [label_temperature] * processes,
                          [1000 * seed + k for k in range(processes)])
        return [row for chunk in chunks for row in chunk]


def _prepare_model(config: LabConfig, out: Path, progress) -> Prepared:
    """`prepare` for a model world: the model is the reference; one pair set serves every seed; the model's gold."""
    world = load_model_world(config.world)
    regimes = resolve_regimes(config.regimes)
    n_pairs = max(r["n_pairs"] for r in regimes)
    key = store.preparation_key(config, n_pairs)
    saved = store.load_prepared(out, key) or {}
    tokenizer = AutoTokenizer.from_pretrained(world.params.model)
    model = AutoModelForCausalLM.from_pretrained(world.params.model, use_safetensors=True).eval()
    entry = next(iter(saved.get("pairs", {}).values()), None)
    if entry is None:
        t0, processes = time.perf_counter(), min(config.workers, 2) if n_pairs >= 64 else 1
        lt, seed = config.pairs.label_temperature, config.pairs.seed
        if processes == 1:
            rows = model_pairs(world, model, tokenizer, n_pairs, label_temperature=lt, seed=seed)
        else:
            rows = _pairs_in_parallel(store.world_settings(config.world), n_pairs, lt, seed, processes)
        path = out / "pairs" / "pairs.jsonl"
        stats = write_model_pairs(rows, path, tokenizer, label_temperature=lt, seconds=time.perf_counter() - t0,
                                  processes=processes)
        entry = {"file": str(path), "stats": stats}
        if progress:
            progress(f"pairs: {n_pairs} in {stats['seconds']:.0f}s ({stats['pairs_per_minute']:.0f}/min); gold chosen "
                     f"{stats['gold_chosen']:.3f} vs rejected {stats['gold_rejected']:.3f}")
    pairs = _regime_files({int(s): {"file": entry["file"], "stats": entry["stats"]} for s in config.seeds}, out, regimes)
    ref_gold = saved.get("reference_gold") or model_reference_gold(world, model, tokenizer, n=max(2, config.eval_samples))
    atomic_write_text(out / "eval_prompts.txt", "".join(f"{p}\n" for p in world.eval_prompts()))
    reference = {"path": world.params.model, "kind": "model"}
    store.save_prepared(out, key, {"reference": reference, "behavior": None, "pairs": pairs, "reference_gold": ref_gold})
    return Prepared(world, reference, pairs, ref_gold, None)


def prepare(config: LabConfig, out: Path, *, progress=say) -> Prepared:
    """World, SFT reference (and behaviour policy), pairs per seed and the reference's gold reward (large sample);
    what `prepared.json` already holds for the same settings is reused, so a resumed sweep starts at once."""
    if is_model_world(config.world):
        return _prepare_model(config, out, progress)
    world = World(WorldParams(**dataclasses.asdict(config.world)))
    regimes = resolve_regimes(config.regimes)
    key = store.preparation_key(config, max(r["n_pairs"] for r in regimes))
    saved = store.load_prepared(out, key) or {}
    t0 = time.time()
    with_threads = torch.get_num_threads()
    ref = saved.get("reference") or _fit(world, config.reference, out, config.reference.seed, progress)
    behavior = saved["behavior"] if "behavior" in saved else _fit_behavior(world, config.reference, out, progress)
    pairs = {int(k): v for k, v in saved.get("pairs", {}).items()}
    new_seeds = [s for s in config.seeds if int(s) not in pairs]
    pairs.update(_pairs_per_seed(config, world, (behavior or ref)["path"], out, regimes, new_seeds))
    pairs = _regime_files(pairs, out, regimes)
    write_eval_prompts(world, out / "eval_prompts.txt")
    s0 = pairs[int(config.seeds[0])]["stats"]
    if progress:
        progress(f"pairs: {max(r['n_pairs'] for r in regimes)} per seed x {len(config.seeds)} seeds "
                 f"({len(new_seeds)} new); chosen gold {s0['gold_chosen']:.2f} vs rejected {s0['gold_rejected']:.2f}, "
                 f"lengths {s0['length_chosen']:.2f} vs {s0['length_rejected']:.2f} ({time.time() - t0:.0f}s since start)")
    ref_gold = saved.get("reference_gold") or reference_gold(world, ref["path"], n=512)
    store.save_prepared(out, key, {"reference": ref, "behavior": behavior, "pairs": pairs, "reference_gold": ref_gold})
    torch.set_num_threads(with_threads)
    return Prepared(world, ref, {int(s): pairs[int(s)] for s in config.seeds}, ref_gold, behavior)


def reference_gold(world, reference_dir, *, n: int = 512, seed: int = 99) -> dict:
    """The reference policy's gold reward on the held-out prompts, from n samples per prompt."""
    tok = AutoTokenizer.from_pretrained(str(reference_dir))
    model = AutoModelForCausalLM.from_pretrained(str(reference_dir), use_safetensors=True).eval()
    prompts = world.eval_prompts()
    pids = [tok(p)["input_ids"] for p in prompts]
    samples = sample_completions(model, tok, pids, n=n, max_new_tokens=world.params.max_len + 1, batch_size=512,
                                 seed=seed, progress=False)
    gold = [world.gold_reward(prompts[s.prompt_index], completion_words(tok, s.completion_ids)) for s in samples]
    m, se = mean_se(gold, [s.prompt_index for s in samples])
    base = world.base_gold_mean(n=40000)
    lengths = [len(completion_words(tok, s.completion_ids)) for s in samples]
    return {"gold": m, "gold_se": se, "n": len(gold), "base_gold": base, "length": float(np.mean(lengths))}


def _train_overrides(run_dir: Path, prep: Prepared, reg: dict, method: dict, beta, seed) -> dict:
    """The dotted TrainConfig of one run: the lab's fixed settings, the method's objective, the regime's."""
    return {
        "output_dir": str(run_dir), "seed": int(seed), "log_every": 1, "save_every": 0,
        "overwrite": True, "resume": "never", "progress": False, "num_threads": 1,
        "model.name_or_path": prep.reference["path"],
        "data.train_file": prep.pairs[int(seed)]["files"][reg["name"]],
        **_world_overrides(prep.world),
        "objective.beta": float(beta),
        **{f"objective.{k}": v for k, v in method["overrides"].items()},
        **regime_overrides(reg),
    }


def _world_overrides(world) -> dict:
    """The world's dotted TrainConfig keys: truncation and extra columns (a model world: also LoRA)."""
    if isinstance(world, ModelWorld):
        return model_train_overrides(world)
    return {"data.max_length": 64, "data.max_prompt_length": 8,
            "data.extra_columns": ["gold_chosen", "gold_rejected", "p_chosen"]}


def build_specs(config: LabConfig, out: Path, prep: Prepared) -> list[dict]:
    """One spec per (regime, method, β, seed), in that nesting order; each TrainConfig is validated."""
    methods = resolve_methods(config.methods)
    regimes = resolve_regimes(config.regimes)
    specs = []
    for reg in regimes:
        for m in methods:
            for beta in config.betas:
                for seed in config.seeds:
                    run_dir = out / "runs" / reg["name"] / slug(m["label"]) / f"beta-{beta}" / f"seed-{seed}"
                    specs.append({
                        "meta": {"method": m["label"], "overrides": m["overrides"], "beta": float(beta),
                                 "seed": int(seed), "regime": reg["name"], "steps": regime_steps(reg)},
                        "world": store.world_settings(config.world), "reference_dir": prep.reference["path"],
                        "eval_samples": config.eval_samples, "keep_models": config.keep_models,
                        "train": _train_overrides(run_dir, prep, reg, m, beta, seed),
                    })
    for s in specs:  # fail fast on a bad combination, before anything runs
        load_config(TrainConfig, None, s["train"])
    return specs


# ----------------------------------------------------------------------------- the output directory
def _check_output(config: LabConfig) -> Path:
    """The output directory: new, empty, a lab prepared with the same settings (resumed), or `overwrite`."""
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"option output_dir: {out} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()) or config.overwrite:
        return out
    previous = store.prepared_key_of(out)
    if previous is None and (out / store.PREPARED).exists():
        raise InputError(f"option output_dir: {out / store.PREPARED} is not a readable lab preparation (torn or "
                         f"edited JSON); pass --overwrite to start the lab again, or choose another directory")
    if previous is None and _unfinished_preparation(out):
        _clear_previous(out)  # killed while preparing: no run had started, only the preparation is redone
        return out
    if previous is None:
        raise InputError(f"option output_dir: {out} is not empty; pass --overwrite to replace its results, "
                         f"or choose another directory")
    regimes = resolve_regimes(config.regimes)
    if previous != store.preparation_key(config, max(r["n_pairs"] for r in regimes)):
        raise InputError(f"option output_dir: {out} holds a lab prepared with other world / reference / pairs "
                         f"settings; pass --overwrite to start it again, or choose another directory")
    return out


OWNED = ("results.json", "results.csv", "report.md", "eval_prompts.txt", "reference", "behavior", "pairs", "runs",
         store.PREPARED)


def _unfinished_preparation(out: Path) -> bool:
    """Whether `out` holds only what a lab's preparation writes before `prepared.json` (a sweep killed while it
    was preparing): no `runs`, no results, nothing the lab does not own."""
    preparation = {"reference", "behavior", "pairs", "eval_prompts.txt"}
    return all(p.name in preparation for p in out.iterdir())


def _clear_previous(out: Path) -> None:
    """With overwrite: remove what an earlier lab run wrote there (only the lab's own files)."""
    if not out.is_dir():
        return
    for name in OWNED:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for p in list(out.glob("frontier_*.png")) + list(out.glob("over_steps_*.png")):
        p.unlink()


# ----------------------------------------------------------------------------- the sweep
def _validated(config: LabConfig) -> LabConfig:
    """InputError on a bad lab config, before anything is written; report_beta defaults to the first β."""
    resolve_methods(config.methods)
    resolve_regimes(config.regimes)
    if is_model_world(config.world):
        load_model_world(config.world)
    if not config.seeds or not config.betas:
        raise InputError("option seeds / betas: need at least one value each")
    if config.workers < 1:
        raise InputError(f"option workers must be >= 1, got {config.workers}")
    if config.eval_samples < 2:
        raise InputError(f"option eval_samples must be >= 2, got {config.eval_samples}")
    if config.report_beta not in [float(b) for b in config.betas]:
        config = dataclasses.replace(config, report_beta=float(config.betas[0]))
    return config


def _run_all(specs: list[dict], workers: int, progress, *, run_missing: bool = True) -> list[dict]:
    """Every run's record: those already recorded in the run directories, then the others run; one progress line
    each."""
    saved = [store.load_record(s) for s in specs]  # each record.json read once
    done = [rec for rec in saved if rec is not None]
    todo = [s for s, rec in zip(specs, saved) if rec is None]
    if done:
        progress(f"lab: {len(done)} of {len(specs)} runs already done (their records are reused)")
    if not run_missing:
        progress(f"lab: report only: {len(todo)} runs not done yet are left out")
        return done
    return done + _run_specs(todo, workers, progress)


def _run_specs(specs: list[dict], workers: int, progress) -> list[dict]:
    """Run `specs` on `workers` processes, longest runs first (so that the workers finish together), then seed by
    seed (so that an interrupted sweep holds whole seeds of every method)."""
    order = sorted(range(len(specs)), key=lambda i: (-specs[i]["meta"]["steps"], specs[i]["meta"]["seed"]))
    records: list[dict] = []
    n = len(specs)
    if n == 0:
        return records
    if workers == 1 or n == 1:
        torch.set_num_threads(1)
        for i in order:
            rec = run_one(specs[i])
            records.append(rec)
            progress(_fmt_run(rec, len(records), n))
        return records
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(workers, n), mp_context=ctx, initializer=_init_worker) as pool:
        futures = {pool.submit(run_one, specs[i]): i for i in order}
        for fut in cf.as_completed(futures):
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS
                rec = {**specs[futures[fut]]["meta"], "status": f"{type(exc).__name__}: {exc}", "seconds": 0.0,
                       "evals": []}
            records.append(rec)
            progress(_fmt_run(rec, len(records), n))
    return records


def run_lab(config: LabConfig, *, progress=say) -> dict:
    """Run the whole lab; returns the results dict (also written to `<output_dir>/results.json`)."""
    if not config.progress:
        progress = None
    progress = progress or (lambda *_: None)
    config = _validated(config)  # everything is validated before anything is written
    out = _check_output(config)
    if config.overwrite:
        _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    hf_logging.disable_progress_bar()  # "Loading weights" bars would drown the one-line-per-run progress
    # one thread: on a small shared machine two threads per process were up to 7x slower (spinning)
    torch.set_num_threads(1)
    prep = prepare(config, out, progress=progress)
    specs = build_specs(config, out, prep)
    progress(f"lab: {len(specs)} runs on {min(config.workers, len(specs))} worker(s) "
             f"({time.time() - t_start:.0f}s since start)")
    records = _run_all(specs, config.workers, progress, run_missing=not config.report_only)
    records.sort(key=lambda r: (r["regime"], r["method"], r["beta"], r["seed"]))
    results = {
        "config": {**dataclasses.asdict(config), "world": store.world_settings(config.world)},
        "world": prep.world.describe(),
        "why": prep.world.why(),
        "reference": prep.reference,
        "behavior": prep.behavior,
        "reference_gold": prep.ref_gold,
        "pairs": {str(k): v["stats"] for k, v in prep.pairs.items()},
        "methods": resolve_methods(config.methods),
        "regimes": resolve_regimes(config.regimes),
        "runs": records,
        "missing_runs": len(specs) - len(records),
        "wall_seconds": None,
    }
    results["wall_seconds"] = time.time() - t_start
    report = write_outputs(results, out)
    results["wall_seconds"] = time.time() - t_start
    store.write_json(results, out / "results.json")
    progress(f"lab: done in {results['wall_seconds'] / 60:.1f} min; report: {report}")
    return results
