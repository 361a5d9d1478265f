"""The lab sweep: world → SFT reference → pairs → methods × β × seeds × regimes through `isdaa.train`.

Every run is an ordinary `isdaa.train(TrainConfig)` with a `LabEvaluator` callback. At step 0, every
`eval_every` steps and at the end, the evaluator samples `eval_samples` completions per held-out prompt from
the policy (temperature 1, no top-p, `isdaa.eval.sample_completions`), scores them teacher-forced under the
policy and the frozen reference (`score_logps`), and records KL (k1 and k3, `kl_estimates`, SE clustered by
prompt), the exact gold reward (the world's scorer, registered as `lab`), lengths, repeats and target hits;
from `on_log` it keeps the importance-weight statistics (ESS, mean, clipped share) of every step.

Runs go to a pool of `workers` processes (one torch thread each); each finished run prints one line.
Outputs (in `output_dir`): `results.json`, `results.csv` (one row per run × evaluation), `report.md`,
`frontier_*.png`, `over_steps_*.png`, plus `reference/`, `pairs/` and `runs/<regime>/<method>/beta-*/seed-*/`.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import json
import math
import multiprocessing
import re
import shutil
import time
from pathlib import Path

import numpy as np

from isdaa.config import LabConfig, ObjectiveConfig, TrainConfig, load_config
from isdaa.errors import InputError
from isdaa.lab.evaluator import LabEvaluator

# ----------------------------------------------------------------------------- default methods and regimes
# Methods: a label plus ObjectiveConfig overrides (loss, weighting, is_eps, sft_eta, hparams, ...).
DEFAULT_METHODS: list[dict] = [
    {"label": "DPO", "loss": "sigmoid"},
    {"label": "IPO", "loss": "ipo"},
    {"label": "IS-DPO eps=0.25", "loss": "sigmoid", "weighting": "is", "is_eps": 0.25},
    {"label": "IS-DPO eps=1", "loss": "sigmoid", "weighting": "is", "is_eps": 1.0},
    {"label": "IS-IPO eps=0.25", "loss": "ipo", "weighting": "is", "is_eps": 0.25},
    {"label": "IS-IPO eps=1", "loss": "ipo", "weighting": "is", "is_eps": 1.0},
    # RPO: eta = 1 so that at initialisation the SFT term's gradient on log pi(y_w) (eta*beta) is of the same
    # order as DPO's (beta*sigma(0) = beta/2); the literature's eta = 0.005 would make RPO = DPO at beta = 0.01.
    {"label": "RPO", "loss": "sigmoid", "sft_eta": 1.0},
    {"label": "chiPO", "loss": "chipo"},
    {"label": "R-DPO", "loss": "rdpo", "hparams": {"alpha": 0.01}},
    {"label": "IS-DPO token-mean eps=1", "loss": "sigmoid", "weighting": "is_token_mean", "is_eps": 1.0},
    {"label": "IS-DPO two-sided eps=1", "loss": "sigmoid", "weighting": "is_two_sided", "is_eps": 1.0},
    {"label": "IS-IPO token-mean eps=1", "loss": "ipo", "weighting": "is_token_mean", "is_eps": 1.0},
    {"label": "IS-IPO two-sided eps=1", "loss": "ipo", "weighting": "is_two_sided", "is_eps": 1.0},
]

# Regimes: fixed on plain DPO at beta = 0.01 before any other method was run (see the docstring of
# isdaa.lab.world): (b) "few_pairs" is where DPO over-optimizes; (a) "one_pass" is the paper's protocol.
DEFAULT_REGIMES: list[dict] = [
    {"name": "few_pairs", "n_pairs": 1000, "max_steps": 1000, "lr": 5e-5, "batch_size": 32, "eval_every": 50},
    {"name": "one_pass", "n_pairs": 16000, "epochs": 1, "lr": 2e-5, "batch_size": 32, "eval_every": 50},
]

REGIME_KEYS = {"name", "n_pairs", "max_steps", "epochs", "lr", "batch_size", "eval_every"}


def say(message: str) -> None:
    """The default progress printer: one line, flushed (progress lines arrive while the sweep runs)."""
    print(message, flush=True)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", str(text)).strip("_") or "method"


# ----------------------------------------------------------------------------- validation of methods/regimes
def resolve_methods(methods: list) -> list[dict]:
    methods = methods or DEFAULT_METHODS
    objective_keys = {f.name for f in dataclasses.fields(ObjectiveConfig)} - {"beta"}
    out, labels = [], set()
    for i, m in enumerate(methods):
        if not isinstance(m, dict):
            raise InputError(f"option methods[{i}]: expected a mapping like {{label: DPO, loss: sigmoid}}, got {m!r}")
        m = dict(m)
        label = str(m.pop("label", "") or m.get("loss", f"method{i}"))
        if label in labels:
            raise InputError(f"option methods[{i}]: duplicate label {label!r}")
        labels.add(label)
        for key in m:
            if key not in objective_keys:
                import difflib

                close = difflib.get_close_matches(key, sorted(objective_keys), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise InputError(f"option methods[{i}] ({label}): unknown key {key!r}{hint}; "
                                 f"expected label or an objective option: {', '.join(sorted(objective_keys))}")
        # validate through the config machinery (types, values, did-you-mean), then the names
        obj = load_config(TrainConfig, None, {f"objective.{k}": v for k, v in m.items()}).objective
        from isdaa.objectives import LOSS_KINDS, WEIGHTINGS

        if obj.loss not in LOSS_KINDS:
            raise InputError(f"option methods[{i}] ({label}): unknown loss {obj.loss!r}; expected one of "
                             f"{', '.join(LOSS_KINDS)}")
        if obj.weighting not in WEIGHTINGS:
            raise InputError(f"option methods[{i}] ({label}): unknown weighting {obj.weighting!r}; expected one of "
                             f"{', '.join(WEIGHTINGS)}")
        out.append({"label": label, "overrides": m})
    return out


def resolve_regimes(regimes: list) -> list[dict]:
    regimes = regimes or DEFAULT_REGIMES
    out, names = [], set()
    for i, r in enumerate(regimes):
        if not isinstance(r, dict):
            raise InputError(f"option regimes[{i}]: expected a mapping, got {r!r}")
        r = dict(r)
        name = str(r.get("name") or f"regime{i}")
        if name in names:
            raise InputError(f"option regimes[{i}]: duplicate name {name!r}")
        names.add(name)
        extra = {k: v for k, v in r.items() if k not in REGIME_KEYS}
        for k in extra:
            if "." not in k:
                raise InputError(f"option regimes[{i}] ({name}): unknown key {k!r}; expected "
                                 f"{', '.join(sorted(REGIME_KEYS))} or a dotted TrainConfig key (e.g. optim.scheduler)")
        try:
            n_pairs = int(r.get("n_pairs", 1000))
        except (TypeError, ValueError):
            raise InputError(f"option regimes[{i}] ({name}): n_pairs must be an integer") from None
        if n_pairs < 1:
            raise InputError(f"option regimes[{i}] ({name}): n_pairs must be >= 1")
        reg = {
            "name": name, "n_pairs": n_pairs, "max_steps": int(r.get("max_steps", 0) or 0),
            "epochs": float(r.get("epochs", 1.0)), "lr": float(r.get("lr", 5e-5)),
            "batch_size": int(r.get("batch_size", 32)), "eval_every": int(r.get("eval_every", 50)), "extra": extra,
        }
        if reg["batch_size"] > n_pairs:
            raise InputError(f"option regimes[{i}] ({name}): batch_size {reg['batch_size']} > n_pairs {n_pairs}")
        load_config(TrainConfig, None, {**_regime_overrides(reg), "objective.beta": 0.1})
        out.append(reg)
    return out


def _regime_overrides(reg: dict) -> dict:
    o = {"epochs": reg["epochs"], "max_steps": reg["max_steps"], "batch_size": reg["batch_size"],
         "eval_every": reg["eval_every"], "optim.lr": reg["lr"]}
    o.update(reg["extra"])
    return o


def regime_steps(reg: dict) -> int:
    return reg["max_steps"] or math.ceil(reg["epochs"] * (reg["n_pairs"] // reg["batch_size"]))


# ----------------------------------------------------------------------------- the evaluator callback
def _init_worker():
    import torch
    from transformers.utils import logging as hf_logging

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
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        import isdaa
        from isdaa.lab.world import World, WorldParams

        torch.set_num_threads(1)
        world = World(WorldParams(**spec["world"]))
        ref_dir = spec["reference_dir"]
        tokenizer = AutoTokenizer.from_pretrained(ref_dir)
        reference = AutoModelForCausalLM.from_pretrained(ref_dir, use_safetensors=True).eval()
        evaluator = LabEvaluator(world, reference, tokenizer, n_samples=spec["eval_samples"], seed=meta["seed"])
        evals = evaluator.evals
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = load_config(TrainConfig, None, spec["train"])
        isdaa.train(cfg, callbacks=[evaluator])
    except Exception as exc:  # noqa: BLE001
        status = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    if not spec.get("keep_models"):
        shutil.rmtree(run_dir / "final", ignore_errors=True)
    shutil.rmtree(run_dir / "ref-cache", ignore_errors=True)
    return {**meta, "status": status, "seconds": time.time() - t0, "evals": evals}


# ----------------------------------------------------------------------------- the sweep
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


@dataclasses.dataclass
class Prepared:
    world: object
    reference: dict
    pairs: dict  # seed -> {"path", "stats"}
    ref_gold: dict


def prepare(config: LabConfig, out: Path, *, progress=say) -> Prepared:
    """World, SFT reference, pairs per seed and the reference's gold reward (large sample)."""
    import torch

    from isdaa.lab.preference_data import make_pairs, write_eval_prompts
    from isdaa.lab.sft import train_reference
    from isdaa.lab.world import World, WorldParams

    world = World(WorldParams(**dataclasses.asdict(config.world)))
    rc = config.reference
    t0 = time.time()
    with_threads = torch.get_num_threads()
    ref = train_reference(world, out, hidden_size=rc.hidden_size, num_layers=rc.num_layers, num_heads=rc.num_heads,
                          steps=rc.steps, batch_size=rc.batch_size, lr=rc.lr, seed=rc.seed, progress=progress)
    regimes = resolve_regimes(config.regimes)
    n_max = max(r["n_pairs"] for r in regimes)
    pairs = {}
    for seed in config.seeds:
        path = out / "pairs" / f"seed-{seed}.jsonl"
        stats = make_pairs(world, ref["path"], n_max, path, label_temperature=config.pairs.label_temperature,
                           seed=config.pairs.seed * 7919 + int(seed))
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        files = {}
        for reg in regimes:
            sub = out / "pairs" / f"{reg['name']}-seed-{seed}.jsonl"
            sub.write_text("".join(lines[: reg["n_pairs"]]), encoding="utf-8")
            files[reg["name"]] = str(sub)
        pairs[int(seed)] = {"files": files, "stats": stats}
    write_eval_prompts(world, out / "eval_prompts.txt")
    s0 = pairs[int(config.seeds[0])]["stats"]
    if progress:
        progress(f"pairs: {n_max} per seed x {len(config.seeds)} seeds; chosen gold {s0['gold_chosen']:.2f} vs "
                 f"rejected {s0['gold_rejected']:.2f}, lengths {s0['length_chosen']:.2f} vs {s0['length_rejected']:.2f} "
                 f"({time.time() - t0:.0f}s since start)")
    ref_gold = reference_gold(world, ref["path"], n=512)
    torch.set_num_threads(with_threads)
    return Prepared(world, ref, pairs, ref_gold)


def reference_gold(world, reference_dir, *, n: int = 512, seed: int = 99) -> dict:
    """The reference policy's gold reward on the held-out prompts, from n samples per prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from isdaa.eval import mean_se
    from isdaa.generation import sample_completions
    from isdaa.lab.preference_data import completion_words

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


def build_specs(config: LabConfig, out: Path, prep: Prepared) -> list[dict]:
    methods = resolve_methods(config.methods)
    regimes = resolve_regimes(config.regimes)
    specs = []
    for reg in regimes:
        for m in methods:
            for beta in config.betas:
                for seed in config.seeds:
                    run_dir = out / "runs" / reg["name"] / slug(m["label"]) / f"beta-{beta}" / f"seed-{seed}"
                    train = {
                        "output_dir": str(run_dir), "seed": int(seed), "log_every": 1, "save_every": 0,
                        "overwrite": True, "resume": "never", "progress": False, "num_threads": 1,
                        "model.name_or_path": prep.reference["path"],
                        "data.train_file": prep.pairs[int(seed)]["files"][reg["name"]],
                        "data.max_length": 64, "data.max_prompt_length": 8,
                        "data.extra_columns": ["gold_chosen", "gold_rejected", "p_chosen"],
                        "objective.beta": float(beta),
                        **{f"objective.{k}": v for k, v in m["overrides"].items()},
                        **_regime_overrides(reg),
                    }
                    specs.append({
                        "meta": {"method": m["label"], "overrides": m["overrides"], "beta": float(beta),
                                 "seed": int(seed), "regime": reg["name"], "steps": regime_steps(reg)},
                        "world": dataclasses.asdict(config.world), "reference_dir": prep.reference["path"],
                        "eval_samples": config.eval_samples, "keep_models": config.keep_models, "train": train,
                    })
    for s in specs:  # fail fast on a bad combination, before anything runs
        load_config(TrainConfig, None, s["train"])
    return specs


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


def run_lab(config: LabConfig, *, progress=say) -> dict:
    """Run the whole lab; returns the results dict (also written to `<output_dir>/results.json`)."""
    from isdaa.lab.report import write_outputs

    if not config.progress:
        progress = None
    progress = progress or (lambda *_: None)
    # validate everything before writing anything
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
    out = _check_output(config)
    _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would drown the one-line-per-run progress
    # one thread: on a small shared machine two threads per process were up to 7x slower (spinning)
    torch.set_num_threads(1)
    prep = prepare(config, out, progress=progress)
    specs = build_specs(config, out, prep)
    # longest runs first so that the two workers finish together
    order = sorted(range(len(specs)), key=lambda i: -specs[i]["meta"]["steps"])
    records: list[dict] = []
    n = len(specs)
    progress(f"lab: {n} runs on {min(config.workers, n)} worker(s) ({time.time() - t_start:.0f}s since start)")
    if config.workers == 1 or n == 1:
        torch.set_num_threads(1)
        for i in order:
            rec = run_one(specs[i])
            records.append(rec)
            progress(_fmt_run(rec, len(records), n))
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=min(config.workers, n), mp_context=ctx, initializer=_init_worker) as pool:
            futures = {pool.submit(run_one, specs[i]): i for i in order}
            for fut in cf.as_completed(futures):
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS
                    rec = {**specs[futures[fut]]["meta"], "status": f"{type(exc).__name__}: {exc}", "seconds": 0.0,
                           "evals": []}
                records.append(rec)
                progress(_fmt_run(rec, len(records), n))
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
    (out / "results.json").write_text(json.dumps(finite_or_none(results), indent=1, default=_json_default),
                                      encoding="utf-8")
    progress(f"lab: done in {results['wall_seconds'] / 60:.1f} min; report: {report}")
    return results


def finite_or_none(obj):
    """A copy with NaN/inf floats replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, np.floating):
        return finite_or_none(float(obj))
    return obj


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def write_csv(results: dict, path: Path) -> Path:
    cols = ["regime", "method", "beta", "seed", "step", "gold", "gold_se", "kl_k1", "kl_k1_se", "kl_k3", "kl_k3_se",
            "sqrt_kl", "length", "finished", "target_hits", "target_repeats", "off_vocab", "ess_min_so_far",
            "ess_min", "ess_mean", "w_mean", "w_min", "w_max", "clipped_frac", "raw_log_w_mean", "train_acc",
            "logps_chosen", "logps_rejected", "train_loss", "seconds", "status"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for run in results["runs"]:
            for ev in run["evals"]:
                w.writerow({**{k: run[k] for k in ("regime", "method", "beta", "seed", "status")}, **ev})
    return path
