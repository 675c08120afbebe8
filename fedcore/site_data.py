"""An edge site's training data: its districts' samples plus the public graph.

Every site, and the central trainer, prepares data the same way, so that a
model trained anywhere sees the same features for the same district and window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from datasets import City, RiskSamples, static_features, temporal_split, window_starts
from domains import get_domain
from fedcore.model.text_embedding import report_embedder


@dataclass(frozen=True)
class DataSettings:
    """How samples are cut from a city; the same for every site of a federation.

    Attributes:
        domains: Domains to predict, in head order.
        stride_hours: Hours between consecutive window starts.
        lookback_hours: Context before each window.
    """

    domains: tuple[str, ...] = ("traffic", "safety", "crowd", "disaster")
    stride_hours: int = 6
    lookback_hours: int = 24

    @property
    def horizon_hours(self) -> int:
        """The longest horizon among the domains."""
        return max(get_domain(name).horizon_hours for name in self.domains)


@dataclass
class SiteData:
    """Samples of some districts, their split, and the public district graph."""

    samples: RiskSamples
    graph: Data
    split: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_static(self) -> int:
        """Number of static attributes per district."""
        return int(self.graph.x.shape[1])


def public_graph(city: City) -> Data:
    """The district graph with static attributes as node features ``x``."""
    graph = Data(
        x=torch.from_numpy(static_features(city)),
        edge_index=city.graph.edge_index,
        edge_weight=city.graph.edge_weight,
        num_nodes=len(city.districts),
    )
    return graph


def prepare_site_data(
    city: City, settings: DataSettings, districts: np.ndarray | None = None
) -> SiteData:
    """Samples of ``districts`` (row indices; all when None) split in time."""
    starts = window_starts(
        city, settings.stride_hours, settings.lookback_hours, settings.horizon_hours
    )
    targets = {
        name: get_domain(name).targets(city.events, city.district_ids, starts)
        for name in settings.domains
    }
    samples = RiskSamples(
        city,
        starts,
        targets,
        embed_texts=report_embedder(),
        lookback_hours=settings.lookback_hours,
        districts=districts,
    )
    split = samples.split_indices(temporal_split(starts, settings.horizon_hours))
    return SiteData(samples=samples, graph=public_graph(city), split=split)


@lru_cache(maxsize=4)
def load_city_cached(path: str) -> City:
    """A city read once per process (sites in a simulation share a process)."""
    return City.load(Path(path))
