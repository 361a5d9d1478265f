"""`final/README.md`: a model card in Hugging Face's format (YAML front matter, then Markdown) for a trained run.

`model_card(config, facts)` is pure: the run's `TrainConfig` and its `RunFacts` (counts, the data's hash, the
last logged metrics) -> the text. `run_facts(...)` gathers the facts from the run directory at the end of a
run: the last training step, held-out (`eval/...`) and monitor (`monitor/kl_k3`, `monitor/gold`, written by
the in-run monitor when it is on) values of `metrics.jsonl`, and a SHA-256 of the training data.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from isdaa.config import TrainConfig
from isdaa.runtime import read_metrics

__all__ = ["RunFacts", "model_card", "run_facts", "data_sha256"]

# the training metrics the card shows, in this order (when logged)
CARD_METRICS = ("loss", "loss/base", "rewards/accuracies", "rewards/margins", "kl/chosen", "kl/rejected",
                "weights/mean", "weights/min", "weights/ess", "weights/clipped_frac", "lengths/chosen")
MONITOR_METRICS = ("monitor/kl_k3", "monitor/gold")


@dataclass
class RunFacts:
    """What a run knows at its end beyond its config."""

    steps: int
    skipped_steps: int
    rows_used: int
    rows_dropped: int
    data_sha256: str | None = None
    final: dict = field(default_factory=dict)  # the last training step's metrics (with its "step")
    held_out: dict = field(default_factory=dict)  # the last eval/... metrics (with their "step")
    monitor: dict = field(default_factory=dict)  # key -> (step, value) of the last monitor/... values
    datasets: list = field(default_factory=list)  # names of the data, when known (a `datasets` directory's)
    isdaa_version: str = ""


def _number(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _front_matter(config: TrainConfig, facts: RunFacts) -> str:
    tags = ["dpo", "isdaa", config.objective.loss]
    if config.objective.weighting != "none":
        tags += ["importance-sampling", f"weighting-{config.objective.weighting}"]
    if config.lora.enabled:
        tags.append("lora")
    meta = {"library_name": "transformers"}
    if config.model.name_or_path:
        meta["base_model"] = config.model.name_or_path
    meta["tags"] = tags
    if facts.datasets:
        meta["datasets"] = list(facts.datasets)
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _objective_section(config: TrainConfig) -> list[str]:
    o = config.objective
    lines = ["## Objective", "", "| loss | β | weighting | ε (weight ≤ e^{2ε}) | RPO η | hyper-parameters |",
             "| --- | --- | --- | --- | --- | --- |",
             f"| {o.loss} | {_number(o.beta)} | {o.weighting} | "
             f"{_number(o.is_eps) if o.weighting != 'none' else '–'} | {_number(o.sft_eta)} | "
             f"{json.dumps(o.hparams) if o.hparams else '–'} |", ""]
    if o.weighting != "none":
        lines += ["Importance-sampled DAA (Nguyen et al. 2025, arXiv 2506.08681): each pair's loss is weighted by "
                  "sg(exp(min(δ_w + δ_l, 2ε))), δ = log π_θ − log μ (μ: the behaviour policy of the data).", ""]
    return lines


def _data_section(config: TrainConfig, facts: RunFacts) -> list[str]:
    d = config.data
    lines = ["## Data", "", f"- train file: `{d.train_file}`"]
    if facts.data_sha256:
        lines.append(f"- SHA-256: `{facts.data_sha256}`")
    lines += [f"- rows used: {facts.rows_used}; dropped: {facts.rows_dropped} "
              f"(max_length {d.max_length}, max_prompt_length {d.max_prompt_length})"]
    if d.eval_file:
        lines.append(f"- held-out file: `{d.eval_file}`")
    return lines + [""]


def _training_section(config: TrainConfig, facts: RunFacts) -> list[str]:
    lora = f"LoRA r={config.lora.r}, α={config.lora.alpha} (merged into these weights)" if config.lora.enabled else "all weights"
    return ["## Training", "",
            f"- {facts.steps} optimizer steps ({facts.skipped_steps} skipped: non-finite), {lora}",
            f"- batch {config.batch_size} pairs × grad_accum {config.grad_accum} per process; lr {_number(config.optim.lr)} "
            f"({config.optim.scheduler}), seed {config.seed}", ""]


def _metrics_section(facts: RunFacts) -> list[str]:
    rows = [(k, facts.final[k]) for k in CARD_METRICS if k in facts.final]
    rows += sorted((k, v) for k, v in facts.held_out.items() if k.startswith("eval/"))
    lines = []
    if rows:
        step = facts.final.get("step", facts.steps)
        held_out = f"; held-out `eval/...` at step {facts.held_out['step']}" if "step" in facts.held_out else ""
        lines += [f"## Final metrics (step {step}{held_out})", "",
                  "| metric | value |", "| --- | --- |"] + [f"| `{k}` | {_number(v)} |" for k, v in rows] + [""]
    if facts.monitor:
        lines += ["## Over-optimization monitor (samples of the policy)", "", "| metric | step | value |",
                  "| --- | --- | --- |"]
        lines += [f"| `{k}` | {step} | {_number(v)} |" for k, (step, v) in sorted(facts.monitor.items())] + [""]
    return lines


def model_card(config: TrainConfig, facts: RunFacts) -> str:
    """The model card (README.md text) of a run trained with `config`."""
    name = Path(config.output_dir).name or "isdaa run"
    version = f" {facts.isdaa_version}" if facts.isdaa_version else ""
    body = [f"# {name}", "", f"A causal language model aligned with isdaa{version} (`isdaa train`), offline, on "
            "preference pairs.", ""]
    body += _objective_section(config) + _data_section(config, facts) + _training_section(config, facts)
    body += _metrics_section(facts)
    return _front_matter(config, facts) + "\n" + "\n".join(body)


# ------------------------------------------------------------------------------------------ gathering the facts
def data_sha256(path: str | Path) -> str | None:
    """SHA-256 of a data file, or of a directory's files (relative names and contents, sorted); None if absent."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return None
    h = hashlib.sha256()
    for p in files:
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _dataset_names(path: str | Path) -> list[str]:
    """The `dataset_name` a `datasets` directory records (its own or its train split's), if any."""
    for info in (Path(path) / "dataset_info.json", Path(path) / "train" / "dataset_info.json"):
        if info.is_file():
            try:
                name = json.loads(info.read_text()).get("dataset_name")
            except (OSError, ValueError, AttributeError):
                return []
            return [name] if isinstance(name, str) and name else []
    return []


def _last_values(records: list[dict]) -> tuple[dict, dict, dict]:
    """(the last training-step record, the last held-out record, key -> (step, value) of monitor metrics)."""
    final, held_out, monitor = {}, {}, {}
    for r in records:
        if "loss" in r:
            final = r
        if any(k.startswith("eval/") for k in r):
            held_out = r
        monitor.update({k: (r.get("step"), r[k]) for k in MONITOR_METRICS if r.get(k) is not None})
    return final, held_out, monitor


def run_facts(config: TrainConfig, run_dir: str | Path, *, steps: int, skipped_steps: int, rows_used: int,
              rows_dropped: int) -> RunFacts:
    """The facts of a finished run: counts as given, the rest from `metrics.jsonl` and the data file."""
    records = read_metrics(run_dir) if (Path(run_dir) / "metrics.jsonl").is_file() else []
    final, held_out, monitor = _last_values(records)
    try:
        version = metadata.version("isdaa")
    except metadata.PackageNotFoundError:
        version = ""
    train_file = config.data.train_file
    return RunFacts(
        steps=steps, skipped_steps=skipped_steps, rows_used=rows_used, rows_dropped=rows_dropped,
        data_sha256=data_sha256(train_file) if train_file else None, final=final, held_out=held_out,
        monitor=monitor, datasets=_dataset_names(train_file) if train_file else [], isdaa_version=version,
    )
