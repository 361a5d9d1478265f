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
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from isdaa.config import LabConfig, TrainConfig, load_config
from isdaa.errors import InputError
from isdaa.eval.stats import mean_se
from isdaa.generation import sample_completions
from isdaa.lab.evaluator import LabEvaluator
from isdaa.lab.outputs import write_outputs
from isdaa.lab.preference_data import completion_words, make_pairs, write_eval_prompts
from isdaa.lab.regimes import regime_overrides, regime_steps, resolve_methods, resolve_regimes
from isdaa.lab.sft import train_reference
from isdaa.lab.world import World, WorldParams
from isdaa.training.runtime import atomic_write_text, json_ready
from isdaa.training.trainer import train


def say(message: str) -> None:
    """The default progress printer: one line, flushed (progress lines arrive while the sweep runs)."""
    print(message, flush=True)


def slug(text: str) -> str:
    """`text` as a directory name (a method label in `runs/<regime>/<method>/`)."""
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", str(text)).strip("_") or "method"


# ----------------------------------------------------------------------------- one run (in a worker)
def _init_worker():
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
        world = World(WorldParams(**spec["world"]))
        ref_dir = spec["reference_dir"]
        tokenizer = AutoTokenizer.from_pretrained(ref_dir)
        reference = AutoModelForCausalLM.from_pretrained(ref_dir, use_safetensors=True).eval()
        evaluator = LabEvaluator(world, reference, tokenizer, n_samples=spec["eval_samples"], seed=meta["seed"])
        evals = evaluator.evals
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = load_config(TrainConfig, None, spec["train"])
        train(cfg, callbacks=[evaluator])
    except Exception as exc:  # noqa: BLE001
        status = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    if not spec.get("keep_models"):
        shutil.rmtree(run_dir / "final", ignore_errors=True)
    shutil.rmtree(run_dir / "ref-cache", ignore_errors=True)
    return {**meta, "status": status, "seconds": time.time() - t0, "evals": evals}


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
    """What every run shares: the world, the SFT reference, the pair files per seed, the reference's gold."""

    world: object
    reference: dict
    pairs: dict  # seed -> {"files": {regime: path}, "stats"}
    ref_gold: dict


def _pairs_per_seed(config: LabConfig, world: World, reference_path: str, out: Path, regimes: list[dict]) -> dict:
    """seed -> {"files": {regime name: its first n_pairs pairs}, "stats"}: one pair set per training seed."""
    n_max = max(r["n_pairs"] for r in regimes)
    pairs = {}
    for seed in config.seeds:
        path = out / "pairs" / f"seed-{seed}.jsonl"
        stats = make_pairs(world, reference_path, n_max, path, label_temperature=config.pairs.label_temperature,
                           seed=config.pairs.seed * 7919 + int(seed))
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        files = {}
        for reg in regimes:
            sub = out / "pairs" / f"{reg['name']}-seed-{seed}.jsonl"
            sub.write_text("".join(lines[: reg["n_pairs"]]), encoding="utf-8")
            files[reg["name"]] = str(sub)
        pairs[int(seed)] = {"files": files, "stats": stats}
    return pairs


def prepare(config: LabConfig, out: Path, *, progress=say) -> Prepared:
    """World, SFT reference, pairs per seed and the reference's gold reward (large sample)."""
    world = World(WorldParams(**dataclasses.asdict(config.world)))
    rc = config.reference
    t0 = time.time()
    with_threads = torch.get_num_threads()
    ref = train_reference(world, out, hidden_size=rc.hidden_size, num_layers=rc.num_layers, num_heads=rc.num_heads,
                          steps=rc.steps, batch_size=rc.batch_size, lr=rc.lr, seed=rc.seed, progress=progress)
    regimes = resolve_regimes(config.regimes)
    pairs = _pairs_per_seed(config, world, ref["path"], out, regimes)
    write_eval_prompts(world, out / "eval_prompts.txt")
    s0 = pairs[int(config.seeds[0])]["stats"]
    if progress:
        progress(f"pairs: {max(r['n_pairs'] for r in regimes)} per seed x {len(config.seeds)} seeds; chosen gold "
                 f"{s0['gold_chosen']:.2f} vs rejected {s0['gold_rejected']:.2f}, lengths {s0['length_chosen']:.2f} vs "
                 f"{s0['length_rejected']:.2f} ({time.time() - t0:.0f}s since start)")
    ref_gold = reference_gold(world, ref["path"], n=512)
    torch.set_num_threads(with_threads)
    return Prepared(world, ref, pairs, ref_gold)


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
        "data.max_length": 64, "data.max_prompt_length": 8,
        "data.extra_columns": ["gold_chosen", "gold_rejected", "p_chosen"],
        "objective.beta": float(beta),
        **{f"objective.{k}": v for k, v in method["overrides"].items()},
        **regime_overrides(reg),
    }


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
                        "world": dataclasses.asdict(config.world), "reference_dir": prep.reference["path"],
                        "eval_samples": config.eval_samples, "keep_models": config.keep_models,
                        "train": _train_overrides(run_dir, prep, reg, m, beta, seed),
                    })
    for s in specs:  # fail fast on a bad combination, before anything runs
        load_config(TrainConfig, None, s["train"])
    return specs


# ----------------------------------------------------------------------------- the output directory
def _check_output(config: LabConfig) -> Path:
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"option output_dir: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not config.overwrite:
        raise InputError(f"option output_dir: {out} is not empty; pass --overwrite to replace its results, "
                         f"or choose another directory")
    return out


OWNED = ("results.json", "results.csv", "report.md", "eval_prompts.txt", "reference", "pairs", "runs")


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


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _write_results_json(results: dict, path: Path) -> Path:
    """`results.json`: strict JSON (NaN/inf -> null), numpy numbers as numbers, paths as strings."""
    return atomic_write_text(path, json.dumps(json_ready(results), indent=1, default=_json_default))


# ----------------------------------------------------------------------------- the sweep
def _validated(config: LabConfig) -> LabConfig:
    """InputError on a bad lab config, before anything is written; report_beta defaults to the first β."""
    resolve_methods(config.methods)
    resolve_regimes(config.regimes)
    if not config.seeds or not config.betas:
        raise InputError("option seeds / betas: need at least one value each")
    if config.workers < 1:
        raise InputError(f"option workers must be >= 1, got {config.workers}")
    if config.eval_samples < 2:
        raise InputError(f"option eval_samples must be >= 2, got {config.eval_samples}")
    if config.report_beta not in [float(b) for b in config.betas]:
        config = dataclasses.replace(config, report_beta=float(config.betas[0]))
    return config


def _run_all(specs: list[dict], workers: int, progress) -> list[dict]:
    """Every run's record, longest runs first (so that the workers finish together); one progress line each."""
    order = sorted(range(len(specs)), key=lambda i: -specs[i]["meta"]["steps"])
    records: list[dict] = []
    n = len(specs)
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
    records = _run_all(specs, config.workers, progress)
    records.sort(key=lambda r: (r["regime"], r["method"], r["beta"], r["seed"]))
    results = {
        "config": dataclasses.asdict(config),
        "world": prep.world.describe(),
        "reference": prep.reference,
        "reference_gold": prep.ref_gold,
        "pairs": {str(k): v["stats"] for k, v in prep.pairs.items()},
        "methods": resolve_methods(config.methods),
        "regimes": resolve_regimes(config.regimes),
        "runs": records,
        "wall_seconds": None,
    }
    results["wall_seconds"] = time.time() - t_start
    report = write_outputs(results, out)
    results["wall_seconds"] = time.time() - t_start
    _write_results_json(results, out / "results.json")
    progress(f"lab: done in {results['wall_seconds'] / 60:.1f} min; report: {report}")
    return results
