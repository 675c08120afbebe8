"""Hyperparameters of RiskNet, with named presets from test size upwards."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from datasets.samples import neighbour_width

PRESETS: dict[str, dict] = {
    # Unit tests: a forward pass in milliseconds.
    "tiny": {"dim": 32, "image_channels": 8, "sensor_layers": 1, "fusion_layers": 1, "heads": 2},
    # CPU demo: a federated round on the default city in seconds.
    "small": {"dim": 64, "image_channels": 16, "sensor_layers": 2, "fusion_layers": 2, "heads": 4},
    # ~150M parameters: a ViT-B image encoder and BERT-base-wide temporal transformers.
    "base": {
        "dim": 768,
        "image_encoder": "vit",
        "image_size": 64,
        "patch_size": 8,
        "image_layers": 12,
        "sensor_layers": 3,
        "text_layers": 3,
        "fusion_layers": 2,
        "graph_layers": 3,
        "heads": 12,
        "ff_mult": 4,
    },
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
        image_encoder: ``"convnet"`` (small presets) or ``"vit"`` (a ViT built
            from a transformers config, random init).
        image_channels: Channels of the first convolution of the ConvNet.
        image_size: Side frames are resized to for the ViT.
        patch_size: ViT patch side.
        image_layers: ViT layers.
        sensor_layers: Transformer layers over the sensor time steps.
        text_layers: Transformer layers over a sample's report tokens.
        fusion_layers: Transformer layers over the modality tokens.
        heads: Attention heads in the transformers.
        ff_mult: Feed-forward width of the transformers, as a multiple of ``dim``.
        graph_layers: Message-passing layers over the district graph.
        dropout: Dropout inside the transformers and heads.
        modality_dropout: Chance, in training, that a present modality is
            replaced by its missing token, so the model learns to do without it.
        modalities: The modalities the model may use; the others always get
            their missing token (single-modality baselines). ``graph`` is the
            district's static attributes, passed through ``graph_layers`` of
            message passing, and its neighbours' context (0 layers = no
            neighbours at all: the "without graph" baseline).
        preset: Name of the preset the config came from.
    """

    domains: list[str] = field(default_factory=lambda: ["traffic", "safety"])
    n_channels: int = 6
    n_static: int = 10
    text_dim: int = 384
    frame_size: int = 16
    dim: int = 64
    image_encoder: str = "convnet"
    image_channels: int = 16
    image_size: int = 64
    patch_size: int = 8
    image_layers: int = 12
    sensor_layers: int = 2
    text_layers: int = 1
    fusion_layers: int = 2
    heads: int = 4
    ff_mult: int = 2
    graph_layers: int = 2
    dropout: float = 0.1
    modality_dropout: float = 0.15
    modalities: list[str] = field(default_factory=lambda: ["image", "text", "sensor", "graph"])
    preset: str = "custom"

    @classmethod
    def preset_config(cls, name: str, **overrides) -> ModelConfig:
        """The named preset, with data-dependent sizes given as overrides."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], "preset": name, **overrides})

    @property
    def neighbour_dim(self) -> int:
        """Size of a sample's neighbour context, as the data layer cuts it."""
        return neighbour_width(self.text_dim, self.n_channels)

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
