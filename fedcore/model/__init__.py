"""RiskNet: config and presets, encoders, fusion, saving and loading."""

from fedcore.model.config import PRESETS, ModelConfig
from fedcore.model.risknet import MODALITIES, RiskNet, build_model, count_parameters
from fedcore.model.storage import load_model, save_model

__all__ = [
    "MODALITIES",
    "PRESETS",
    "ModelConfig",
    "RiskNet",
    "build_model",
    "count_parameters",
    "load_model",
    "save_model",
]
