"""The lab sweep: world → reference → pairs → methods × β × seeds × regimes through the training loop.

Every run is an ordinary training run (`isdaa.training.trainer.fit`) with its world's evaluator as a callback:
at step 0, every `eval_every` steps and at the end it samples `eval_samples` completions per held-out prompt from
the policy (temperature 1, no top-p), scores them under the policy and the frozen reference, and records the KL
(k1 and k3, SE clustered by prompt), the gold reward and the world's own measures; from `on_log` it keeps the
importance-weight statistics (ESS, mean, clipped share) of every step.

The sweep asks its world (`isdaa.lab.worlds.world_for`: the controlled worlds or a real model) to prepare the
reference and the pairs, builds one `RunSpec` per run (`isdaa.lab.spec`), runs them on a pool of `workers`
processes (`isdaa.lab.pool`; each finished run prints one line) and writes the results (`isdaa.lab.results`).
Outputs (in `output_dir`): `results.json`, `results.csv` (one row per run × evaluation), `report.md`,
`frontier_*.png`, `over_steps_*.png` (`isdaa.lab.outputs`), plus `reference/`, `pairs/` and
`runs/<regime>/<method>/beta-*/seed-*/`. The methods and regimes compared are resolved by `isdaa.lab.regimes`.
"""

from __future__ import annotations

import time

import torch
from transformers.utils import logging as hf_logging

from isdaa.config import LabConfig
from isdaa.lab import store
from isdaa.lab.directory import check_output, clear_previous
from isdaa.lab.pool import run_all
from isdaa.lab.regimes import resolve_regimes
from isdaa.lab.results import assemble, write_results
from isdaa.lab.spec import build_specs
from isdaa.lab.validation import check_lab_config, check_runs, load_world

__all__ = ["say", "run_lab"]


def say(message: str) -> None:
    """The default progress printer: one line, flushed (progress lines arrive while the sweep runs)."""
    print(message, flush=True)


def run_lab(config: LabConfig, *, progress=say) -> dict:
    """Run the whole lab; returns the results dict (also written to `<output_dir>/results.json`)."""
    if not config.progress:
        progress = None
    progress = progress or (lambda *_: None)
    config = check_lab_config(config)  # everything is validated before anything is prepared or written
    world = load_world(config)
    check_runs(config, world)
    n_pairs = max(r["n_pairs"] for r in resolve_regimes(config.regimes))
    out = check_output(config, store.preparation_key(world.settings(), config, n_pairs))
    if config.overwrite:
        clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    hf_logging.disable_progress_bar()  # "Loading weights" bars would drown the one-line-per-run progress
    # one thread: on a small shared machine two threads per process were up to 7x slower (spinning)
    torch.set_num_threads(1)
    prep = world.prepare(config, out, progress)
    specs = build_specs(config, out, prep, world)
    progress(f"lab: {len(specs)} runs on {min(config.workers, len(specs))} worker(s) "
             f"({time.time() - t_start:.0f}s since start)")
    records = run_all(specs, config.workers, progress, run_missing=not config.report_only)
    results = assemble(config, world, prep, records, len(specs))
    report = write_results(results, out, t_start)
    progress(f"lab: done in {results['wall_seconds'] / 60:.1f} min; report: {report}")
    return results
