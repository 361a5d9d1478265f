"""Configuration: the schemas of every command (`schemas`), how a field states its help and limit
(`fields`), and the generic YAML + dotted-override loader (`loader`)."""

from isdaa.config.loader import OptionHelp, config_yaml, load_config, option_help, read_yaml, save_config, to_dict
from isdaa.config.schemas import (
    DataConfig,
    EvalConfig,
    LabConfig,
    LabPairsConfig,
    LabReferenceConfig,
    LabWorldConfig,
    LoraConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    PairsConfig,
    TrainConfig,
)

__all__ = [
    "DataConfig", "EvalConfig", "LabConfig", "LabPairsConfig", "LabReferenceConfig", "LabWorldConfig", "LoraConfig",
    "ModelConfig", "ObjectiveConfig", "OptimConfig", "OptionHelp", "PairsConfig", "TrainConfig",
    "config_yaml", "load_config", "option_help", "read_yaml", "save_config", "to_dict",
]
