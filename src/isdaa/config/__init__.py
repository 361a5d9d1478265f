"""Configuration: the schemas of every command and the generic YAML + dotted-override loader."""

from isdaa.config.schemas import *  # noqa: F401,F403
from isdaa.config.schemas import (  # noqa: F401
    ALIASES, CHECKS, EvalConfig, LabConfig, LabPairsConfig, LabReferenceConfig, LabWorldConfig, LoraConfig,
    ModelConfig, ObjectiveConfig, OptimConfig, PairsConfig, TrainConfig, DataConfig, describe, load_config,
    parse_overrides, read_yaml, save_config, to_dict,
)
