"""Hyperparameters of RiskNet, with named presets from test size upwards."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

PRESETS: dict[str, dict] = {
    # Unit tests: a forward pass in milliseconds.
    "tiny": {"dim": 32, "image_channels": 8, "sensor_layers": 1, "fusion_layers": 1, "heads": 2},
    # CPU demo: a federated round on the default city in seconds.
    "small": {"dim": 64, "image_channels": 16, "sensor_layers": 2, "fusion_layers": 2, "heads": 4},
}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a RiskNet, saved beside its weights.

    Attributes:
        domains: Domain names, one output head each, in order.
        n_channels: Sensor channels per time step.
        n_static: Public static attributes per district (graph node features).
        text_dim: Size of a report embedding from the frozen text encoder.
        frame_size: Side of the square camera frames in pixels.
        dim: Width of every modality token and of the fusion.
        image_channels: Channels of the first convolution of the image encoder.
        sensor_layers: Transformer layers over the sensor time steps.
        fusion_layers: Transformer layers over the modality tokens.
        heads: Attention heads in the transformers.
        graph_layers: Message-passing layers over the district graph.
        dropout: Dropout inside the transformers and heads.
        modality_dropout: Chance, in training, that a present modality is
            replaced by its missing token, so the model learns to do without it.
        preset: Name of the preset the config came from.
    """

    domains: list[str] = field(default_factory=lambda: ["traffic", "safety"])
    n_channels: int = 6
    n_static: int = 10
    text_dim: int = 384
    frame_size: int = 16
    dim: int = 64
    image_channels: int = 16
    sensor_layers: int = 2
    fusion_layers: int = 2
    heads: int = 4
    graph_layers: int = 2
    dropout: float = 0.1
    modality_dropout: float = 0.15
    preset: str = "custom"

    @classmethod
    def preset_config(cls, name: str, **overrides) -> ModelConfig:
        """The named preset, with data-dependent sizes given as overrides."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], "preset": name, **overrides})

    def with_updates(self, **changes) -> ModelConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_json(self) -> str:
        """The config as a JSON string."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Rebuild a config written by `to_json`."""
        return cls(**json.loads(text))
