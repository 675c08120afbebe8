"""One encoder per modality, each turning its input into one token of width ``dim``."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.nn import GCNConv


class ImageEncoder(nn.Module):
    """A small ConvNet over a camera frame.

    Shapes:
        input: ``(B, 3, H, W)`` floats in [0, 1].
        output: ``(B, dim)``.
    """

    def __init__(self, dim: int, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * channels, 2 * channels, 3, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * channels, dim),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Encode frames."""
        return self.net(image)


class TextEncoder(nn.Module):
    """Projects pooled report embeddings from the frozen sentence encoder.

    Shapes:
        input: ``(B, text_dim)``.
        output: ``(B, dim)``.
    """

    def __init__(self, text_dim: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """Encode pooled report embeddings."""
        return self.net(text)


class TimeEncoding(nn.Module):
    """Sinusoidal features of real time offsets in hours (any sampling rate).

    Shapes:
        input: ``(B, L)`` hours relative to the window start.
        output: ``(B, L, dim)``.
    """

    def __init__(self, dim: int, max_period_hours: float = 24 * 14) -> None:
        super().__init__()
        half = dim // 2
        periods = torch.exp(torch.linspace(0, math.log(max_period_hours), half))
        self.register_buffer("frequencies", 2 * math.pi / periods, persistent=False)
        self.proj = nn.Linear(2 * half, dim)

    def forward(self, hours: torch.Tensor) -> torch.Tensor:
        """Encode time offsets."""
        angles = hours.unsqueeze(-1) * self.frequencies
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=-1))


class SensorEncoder(nn.Module):
    """A temporal transformer over sensor readings at their real time stamps.

    Each step embeds the values and which of them were observed; steps with no
    observed channel are masked out of attention and of the pooling.

    Shapes:
        series, series_mask: ``(B, L, C)``; series_time: ``(B, L)``.
        output: ``(B, dim)`` and a presence mask ``(B,)``.
    """

    def __init__(self, n_channels: int, dim: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.value_proj = nn.Linear(2 * n_channels, dim)
        self.time = TimeEncoding(dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, series: torch.Tensor, series_time: torch.Tensor, series_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of series; also say which samples had any reading."""
        observed = series_mask.any(dim=-1)
        present = observed.any(dim=-1)
        steps = self.value_proj(torch.cat([series * series_mask, series_mask.float()], dim=-1))
        steps = steps + self.time(series_time)
        padding = ~observed
        padding = padding & present.unsqueeze(-1)  # keep all-empty rows finite
        hidden = self.transformer(steps, src_key_padding_mask=padding)
        weights = (~padding).float().unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.norm(pooled), present


class GraphEncoder(nn.Module):
    """A GCN over the public district graph and static attributes.

    Shapes:
        x: ``(N, n_static)``; edge_index: ``(2, E)``; edge_weight: ``(E,)``.
        output: ``(N, dim)``, one embedding per district.
    """

    def __init__(self, n_static: int, dim: int, layers: int) -> None:
        super().__init__()
        self.inp = nn.Linear(n_static, dim)
        self.convs = nn.ModuleList(GCNConv(dim, dim) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embed every district with its neighbourhood."""
        hidden = self.inp(x)
        for conv in self.convs:
            hidden = hidden + torch.nn.functional.gelu(conv(hidden, edge_index, edge_weight))
        return self.norm(hidden)
