"""Scoring a synthetic city's hidden rates: the ceiling every model is measured against."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets import City, temporal_split, window_starts
from datasets.oracle import Oracle
from domains import get_domain
from fedcore.metrics import risk_metrics
from fedcore.site_data import DataSettings


def score_oracle(city_dir: Path, settings: DataSettings | None = None) -> dict[str, float]:
    """AUPRC, AUROC and Brier of the true event probabilities on the test windows.

    The windows, split and targets are cut exactly as for the models (same
    ``settings``), so the result is the ceiling of the same task.
    """
    settings = settings or DataSettings()
    city, oracle = City.load(city_dir), Oracle.load(city_dir)
    if oracle.district_ids != city.district_ids:
        raise ValueError(f"{city_dir}: the oracle belongs to another city")
    starts = window_starts(
        city, settings.stride_hours, settings.lookback_hours, settings.horizon_hours
    )
    test = temporal_split(starts, settings.horizon_hours)["test"]
    probabilities, counts = [], []
    for name in settings.domains:
        spec = get_domain(name)
        probabilities.append(oracle.event_probability(name, starts[test], spec.horizon_hours))
        counts.append(spec.targets(city.events, city.district_ids, starts[test]))
    counts_flat = np.stack([array.ravel() for array in counts], axis=1)
    probabilities_flat = np.stack([array.ravel() for array in probabilities], axis=1)
    scores = risk_metrics(counts_flat, probabilities_flat, list(settings.domains))
    return {"num-examples": float(len(counts_flat)), **scores}
