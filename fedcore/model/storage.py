"""Saving and loading a model with its config: ``config.json`` + ``model.safetensors``."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file

from fedcore.model.config import ModelConfig
from fedcore.model.risknet import RiskNet, build_model


def save_model(model: RiskNet, folder: str | Path) -> Path:
    """Write the model's config and weights into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(model.config.to_json())
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, folder / "model.safetensors")
    return folder


def load_model(folder: str | Path) -> RiskNet:
    """Rebuild a model saved by `save_model`, in eval mode."""
    folder = Path(folder)
    config = ModelConfig.from_json((folder / "config.json").read_text())
    model = build_model(config)
    model.load_state_dict(load_file(folder / "model.safetensors"))
    return model.eval()
