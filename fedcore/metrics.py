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
