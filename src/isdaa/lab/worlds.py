"""The one place that knows the lab's world kinds: a `LabWorldConfig` → its `LabWorld` (`world_for`), its class
(`world_type`, for what needs no loaded world: `--quick`), and, from a saved results.json, its report sections
(`report_for`) and the name of its gold reward (`gold_name`, what a gold axis says). Kind `model` is a real pretrained model (`isdaa.lab.model_world`); every other kind is a
controlled world (`isdaa.lab.controlled`)."""

from __future__ import annotations

from isdaa.config import LabWorldConfig
from isdaa.lab.controlled import ControlledWorld
from isdaa.lab.model_world import ModelWorld
from isdaa.lab.protocol import LabWorld, ReportSections

__all__ = ["world_type", "world_for", "report_for", "gold_name"]


def world_type(config: LabWorldConfig) -> type:
    """The class of the world `config` describes."""
    return ModelWorld if config.kind == "model" else ControlledWorld


def world_for(config: LabWorldConfig) -> LabWorld:
    """The world `config` describes, loaded (InputError / ValueError naming what is wrong)."""
    return world_type(config).load(config)


def report_for(settings: dict) -> ReportSections:
    """The report sections of a world from its saved settings (results.json's `config.world`)."""
    return world_type(LabWorldConfig(kind=settings.get("kind", "topics"))).report


def gold_name(settings: dict) -> str:
    """The gold reward of a world from its saved settings: a model world's gold scorer, else the controlled
    world's own exact reward ("<kind> world, exact")."""
    kind = settings.get("kind", "topics")
    return str(settings.get("gold") or LabWorldConfig().gold) if kind == "model" else f"{kind} world, exact"
