"""RiskNet: fuses image, text, sensor and graph tokens into per-domain risk."""

from __future__ import annotations

import torch
from torch import nn

from fedcore.model.config import ModelConfig
from fedcore.model.encoders import (
    GraphEncoder,
    ImageEncoder,
    SensorEncoder,
    TextEncoder,
    VitImageEncoder,
)

MODALITIES = ("image", "text", "sensor", "graph")


class RiskNet(nn.Module):
    """The multimodal risk model.

    Each modality becomes one token; a modality that is missing for a sample (no
    camera, no report, a sensor outage) is replaced by a learned missing token,
    and in training present modalities are dropped at random so the model learns
    to predict without any one of them. A fifth token, always present, says
    where the window falls in the local day and week. A transformer mixes the
    tokens and one head per domain gives the event logit and the log of the
    expected count.

    Shapes:
        batch: a dict from `datasets.RiskSamples.batch` with batch size ``B``.
        graph: ``x (N, n_static)``, ``edge_index (2, E)``, ``edge_weight (E,)``.
        output: ``logits (B, D)`` and ``log_rate (B, D)`` for ``D`` domains.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        layers = (config.heads, config.ff_mult, config.dropout)
        if config.image_encoder == "vit":
            self.image = VitImageEncoder(
                dim,
                config.image_size,
                config.patch_size,
                config.image_layers,
                config.heads,
                config.ff_mult,
            )
        else:
            self.image = ImageEncoder(dim, config.image_channels)
        self.text = TextEncoder(config.text_dim, dim, config.text_layers, *layers)
        self.sensor = SensorEncoder(config.n_channels, dim, config.sensor_layers, *layers)
        self.graph = GraphEncoder(config.n_static, dim, config.graph_layers)
        # What the neighbours reported joins the graph token: spill-over is dynamic.
        self.neighbours = (
            nn.Sequential(nn.Linear(config.neighbour_dim, dim), nn.GELU(), nn.Linear(dim, dim))
            if config.graph_layers > 0
            else None
        )
        self.missing = nn.Parameter(torch.randn(len(MODALITIES), dim) * 0.02)
        self.modality_embedding = nn.Parameter(torch.randn(len(MODALITIES), dim) * 0.02)
        self.clock = nn.Sequential(nn.Linear(4, dim), nn.GELU(), nn.Linear(dim, dim))
        layer = nn.TransformerEncoderLayer(
            dim,
            config.heads,
            config.ff_mult * dim,
            config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.fusion = nn.TransformerEncoder(layer, config.fusion_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        # Heads read every fused token side by side (not their mean), so a domain can
        # weigh one modality's token against another's: flood = rain x low ground.
        n_tokens = len(MODALITIES) + 1
        self.readout = nn.Sequential(nn.Linear(n_tokens * dim, dim), nn.GELU())
        self.heads = nn.Linear(dim, 2 * len(config.domains))  # rows 2d, 2d+1: domain d
        unknown = set(config.modalities) - set(MODALITIES)
        if unknown or not config.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}")
        allowed = torch.tensor([name in config.modalities for name in MODALITIES])
        self.register_buffer("allowed", allowed, persistent=False)

    def encode_graph(self, graph) -> torch.Tensor:
        """One embedding per district ``(N, dim)``; the same for every sample of a pass."""
        return self.graph(graph.x, graph.edge_index, getattr(graph, "edge_weight", None))

    def tokens(
        self, batch: dict, graph, nodes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Modality tokens ``(B, 4, dim)`` and presence ``(B, 4)``, before fusion.

        ``nodes`` (from `encode_graph`) saves re-encoding the graph for every batch.
        """
        sensor, sensor_present = self.sensor(
            batch["series"], batch["series_time"], batch["series_mask"]
        )
        text, text_present = self.text(batch["text"], batch["text_time"], batch["text_mask"])
        nodes = self.encode_graph(graph) if nodes is None else nodes
        place = nodes[batch["district"]]
        if self.neighbours is not None:
            place = place + self.neighbours(batch["neighbours"])
        tokens = torch.stack(
            [
                self.image(batch["image"]),
                text,
                sensor,
                place,
            ],
            dim=1,
        )
        present = torch.stack(
            [
                batch["image_mask"],
                text_present,
                sensor_present,
                torch.ones_like(batch["image_mask"]),
            ],
            dim=1,
        )
        return tokens, present

    def forward(
        self, batch: dict, graph, drop: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Predict per-domain risk.

        Args:
            batch: Input dict (see class docstring).
            graph: The public district graph with node features ``x``.
            drop: Optional bool ``(B, 4)`` or ``(4,)``: modalities to treat as
                missing, e.g. to measure each modality's contribution.
        """
        tokens, present = self.tokens(batch, graph)
        return self.fuse(tokens, present, batch["clock"], drop)

    def fuse(
        self,
        tokens: torch.Tensor,
        present: torch.Tensor,
        clock: torch.Tensor,
        drop: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Mix modality tokens (from `tokens`) and the clock into per-domain outputs.

        Split from `forward` so that scoring each modality's contribution encodes
        a batch once and fuses it once per hidden modality.
        """
        present = present & self.allowed.to(present.device)
        if self.training and self.config.modality_dropout > 0:
            keep = torch.rand(present.shape, device=present.device) >= self.config.modality_dropout
            present = present & keep
        if drop is not None:
            present = present & ~drop.to(present.device).expand_as(present)
        tokens = torch.where(present.unsqueeze(-1), tokens, self.missing.expand_as(tokens))
        context = self.clock(clock).unsqueeze(1)  # always known: the window's local time
        fused = self.fusion(torch.cat([tokens + self.modality_embedding, context], dim=1))
        pooled = self.readout(self.norm(fused).flatten(1))
        out = self.heads(pooled).view(-1, len(self.config.domains), 2)
        return {"logits": out[..., 0], "log_rate": out[..., 1]}


def build_model(config: ModelConfig) -> RiskNet:
    """Build a RiskNet from its config."""
    return RiskNet(config)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(parameter.numel() for parameter in model.parameters())
