"""One encoder per modality, each turning its input into one token of width ``dim``."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.nn import GCNConv

from datasets.samples import series_summary
from fedcore.model.generated_sources import remove_generated_sources


class FrameStandardiser(nn.Module):
    """Frames in [0, 1] shifted and scaled by the ImageNet channel statistics.

    The convention of transformers' image processors. Without it the encoders
    saw dark frames (mean near 0.2) unscaled, and a ConvNet took six epochs to
    pick up a festival's lanterns that it finds in one when standardised.
    """

    def __init__(self) -> None:
        super().__init__()
        from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        shape = (1, 3, 1, 1)
        mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN), torch.tensor(IMAGENET_DEFAULT_STD)
        self.register_buffer("mean", mean.view(shape), persistent=False)
        self.register_buffer("std", std.view(shape), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Standardise frames."""
        return (image - self.mean) / self.std


class ImageEncoder(nn.Module):
    """A small ConvNet over a camera frame.

    Shapes:
        input: ``(B, 3, H, W)`` floats in [0, 1].
        output: ``(B, dim)``.
    """

    def __init__(self, dim: int, channels: int) -> None:
        super().__init__()
        self.standardise = FrameStandardiser()
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
        return self.net(self.standardise(image))


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


class TimedSetEncoder(nn.Module):
    """A transformer over time-stamped tokens with a mask, pooled to one token.

    The shared core of the sensor and text encoders: each token is a projected
    input plus an encoding of its real time offset, so irregular sampling and
    any number of tokens work.

    Shapes:
        tokens: ``(B, L, dim)``; hours: ``(B, L)``; observed: bool ``(B, L)``.
        output: ``(B, dim)`` and a presence mask ``(B,)`` (any token observed).
    """

    def __init__(self, dim: int, layers: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.time = TimeEncoding(dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, ff_mult * dim, dropout, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, tokens: torch.Tensor, hours: torch.Tensor, observed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and pool the observed tokens."""
        present = observed.any(dim=-1)
        padding = ~observed & present.unsqueeze(-1)  # all-empty rows stay finite
        hidden = self.transformer(tokens + self.time(hours), src_key_padding_mask=padding)
        weights = (~padding).float().unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.norm(pooled), present


class SensorEncoder(nn.Module):
    """A temporal transformer over sensor readings at their real time stamps.

    Each step embeds the values and which of them were observed; steps with no
    observed channel are masked out of attention and of the pooling. Beside the
    transformer, a small MLP reads `series_summary` (levels, extremes, the latest
    reading): the statistics an analyst would compute, which a transformer trained
    on few windows learns only slowly, added to its pooled token.

    Shapes:
        series, series_mask: ``(B, L, C)``; series_time: ``(B, L)``.
        output: ``(B, dim)`` and a presence mask ``(B,)``.
    """

    def __init__(
        self, n_channels: int, dim: int, layers: int, heads: int, ff_mult: int, dropout: float
    ) -> None:
        super().__init__()
        self.value_proj = nn.Linear(2 * n_channels, dim)
        self.encoder = TimedSetEncoder(dim, layers, heads, ff_mult, dropout)
        self.summary = nn.Sequential(nn.Linear(6 * n_channels, dim), nn.GELU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, series: torch.Tensor, series_time: torch.Tensor, series_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of series; also say which samples had any reading."""
        steps = self.value_proj(torch.cat([series * series_mask, series_mask.float()], dim=-1))
        pooled, present = self.encoder(steps, series_time, series_mask.any(dim=-1))
        summary = self.summary(series_summary(series, series_time, series_mask))
        return self.norm(pooled + summary), present


class TextEncoder(nn.Module):
    """A transformer over a sample's latest reports, each one token with its age.

    Reports arrive as embeddings from the frozen sentence encoder; attention can
    single out the one that matters (an announcement among routine notes) and
    its age, which mean pooling would blur.

    Shapes:
        text: ``(B, K, text_dim)``; text_time: ``(B, K)`` hours; text_mask: ``(B, K)``.
        output: ``(B, dim)`` and a presence mask ``(B,)``.
    """

    def __init__(
        self, text_dim: int, dim: int, layers: int, heads: int, ff_mult: int, dropout: float
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(text_dim, dim)
        self.encoder = TimedSetEncoder(dim, layers, heads, ff_mult, dropout)

    def forward(
        self, text: torch.Tensor, text_time: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the reports of each sample."""
        return self.encoder(self.proj(text), text_time, text_mask)


class VitImageEncoder(nn.Module):
    """A Vision Transformer (transformers' ``ViTModel``, random init) over a frame.

    Frames are resized to ``image_size``; the CLS token is the image token.

    Shapes:
        input: ``(B, 3, H, W)`` floats in [0, 1].
        output: ``(B, dim)``.
    """

    def __init__(
        self, dim: int, image_size: int, patch_size: int, layers: int, heads: int, ff_mult: int
    ) -> None:
        super().__init__()
        from transformers import ViTConfig, ViTModel

        config = ViTConfig(
            hidden_size=dim,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=ff_mult * dim,
            image_size=image_size,
            patch_size=patch_size,
        )
        self.image_size = image_size
        self.standardise = FrameStandardiser()
        self.vit = ViTModel(config, add_pooling_layer=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Encode frames."""
        if image.shape[-1] != self.image_size:
            image = nn.functional.interpolate(
                image, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        return self.vit(pixel_values=self.standardise(image)).last_hidden_state[:, 0]


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
        remove_generated_sources()  # GCNConv's first build leaves its source in /tmp
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embed every district with its neighbourhood."""
        hidden = self.inp(x)
        for conv in self.convs:
            hidden = hidden + torch.nn.functional.gelu(conv(hidden, edge_index, edge_weight))
        return self.norm(hidden)
