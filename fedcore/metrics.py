"""Ranking metrics of risk predictions: AUPRC (headline), AUROC, Brier."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def risk_metrics(counts: np.ndarray, probabilities: np.ndarray, domains: list[str]) -> dict:
    """Per-domain and macro metrics; a domain without both classes is left out.

    Args:
        counts: Event counts ``(n, D)``.
        probabilities: Predicted event probabilities ``(n, D)``.
        domains: Names of the ``D`` columns.

    Returns:
        ``auprc-<domain>``, ``auroc-<domain>``, ``brier-<domain>`` for each
        scorable domain, and ``auprc-macro`` / ``auroc-macro`` over them (NaN
        when none is scorable).
    """
    labels = counts > 0
    out: dict[str, float] = {}
    auprc, auroc = [], []
    for column, name in enumerate(domains):
        truth, score = labels[:, column], probabilities[:, column]
        if len(truth) == 0 or truth.all() or not truth.any():
            continue
        out[f"auprc-{name}"] = float(average_precision_score(truth, score))
        out[f"auroc-{name}"] = float(roc_auc_score(truth, score))
        out[f"brier-{name}"] = float(np.mean((score - truth) ** 2))
        auprc.append(out[f"auprc-{name}"])
        auroc.append(out[f"auroc-{name}"])
    out["auprc-macro"] = float(np.mean(auprc)) if auprc else float("nan")
    out["auroc-macro"] = float(np.mean(auroc)) if auroc else float("nan")
    return out


def macro_auprc_ratio_interval(
    counts: np.ndarray,
    reference: np.ndarray,
    candidate: np.ndarray,
    blocks: np.ndarray,
    level: float = 0.9,
    resamples: int = 400,
    seed: int = 0,
) -> tuple[float, float]:
    """How far one ratio of macro AUPRCs on a hold-out can be trusted: a paired block bootstrap.

    The ratio is ``candidate``'s macro AUPRC over ``reference``'s, both scored
    on the same windows. The windows are redrawn by ``blocks`` (e.g. the day of
    each window), whole blocks with replacement, since events of one day share a
    cause (a storm floods many districts at once) and are not independent
    draws; both models are scored on each redraw, so what they share cancels.
    A hold-out of a dozen days gives an interval several points wide: a
    difference of a point or two between two models is not measured by it.

    Args:
        counts: Event counts ``(n, D)``.
        reference: The reference model's probabilities ``(n, D)`` (the denominator).
        candidate: The other model's probabilities ``(n, D)``.
        blocks: A block label per window ``(n,)``.
        level: Coverage of the central percentile interval.
        resamples: Bootstrap redraws.
        seed: Seed of the redraws.

    Returns:
        The interval's lower and upper ends; redraws where a model has no
        scorable domain are left out (NaN, NaN when all are).

    Raises:
        ValueError: The arrays do not describe the same windows, or ``level``
            is not in (0, 1).
    """
    if not (counts.shape == reference.shape == candidate.shape and len(blocks) == len(counts)):
        raise ValueError(
            f"counts {counts.shape}, reference {reference.shape}, candidate "
            f"{candidate.shape} and blocks ({len(blocks)},) must describe the same windows"
        )
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    labels = counts > 0
    members = [np.flatnonzero(blocks == block) for block in np.unique(blocks)]
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(resamples):
        drawn = np.concatenate([members[i] for i in rng.integers(len(members), size=len(members))])
        truth = labels[drawn]
        scorable = [d for d in range(truth.shape[1]) if 0 < truth[:, d].sum() < len(truth)]
        if not scorable:
            continue
        means = [
            np.mean([average_precision_score(truth[:, d], scores[drawn, d]) for d in scorable])
            for scores in (reference, candidate)
        ]
        if means[0] > 0:
            ratios.append(means[1] / means[0])
    if not ratios:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)
