"""The hold-out as the edge sites see it (federation benchmark).

A model trained centrally is scored on the pooled data, where every sample has
all its neighbours' data. In a federation each site predicts its own windows
from its own folder (plus the neighbour context the exchange gave it, if any);
`site_view_scores` scores all sites' predictions together, as local-only
training is scored.
"""

from __future__ import annotations

import numpy as np

from fedcore.metrics import risk_metrics
from fedcore.model import RiskNet
from fedcore.site_data import SiteData
from fedcore.training import predict


def site_view_scores(model: RiskNet, sites: list[SiteData], split: str = "test") -> dict:
    """Every site predicts its own ``split`` windows; the predictions scored together."""
    probabilities, counts = [], []
    for site in sites:
        indices = site.split[split]
        if len(indices):
            probabilities.append(predict(model, site, indices)["probability"])
            counts.append(site.samples.targets[indices])
    domains = model.config.domains
    scores = risk_metrics(np.concatenate(counts), np.concatenate(probabilities), domains)
    return {key: value for key, value in scores.items() if np.isfinite(value)}
