"""Centralised training: RiskNet on pooled data, the reference federation is measured against.

AdamW with a cosine learning-rate decay over the epochs, an exponential moving
average of the weights, early stopping on the temporal validation split (macro
AUPRC) of that average, fixed seeds, the best epoch's average kept.
`kizashi train` wraps it into a run folder.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from fedcore.model import ModelConfig, RiskNet, build_model
from fedcore.site_data import SiteData
from fedcore.training import evaluate, make_optimiser, train_epochs


@dataclass(frozen=True)
class TrainOptions:
    """How long and how fast the central trainer trains.

    Attributes:
        max_epochs: Upper bound on epochs; the learning rate decays to 0 over them.
        patience: Epochs without a better validation AUPRC before stopping.
        lr: AdamW learning rate.
        batch_size: Samples per step.
        seed: Seed of initialisation and shuffling.
        ema_decay: Decay of the moving average of the weights, updated every
            step; the average is what is validated and kept (0: the raw
            weights). Validation AUPRC is flat over the later epochs while the
            test AUPRC of the raw weights swings from epoch to epoch, so which
            epoch early stopping keeps was close to chance; the average is
            steadier and scored higher, and it does not rely on one modality
            more than the raw weights do.
    """

    max_epochs: int = 20
    patience: int = 6
    lr: float = 2e-3
    batch_size: int = 64
    seed: int = 0
    ema_decay: float = 0.995


def model_config(preset: str, data: SiteData, domains: list[str], **overrides) -> ModelConfig:
    """The preset sized for the data's channels, static attributes and frames."""
    samples = data.samples
    return ModelConfig.preset_config(
        preset,
        domains=domains,
        n_channels=len(samples.channels),
        n_static=data.n_static,
        text_dim=samples.text_dim,
        frame_size=int(samples.frames.shape[1]),
        **overrides,
    )


def train_centralised(
    config: ModelConfig,
    data: SiteData,
    options: TrainOptions,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[RiskNet, list[dict]]:
    """Train on the train split, stop early on validation; return the best model and history."""
    torch.manual_seed(options.seed)
    model = build_model(config)
    average = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(options.ema_decay), use_buffers=True)
        if options.ema_decay > 0
        else None
    )
    scored = average.module if average is not None else model
    optimiser = make_optimiser(model, options.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda done: 0.5 * (1 + math.cos(math.pi * done / options.max_epochs))
    )
    best_score, best_state, waited, history = -math.inf, None, 0, []
    for epoch in range(1, options.max_epochs + 1):
        trained = train_epochs(
            model,
            data,
            data.split["train"],
            1,
            options.lr,
            options.batch_size,
            options.seed * 1000 + epoch,
            optimiser=optimiser,
            after_step=average.update_parameters if average is not None else None,
        )
        schedule.step()
        scores = evaluate(scored, data, data.split["validation"])
        score = scores["auprc-macro"] if math.isfinite(scores["auprc-macro"]) else -scores["loss"]
        record = {"epoch": epoch, "train-loss": trained["loss"], **scores}
        history.append(record)
        if on_epoch:
            on_epoch(record)
        if score > best_score:
            best_score, best_state, waited = score, copy.deepcopy(scored.state_dict()), 0
        else:
            waited += 1
            if waited >= options.patience:
                break
    model.load_state_dict(best_state)
    return model.eval(), history
