"""Running a lab sweep's runs: each one an `isdaa.training.trainer.fit` with its world's evaluator, in this
process or on a pool of worker processes (one torch thread each); a finished run's record is saved in its
directory, so a sweep run again skips it."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import shutil
import time

import torch

from isdaa.config import LabWorldConfig
from isdaa.errors import RunInterrupted
from isdaa.lab import store
from isdaa.lab.spec import RunSpec
from isdaa.lab.workers import init_worker
from isdaa.lab.worlds import world_for
from isdaa.training.trainer import fit

__all__ = ["run_one", "run_all"]


def run_one(spec: RunSpec) -> dict:
    """Train and evaluate one run; returns its record (never raises but on a signal: a diverged or failed run is a
    result, recorded with its status and the evaluations it reached)."""
    t0 = time.time()
    evals: list[dict] = []
    status = "ok"
    run_dir = spec.run_dir
    try:
        torch.set_num_threads(1)
        evaluator = world_for(LabWorldConfig(**spec.world)).evaluator(spec)
        evals = evaluator.evals
        shutil.rmtree(run_dir, ignore_errors=True)
        fit(spec.train, callbacks=[evaluator])
    except RunInterrupted as exc:  # a lab run is not resumed from its checkpoint: it runs again
        raise RunInterrupted(f"lab: {exc.event} in run {spec.method} β={spec.beta} seed={spec.seed}; the finished "
                             f"runs are kept: run the same command to go on (this run starts again)",
                             exc.exit_code) from None
    except Exception as exc:  # noqa: BLE001
        status = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    if not spec.keep_models:
        shutil.rmtree(run_dir / "final", ignore_errors=True)
    shutil.rmtree(run_dir / "ref-cache", ignore_errors=True)
    record = {**spec.meta(), "status": status, "seconds": time.time() - t0, "evals": evals}
    run_dir.mkdir(parents=True, exist_ok=True)
    store.save_record(spec, record)  # a sweep run again skips this run
    return record


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


def run_all(specs: list[RunSpec], workers: int, progress, *, run_missing: bool = True) -> list[dict]:
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


def _run_specs(specs: list[RunSpec], workers: int, progress) -> list[dict]:
    """Run `specs` on `workers` processes, longest runs first (so that the workers finish together), then seed by
    seed (so that an interrupted sweep holds whole seeds of every method)."""
    order = sorted(range(len(specs)), key=lambda i: (-specs[i].steps, specs[i].seed))
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
    with cf.ProcessPoolExecutor(max_workers=min(workers, n), mp_context=ctx, initializer=init_worker) as pool:
        futures = {pool.submit(run_one, specs[i]): i for i in order}
        for fut in cf.as_completed(futures):
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS
                rec = {**specs[futures[fut]].meta(), "status": f"{type(exc).__name__}: {exc}", "seconds": 0.0,
                       "evals": []}
            records.append(rec)
            progress(_fmt_run(rec, len(records), n))
    return records
