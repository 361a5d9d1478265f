"""What the sweep asks of a world (`LabWorld`) and what it gets back (`Prepared`, `ReportSections`).

A world is the one thing a lab sweep varies besides the methods: the controlled worlds
(`isdaa.lab.controlled`: an exact gold reward, an SFT reference) and the real-model world
(`isdaa.lab.model_world`: a pretrained model is the reference). Each one prepares its reference and pairs, builds
the evaluation callback of a run, says what it changes in a run's TrainConfig, describes itself, and writes the
world-specific parts of report.md. `isdaa.lab.worlds` maps a config to its world; nothing else knows the kinds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = ["LabWorld", "Prepared", "ReportSections"]


@dataclasses.dataclass
class Prepared:
    """What every run shares: the reference (its info, `path` its directory), the pair files per seed, the
    reference's gold, and the behaviour policy that sampled the pairs (None: the reference did)."""

    reference: dict
    pairs: dict  # seed -> {"file": all its pairs, "files": {regime: its first n_pairs}, "stats"}
    ref_gold: dict
    behavior: dict | None = None


@dataclasses.dataclass(frozen=True)
class ReportSections:
    """The world-specific parts of report.md, each computed from the results dict (so that `rebuild` needs no
    world): "Reference and data", the sections after the protocol, the table of what DPO's policy looks like
    and its note, the list of files, and (optionally) every method at its peak and at the end."""

    reference: Callable[[dict], list[str]]
    after_protocol: Callable[[dict], list[str]]
    policy_table: Callable[[dict, str, float, str], list[str]]
    policy_note: Callable[[dict], str]
    files: str
    why: Callable[[dict], str]  # the "why over-optimization happens here" paragraph of a results.json without it
    # every method's policy at its gold peak and at the end, with samples (worlds that have one)
    methods_table: Callable[[dict, str, float], list[str]] | None = None


class LabWorld(Protocol):
    """A lab world, as the sweep uses it."""

    report: ReportSections
    extra_columns: tuple[str, ...]  # the diagnostic columns of its pair files (`data.extra_columns`)

    @staticmethod
    def load(config) -> LabWorld:
        """The world of a `LabWorldConfig` (an error naming the option when it does not describe one)."""

    @staticmethod
    def quick(config):
        """The `LabWorldConfig` of `isdaa lab --quick` (the world's own cut of its evaluation)."""

    def settings(self) -> dict:
        """Its config as the fingerprints and results.json record it."""

    def prepare(self, config, out: Path, progress) -> Prepared:
        """Fit or load the reference, make the pairs of every seed, measure the reference's gold; reuse what
        `prepared.json` holds for the same settings."""

    def evaluator(self, spec):
        """The training callback that evaluates run `spec` (a `RunSpec`)."""

    def train_overrides(self) -> dict:
        """The dotted TrainConfig keys this world sets in every run (before a regime's own)."""

    def describe(self) -> str:
        """Markdown bullets describing the world (report.md's "The world")."""

    def why(self) -> str:
        """The report's paragraph "why over-optimization happens here"."""
