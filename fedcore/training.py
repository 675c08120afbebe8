"""Training, evaluation and prediction loops shared by sites and the central trainer."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch.nn import functional

from fedcore.metrics import risk_metrics
from fedcore.model import MODALITIES, RiskNet
from fedcore.site_data import SiteData

COUNT_LOSS_WEIGHT = 0.1


def risk_loss(output: dict[str, torch.Tensor], batch: dict) -> torch.Tensor:
    """Event BCE plus a Poisson count loss, masked where labels are absent."""
    counts, mask = batch["targets"], batch["target_mask"].float()
    labels = (counts > 0).float()
    bce = functional.binary_cross_entropy_with_logits(output["logits"], labels, reduction="none")
    poisson = functional.poisson_nll_loss(output["log_rate"], counts, reduction="none")
    per_entry = (bce + COUNT_LOSS_WEIGHT * poisson) * mask
    return per_entry.sum() / mask.sum().clamp(min=1.0)


def make_optimiser(
    model: RiskNet, lr: float, kind: str = "adamw", momentum: float = 0.0
) -> torch.optim.Optimizer:
    """An optimiser over the parameters that train (frozen encoders are left out).

    ``adamw`` (the central trainer's, and a site's by default) or ``sgd`` (with
    ``momentum``): a federated site starts a fresh optimiser every round, and a
    fresh AdamW moves every weight by about ``lr`` a step whatever its gradient,
    while SGD moves each in proportion to it, as FedAvg's and SCAFFOLD's
    analyses assume (Reddi et al. 2021 pair SGD sites with an adaptive server).
    """
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if kind == "adamw":
        return torch.optim.AdamW(trainable, lr=lr, weight_decay=1e-4)
    if kind == "sgd":
        return torch.optim.SGD(trainable, lr=lr, momentum=momentum, weight_decay=1e-4)
    raise ValueError(f"optimiser must be adamw or sgd; got {kind!r}")


def train_epochs(
    model: RiskNet,
    data: SiteData,
    indices: np.ndarray,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    optimiser: torch.optim.Optimizer | None = None,
    penalty: Callable[[RiskNet], torch.Tensor] | None = None,
    after_backward: Callable[[RiskNet], None] | None = None,
    after_step: Callable[[RiskNet], None] | None = None,
    sharpness: float = 0.0,
) -> dict[str, float]:
    """Train in place; returns the mean loss and the number of examples.

    A federated site starts a fresh AdamW each round; the central trainer passes
    its own ``optimiser`` so the moments carry over between epochs. Federated
    strategies hook in without a loop of their own: ``penalty`` is added to each
    step's loss (e.g. FedProx's proximal term) and ``after_backward`` may edit the
    gradients before the step (e.g. SCAFFOLD's control-variate correction);
    ``after_step`` sees the weights after each step (e.g. to average them).
    ``sharpness`` > 0 steps with the gradients at the worst weights that far
    away (`sharpness_aware_gradients`), at twice the cost of a step. The
    reported loss is the risk loss alone, at the weights themselves.
    """
    torch.manual_seed(seed)
    model.train()
    if optimiser is None:
        optimiser = make_optimiser(model, lr)
    total, seen = 0.0, 0
    for epoch in range(epochs):
        for batch in data.samples.batches(batch_size, indices, seed=seed + epoch):
            optimiser.zero_grad()
            loss, minimised = _losses(model, data, batch, penalty)
            minimised.backward()
            if sharpness > 0:
                again = partial(_minimised, model, data, batch, penalty)
                sharpness_aware_gradients(model, again, sharpness)
            if after_backward:
                after_backward(model)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            if after_step:
                after_step(model)
            total += loss.item() * len(batch["district"])
            seen += len(batch["district"])
    return {"loss": total / max(seen, 1), "num-examples": float(len(indices))}


def _losses(
    model: RiskNet, data: SiteData, batch: dict, penalty: Callable[[RiskNet], torch.Tensor] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's risk loss, and what a step minimises (the loss plus any penalty)."""
    loss = risk_loss(model(batch, data.graph), batch)
    return loss, (loss + penalty(model) if penalty else loss)


def _minimised(
    model: RiskNet, data: SiteData, batch: dict, penalty: Callable[[RiskNet], torch.Tensor] | None
) -> torch.Tensor:
    return _losses(model, data, batch, penalty)[1]


def sharpness_aware_gradients(
    model: RiskNet, objective: Callable[[], torch.Tensor], radius: float
) -> None:
    """Replace the gradients with those at the worst weights within ``radius`` (SAM).

    Sharpness-aware minimisation (Foret et al., 2021) moves the weights up
    their gradient by ``radius`` (in the norm over all weights), takes the
    gradient of ``objective`` there, and moves them back, so the step favours
    flat minima. FedSAM (Caldarola et al., 2022) does this at the sites, whose
    averaged models would otherwise generalise worse than centralised
    training's. The gradients must hold those of ``objective`` at the current
    weights; without any, nothing changes.
    """
    parameters = [p for p in model.parameters() if p.grad is not None]
    if not parameters:
        return
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters]))
    if not torch.isfinite(norm) or norm == 0:
        return
    with torch.no_grad():
        originals = [p.detach().clone() for p in parameters]
        for parameter in parameters:
            parameter.add_(parameter.grad, alpha=float(radius / norm))
    model.zero_grad()
    objective().backward()
    with torch.no_grad():
        for parameter, original in zip(parameters, originals, strict=True):
            parameter.copy_(original)


@torch.no_grad()
def predict(
    model: RiskNet,
    data: SiteData,
    indices: np.ndarray,
    batch_size: int = 1024,
    contributions: bool = False,
    drop: torch.Tensor | None = None,
    with_loss: bool = False,
) -> dict[str, np.ndarray]:
    """Probabilities and expected counts ``(n, D)``; optionally per-modality contributions.

    A modality's contribution is how much the probability drops when that
    modality is replaced by its missing token: positive means it raised the risk.
    ``drop`` (bool per modality) hides modalities from every prediction.
    ``with_loss`` adds ``loss``: the risk loss of each batch times its size, so
    evaluation scores and takes the loss in one pass.
    """
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"probability": [], "expected_count": []}
    for name in MODALITIES if contributions else ():
        parts[f"contribution_{name}"] = []
    if with_loss:
        parts["loss"] = []
    nodes = model.encode_graph(data.graph)
    for batch in data.samples.batches(batch_size, indices):
        tokens, present = model.tokens(batch, data.graph, nodes)
        output = model.fuse(tokens, present, batch["clock"], drop)
        probability = torch.sigmoid(output["logits"])
        parts["probability"].append(probability.numpy())
        parts["expected_count"].append(torch.exp(output["log_rate"]).numpy())
        if with_loss:
            parts["loss"].append(np.array([float(risk_loss(output, batch)) * len(probability)]))
        for position, name in enumerate(MODALITIES if contributions else ()):
            hide = torch.zeros(len(MODALITIES), dtype=torch.bool)
            hide[position] = True
            if drop is not None:
                hide = hide | drop
            without = torch.sigmoid(model.fuse(tokens, present, batch["clock"], hide)["logits"])
            parts[f"contribution_{name}"].append((probability - without).numpy())
    n_domains = len(model.config.domains)
    return {
        key: np.concatenate(value) if value else np.zeros((0, n_domains))
        for key, value in parts.items()
    }


def evaluate(
    model: RiskNet,
    data: SiteData,
    indices: np.ndarray,
    batch_size: int = 512,
    drop: torch.Tensor | None = None,
) -> dict[str, float]:
    """Loss, ranking metrics and count MAE of the model on ``indices`` (one pass)."""
    predicted = predict(model, data, indices, batch_size, drop=drop, with_loss=True)
    counts = data.samples.targets[indices]
    metrics = risk_metrics(counts, predicted["probability"], model.config.domains)
    metrics["count-mae"] = float(np.abs(predicted["expected_count"] - counts).mean())
    loss = float(predicted["loss"].sum()) / max(len(indices), 1)
    return {"loss": loss, "num-examples": float(len(indices)), **metrics}
