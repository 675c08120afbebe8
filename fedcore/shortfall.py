"""Where one model ranks risk worse than another: by district, by time, or locally.

A headline ratio ("0.95x centralised") says how much a model loses, not where.
Over a split's (district, window) samples, a model's logits for one domain split
into four parts that add up to them:

- ``district``: the district's mean logit over the split, less the grand mean
  (which districts are riskier);
- ``time``: the window's mean logit over the districts, less the grand mean
  (when the whole city is riskier: rush hours, storms);
- ``local``: the rest (this district at this time: a festival in its camera
  frames, its water gauge rising);
- the grand mean itself, which no ranking within a domain depends on.

Scoring the candidate with one part replaced by the reference's says how much of
the gap that part carries: if the candidate with the reference's local part
scores what the reference scores, the candidate loses in reading local signals,
not in knowing which districts or days are risky. The parts are exact on any set
of samples (missing (district, window) cells only change what the means are
over), so a swap changes that part alone.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

from fedcore.metrics import risk_metrics

PARTS = ("district", "time", "local")
_EDGE = 1e-6


def logit_parts(
    probabilities: np.ndarray, district: np.ndarray, window: np.ndarray
) -> dict[str, np.ndarray]:
    """The district, time and local parts and the grand mean of each domain's logits.

    Args:
        probabilities: Event probabilities ``(n, D)``.
        district: The district of each sample ``(n,)``.
        window: The window of each sample ``(n,)``.

    Returns:
        ``district``, ``time``, ``local`` ``(n, D)`` and ``mean`` ``(1, D)``, whose
        sum is the logits.
    """
    logits = logit(np.clip(probabilities.astype(np.float64), _EDGE, 1 - _EDGE))
    mean = logits.mean(axis=0, keepdims=True) if len(logits) else np.zeros((1, logits.shape[1]))
    by_district = _group_means(logits, district) - mean
    by_window = _group_means(logits, window) - mean
    local = logits - mean - by_district - by_window
    return {"district": by_district, "time": by_window, "local": local, "mean": mean}


def _group_means(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row's group mean of ``values`` ``(n, D)``."""
    labels, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(labels), values.shape[1]))
    np.add.at(sums, inverse, values)
    counts = np.bincount(inverse, minlength=len(labels))[:, None]
    return (sums / counts)[inverse]


def shortfall_by_part(
    counts: np.ndarray,
    reference: np.ndarray,
    candidate: np.ndarray,
    district: np.ndarray,
    window: np.ndarray,
    domains: list[str],
) -> dict[str, dict[str, float]]:
    """AUPRC of the candidate, the reference, and the candidate with each part swapped in.

    Args:
        counts: Event counts ``(n, D)``.
        reference: The reference model's probabilities ``(n, D)`` (e.g. centralised).
        candidate: The candidate's probabilities ``(n, D)`` (e.g. federated).
        district: The district of each sample ``(n,)``.
        window: The window of each sample ``(n,)``.
        domains: Names of the ``D`` columns.

    Returns:
        ``candidate``, ``reference`` and ``with reference <part>`` for each of
        `PARTS`: ``auprc-<domain>`` and ``auprc-macro`` each (`risk_metrics`).
    """
    mine = logit_parts(candidate, district, window)
    theirs = logit_parts(reference, district, window)
    rows = {"candidate": candidate, "reference": reference}
    for swapped in PARTS:
        logits = mine["mean"] + sum((theirs if part == swapped else mine)[part] for part in PARTS)
        rows[f"with reference {swapped}"] = expit(logits)
    return {
        name: {
            key: value
            for key, value in risk_metrics(counts, probabilities, domains).items()
            if key.startswith("auprc-")
        }
        for name, probabilities in rows.items()
    }
