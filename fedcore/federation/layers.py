"""Which of RiskNet's weights are normalisation layers, per-domain heads, modality encoders.

FedBN keeps normalisation layers at each site, personalised heads keep the heads;
partial-label aggregation needs to know which rows of the heads belong to which
domain, and modality weighting which weights encode a modality a site may lack.
Names are state-dict keys, the same keys the server sees in an ArrayRecord.
"""

from __future__ import annotations

import numpy as np
from torch import nn

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase)
HEAD_MODULE = "heads"
# Modalities a whole site can lack (no cameras, no reports), by RiskNet module;
# a site always has some sensor channels and the public graph.
MODALITY_ENCODERS = ("image", "text")


def norm_keys(model: nn.Module) -> list[str]:
    """State-dict keys of every normalisation layer's weights and statistics."""
    keys = []
    for prefix, module in model.named_modules():
        if isinstance(module, NORM_TYPES):
            keys += [f"{prefix}.{name}" for name in module.state_dict()]
    return keys


def head_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the output heads (`RiskNet.heads`).

    Raises:
        ValueError: The model has no ``heads`` module.
    """
    heads = getattr(model, HEAD_MODULE, None)
    if not isinstance(heads, nn.Module):
        raise ValueError(f"{type(model).__name__} has no '{HEAD_MODULE}' module")
    return [f"{HEAD_MODULE}.{name}" for name in heads.state_dict()]


def encoder_keys(model: nn.Module) -> dict[str, list[str]]:
    """State-dict keys of each encoder of `MODALITY_ENCODERS`, by modality."""
    keys = model.state_dict()
    return {name: [key for key in keys if key.startswith(f"{name}.")] for name in MODALITY_ENCODERS}


def local_keys(model: nn.Module, kinds: tuple[str, ...]) -> list[str]:
    """Keys a site keeps to itself for the given kinds (``norm``, ``head``)."""
    keys: list[str] = []
    if "norm" in kinds:
        keys += norm_keys(model)
    if "head" in kinds:
        keys += head_keys(model)
    return sorted(set(keys))


def head_row_domains(n_rows: int, n_domains: int) -> np.ndarray:
    """Domain index of each output row of the heads.

    RiskNet's heads emit ``(logit, log_rate)`` per domain, read as
    ``view(-1, n_domains, 2)``: rows ``2d`` and ``2d + 1`` belong to domain ``d``.

    Raises:
        ValueError: ``n_rows`` is not a multiple of ``n_domains``.
    """
    if n_domains < 1 or n_rows % n_domains:
        raise ValueError(f"{n_rows} head rows do not split over {n_domains} domains")
    return np.arange(n_rows) // (n_rows // n_domains)
