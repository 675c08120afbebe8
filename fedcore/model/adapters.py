"""Per-encoder training modes: train fully, freeze, or adapt with LoRA (peft).

Edge sites with little memory or data train only part of RiskNet: a frozen
encoder keeps the federation's weights, a LoRA-wrapped one learns a low-rank
update of its linear layers. Each encoder is set on its own.
"""

from __future__ import annotations

from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from fedcore.model.risknet import RiskNet

ENCODERS = ("image", "text", "sensor", "graph")


def _encoder(model: RiskNet, name: str) -> nn.Module:
    if name not in ENCODERS:
        raise KeyError(f"unknown encoder {name!r}; encoders: {', '.join(ENCODERS)}")
    return getattr(model, name)


def freeze_encoder(model: RiskNet, name: str) -> None:
    """Stop gradients into one encoder's weights."""
    for parameter in _encoder(model, name).parameters():
        parameter.requires_grad_(False)


def add_lora(model: RiskNet, name: str, rank: int = 8, alpha: int = 16) -> list[str]:
    """Freeze one encoder and add LoRA adapters to its linear layers.

    Returns:
        Names of the wrapped linear layers, relative to the encoder.
    """
    encoder = _encoder(model, name)
    targets = sorted(
        {child for child, module in encoder.named_modules() if isinstance(module, nn.Linear)} - {""}
    )
    # nn.MultiheadAttention reads out_proj.weight directly, so LoRA there would be bypassed.
    targets = [target for target in targets if not target.endswith("out_proj")]
    if not targets:
        raise ValueError(f"encoder {name!r} has no linear layer to adapt")
    freeze_encoder(model, name)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0)
    inject_adapter_in_model(config, encoder)
    return targets


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
