"""The hold-out as the edge sites see it, and the sites' own samples pooled.

Pooling the *city* gives every sample what no edge site has: the data of
neighbouring districts held by other sites (the neighbour context), and camera
frames where a site has no cameras. A model trained on the pooled city and
scored there is thus an upper reference the federation cannot reach by better
aggregation alone. Two fairer views sit beside it in the federation benchmark:

- `site_view_scores`: every site predicts its own test windows from its own
  folder; all sites' predictions are scored together (local-only is scored so);
- `pool_site_data`: the pooled city's samples with each sample's inputs as the
  site holding it sees them, and only the samples some site holds: training a
  model centrally on it is "the sites' data pooled", with the same information
  the federation has.
"""

from __future__ import annotations

import copy

import numpy as np

from fedcore.metrics import risk_metrics
from fedcore.model import RiskNet
from fedcore.site_data import SiteData
from fedcore.training import predict

# Per-sample inputs a site computes from its own data; ``frame_index`` and
# ``report_index`` point into the site's own tables of frames and report embeddings.
OWN_INPUTS = ("series", "series_mask", "series_time", "report_time", "text_count", "neighbours")
TABLES = (("frame_index", "frames"), ("report_index", "report_embeddings"))


def pool_site_data(pooled: SiteData, sites: list[SiteData]) -> SiteData:
    """The pooled city's samples as their sites see them; splits: the samples sites hold.

    Each held sample takes its site's inputs (its frames and reports come from
    the site's own tables, appended to the pooled ones). Targets are the same in
    both (a site keeps every event of its districts).

    Raises:
        ValueError: A site's windows differ from the pooled city's.
    """
    samples = copy.copy(pooled.samples)
    for name in (*OWN_INPUTS, *(index for index, _ in TABLES)):
        setattr(samples, name, getattr(pooled.samples, name).copy())
    tables = {table: [getattr(pooled.samples, table)] for _, table in TABLES}
    n_windows = len(pooled.samples.starts)
    held = {name: [] for name in pooled.split}
    for site in sites:
        if not site.samples.starts.equals(pooled.samples.starts):
            raise ValueError("every site must cut the same windows as the pooled city")
        where = site.samples.district * n_windows + site.samples.window
        for name in OWN_INPUTS:
            getattr(samples, name)[where] = getattr(site.samples, name)
        for index, table in TABLES:
            offset = sum(len(part) for part in tables[table])
            own = getattr(site.samples, index)
            getattr(samples, index)[where] = np.where(own < 0, -1, own + offset)
            tables[table].append(getattr(site.samples, table))
        for name, indices in site.split.items():
            held[name].append(where[indices])
    for _, table in TABLES:
        setattr(samples, table, np.concatenate(tables[table]))
    out = copy.copy(pooled)
    out.samples = samples
    out.split = {
        name: np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        for name, parts in held.items()
    }
    return out


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
