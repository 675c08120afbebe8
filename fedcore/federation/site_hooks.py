"""A site's side of FedProx, SCAFFOLD and gradient weighting.

The one training loop (`fedcore.training.train_epochs`) takes a ``penalty``
added to each step's loss and an ``after_backward`` that may edit gradients;
these build both. `adamw_gradient_scales` reads what a site reports for
``gradient-weighting`` (`fedcore.federation.aggregation.weighted_mean`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def proximal_penalty(
    model: torch.nn.Module, mu: float
) -> Callable[[torch.nn.Module], torch.Tensor]:
    """FedProx's ``mu / 2 * ||w - w_global||^2``, anchored at the model's current weights."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    anchors = [parameter.detach().clone() for parameter in trainable]

    def penalty(_: torch.nn.Module) -> torch.Tensor:
        squared = sum(((p - a) ** 2).sum() for p, a in zip(trainable, anchors, strict=True))
        return 0.5 * mu * squared

    return penalty


class ScaffoldCorrection:
    """SCAFFOLD's gradient correction ``g + c - c_i`` and the site's next control.

    Called after each backward pass; it sums the raw gradients first, so that
    `next_site_control` is the mean raw gradient along the local trajectory (the
    paper's option II, which for SGD equals ``c_i - c + (x - y) / (K lr)``, and
    which stays on the gradient's scale under AdamW).

    Args:
        model: The model being trained.
        server_control: ``c``, by parameter name.
        site_control: ``c_i``, by parameter name.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        server_control: dict[str, torch.Tensor],
        site_control: dict[str, torch.Tensor],
    ) -> None:
        self.parameters = {
            name: parameter
            for name, parameter in model.named_parameters()
            if parameter.requires_grad
        }
        missing = set(self.parameters) - set(server_control)
        if missing:
            raise ValueError(f"the server control lacks parameters {sorted(missing)[:3]}")
        self.correction = {
            name: server_control[name] - site_control[name] for name in self.parameters
        }
        self.site_control = site_control
        self.gradient_sum = {name: torch.zeros_like(p) for name, p in self.parameters.items()}
        self.steps = 0

    def __call__(self, _: torch.nn.Module) -> None:
        """Add the correction to every gradient (after noting the raw gradient)."""
        for name, parameter in self.parameters.items():
            if parameter.grad is None:
                continue
            self.gradient_sum[name] += parameter.grad
            parameter.grad += self.correction[name]
        self.steps += 1

    def next_site_control(self) -> dict[str, torch.Tensor]:
        """``c_i+``; the old control when the site took no step."""
        if self.steps == 0:
            return {name: self.site_control[name].clone() for name in self.parameters}
        return {name: total / self.steps for name, total in self.gradient_sum.items()}


def adamw_gradient_scales(
    optimiser: torch.optim.Optimizer, named: list[tuple[str, torch.Tensor]]
) -> dict[str, np.ndarray]:
    """Root mean square of the gradients an AdamW stepped on, per weight (its second moment).

    The bias-corrected ``exp_avg_sq`` is a mean of the squared gradients over the
    site's steps; a parameter it never stepped has scale 0.
    """
    beta2 = optimiser.param_groups[0]["betas"][1]
    out = {}
    for name, parameter in named:
        state = optimiser.state.get(parameter, {})
        if "exp_avg_sq" not in state:
            out[name] = np.zeros(tuple(parameter.shape), dtype=np.float32)
            continue
        steps = float(state["step"])
        second = state["exp_avg_sq"] / (1 - beta2**steps)
        out[name] = second.sqrt().detach().numpy().astype(np.float32)
    return out
