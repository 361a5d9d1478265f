"""The controlled worlds (kinds `topics`, `junk`, `behavior`) as a lab sweep sees them (`LabWorld`).

The world itself — prompts, base distribution, exact gold reward — is `isdaa.lab.world.World`. Here: its
preparation (an SFT reference fitted to the base, `isdaa.lab.sft`; for kind `behavior` a second SFT model, the
behaviour policy μ; one pair set per training seed sampled from μ or the reference, `isdaa.lab.preference_data`),
its evaluator (`LabEvaluator` against the SFT reference), its training keys (short sequences, the pairs'
diagnostic columns) and its sections of report.md (the reference's fit, what DPO's policy looks like).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from isdaa.config import LabWorldConfig
from isdaa.lab import store
from isdaa.lab.evaluator import LabEvaluator
from isdaa.lab.prepare import reference_gold, regime_files, write_eval_prompts
from isdaa.lab.preference_data import EXTRA_COLUMNS, make_pairs
from isdaa.lab.protocol import Prepared, ReportSections
from isdaa.lab.regimes import resolve_regimes
from isdaa.lab.sft import train_reference
from isdaa.lab.verdict import mechanism_table
from isdaa.lab.world import WHY_OVEROPTIMIZES, World, lab_scorer

__all__ = ["ControlledWorld"]


# ----------------------------------------------------------------------------- report.md
def reference_lines(results: dict) -> list[str]:
    """The report's "Reference and data": the SFT reference's fit, its gold, the first seed's pairs."""
    ref = results["reference"]
    rg = results["reference_gold"]
    lines = [
        "## Reference and data", "",
        f"- Reference: tiny Llama (hidden {ref['hidden_size']}, {ref['num_layers']} layers) fitted by plain SFT "
        f"({ref['steps']} steps × {ref['batch_size']} fresh base samples): KL(base‖ref) = {ref['kl_base_ref']:.3f} ± "
        f"{ref['kl_base_ref_se']:.3f} nats per response ({ref['kl_base_ref_per_token']:.4f} per token; base entropy "
        f"{ref['base_entropy']:.2f} nats).",
        f"- Reference gold reward on the held-out prompts: {rg['gold']:.3f} ± {rg['gold_se']:.3f} ({rg['n']} samples; "
        f"the base distribution's: {rg['base_gold']:.3f}); mean length {rg['length']:.2f} words. "
        f"A run **collapses** when its final gold is below {rg['gold']:.3f}.",
    ]
    for seed, st in list(results["pairs"].items())[:1]:
        lines.append(
            f"- Pairs (seed {seed}; each training seed has its own pair set): {st['n_pairs']} pairs, Bradley–Terry labels "
            f"at temperature {st['label_temperature']}; gold chosen {st['gold_chosen']:.2f} vs rejected "
            f"{st['gold_rejected']:.2f}; length chosen {st['length_chosen']:.2f} vs rejected {st['length_rejected']:.2f}; "
            f"{100 * st['ties']:.0f}% ties in gold; labels agree with the gold reward on {100 * st['agreement']:.1f}% of "
            f"the others (BT expects {100 * st['expected_agreement']:.1f}%)."
        )
    return lines


def mechanism_note(results: dict) -> str:
    """The note under the table of what DPO's policy looks like."""
    world = results["config"]["world"]
    return (f"Off-support tokens: generated tokens outside the base distribution's words (prompt words, special "
            f"tokens) — responses the data never contain (see the reference row). \"No EOS\": samples cut at the "
            f"length limit ({world['max_len'] + 1} tokens).")


FILES_NOTE = ("`results.json` (everything, incl. every evaluation), `results.csv` (one row per run × evaluation), "
              "`reference/` (the SFT reference + tokenizer), `pairs/` (TRL JSONL with behaviour log-probs), "
              "`eval_prompts.txt`, `runs/` (each run's config.yaml and metrics.jsonl).")

REPORT = ReportSections(
    reference=reference_lines, after_protocol=lambda results: [], policy_table=mechanism_table,
    policy_note=mechanism_note, files=FILES_NOTE,
    why=lambda results: WHY_OVEROPTIMIZES[results["config"]["world"].get("kind", "topics")])


# ----------------------------------------------------------------------------- preparation
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


def _pairs_per_seed(config, world: World, sampler_path: str, out: Path, n_pairs: int, seeds: list) -> dict:
    """seed -> {"file", "stats"}: one pair set of `n_pairs` per training seed, sampled from the model in
    `sampler_path` (the reference, or the behaviour policy μ)."""
    pairs = {}
    for seed in seeds:
        path = out / "pairs" / f"seed-{seed}.jsonl"
        stats = make_pairs(world, sampler_path, n_pairs, path, label_temperature=config.pairs.label_temperature,
                           seed=config.pairs.seed * 7919 + int(seed))
        pairs[int(seed)] = {"file": str(path), "stats": stats}
    return pairs


class ControlledWorld:
    """A controlled world (`LabWorld`): `world` is its `isdaa.lab.world.World`."""

    extra_columns = tuple(EXTRA_COLUMNS)
    report = REPORT

    def __init__(self, config: LabWorldConfig):
        self.config = config
        self.world = World(config)

    @staticmethod
    def load(config: LabWorldConfig) -> ControlledWorld:
        """The world of `config` (ValueError when its numbers do not define one)."""
        return ControlledWorld(config)

    @staticmethod
    def quick(config: LabWorldConfig) -> LabWorldConfig:
        """The world of `isdaa lab --quick`: unchanged (its evaluation is cheap)."""
        return config

    def settings(self) -> dict:
        """Its config without the model-world fields (the fingerprints of every controlled lab stay as they were)."""
        settings = dataclasses.asdict(self.config)
        for name in store.MODEL_WORLD_FIELDS:
            settings.pop(name)
        return settings

    def describe(self) -> str:
        return self.world.describe()

    def why(self) -> str:
        return self.world.why()

    def train_overrides(self) -> dict:
        """Short sequences (prompts of two words, at most max_len + 1 response tokens) and the pairs' columns."""
        return {"data.max_length": 64, "data.max_prompt_length": 8, "data.extra_columns": list(self.extra_columns)}

    def evaluator(self, spec) -> LabEvaluator:
        """`LabEvaluator` against the SFT reference in `spec.reference_dir`."""
        tokenizer = AutoTokenizer.from_pretrained(spec.reference_dir)
        reference = AutoModelForCausalLM.from_pretrained(spec.reference_dir, use_safetensors=True).eval()
        return LabEvaluator(self.world, reference, tokenizer, n_samples=spec.eval_samples, seed=spec.seed)

    def reference_gold(self, reference_dir, *, n: int = 512, seed: int = 99) -> dict:
        """The reference's gold reward on the held-out prompts from `n` samples per prompt, and the base's."""
        tok = AutoTokenizer.from_pretrained(str(reference_dir))
        model = AutoModelForCausalLM.from_pretrained(str(reference_dir), use_safetensors=True).eval()
        prompts = self.world.eval_prompts()
        score = lab_scorer(self.world, tok)

        def gold(samples) -> list[float]:
            return score([prompts[s.prompt_index] for s in samples], [s.text for s in samples],
                         completion_ids=[s.completion_ids for s in samples])

        measured = reference_gold(model, tok, [tok(p)["input_ids"] for p in prompts], gold, n=n,
                                  max_new_tokens=self.world.params.max_len + 1, batch_size=512, seed=seed)
        return {**measured, "base_gold": self.world.base_gold_mean(n=40000)}

    def prepare(self, config, out: Path, progress) -> Prepared:
        """SFT reference (and behaviour policy), pairs per seed, the reference's gold (a large sample); what
        `prepared.json` holds for the same settings is reused, so a resumed sweep starts at once."""
        regimes = resolve_regimes(config.regimes)
        n_pairs = max(r["n_pairs"] for r in regimes)
        key = store.preparation_key(self.settings(), config, n_pairs)
        saved = store.load_prepared(out, key) or {}
        t0 = time.time()
        with_threads = torch.get_num_threads()
        ref = saved.get("reference") or _fit(self.world, config.reference, out, config.reference.seed, progress)
        behavior = saved["behavior"] if "behavior" in saved else _fit_behavior(self.world, config.reference, out,
                                                                                 progress)
        pairs = {int(k): v for k, v in saved.get("pairs", {}).items()}
        new_seeds = [s for s in config.seeds if int(s) not in pairs]
        pairs.update(_pairs_per_seed(config, self.world, (behavior or ref)["path"], out, n_pairs, new_seeds))
        pairs = regime_files(pairs, out, regimes)
        write_eval_prompts(self.world.eval_prompts(), out / "eval_prompts.txt")
        s0 = pairs[int(config.seeds[0])]["stats"]
        if progress:
            progress(f"pairs: {n_pairs} per seed x {len(config.seeds)} seeds ({len(new_seeds)} new); chosen gold "
                     f"{s0['gold_chosen']:.2f} vs rejected {s0['gold_rejected']:.2f}, lengths {s0['length_chosen']:.2f} "
                     f"vs {s0['length_rejected']:.2f} ({time.time() - t0:.0f}s since start)")
        ref_gold = saved.get("reference_gold") or self.reference_gold(ref["path"])
        store.save_prepared(out, key, {"reference": ref, "behavior": behavior, "pairs": pairs, "reference_gold": ref_gold})
        torch.set_num_threads(with_threads)
        return Prepared(ref, {int(s): pairs[int(s)] for s in config.seeds}, ref_gold, behavior)
