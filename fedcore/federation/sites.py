"""Which districts each edge site holds: the federation's site plan file.

The plan is a JSON file ``{"sites": [{"site_id": ..., "districts": [...]}, ...]}``.
Site ``k`` of the plan is the Flower node whose ``partition-id`` is ``k``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans

from datasets import City


def group_districts_into_sites(city: City, n_sites: int, seed: int = 0) -> list[dict]:
    """Contiguous groups of districts (k-means on centroids), one per site.

    Every site gets at least one district; a ward office holds its own area.
    """
    if not 1 <= n_sites <= len(city.districts):
        raise ValueError(f"n_sites must be in 1..{len(city.districts)}, got {n_sites}")
    centroids = city.districts.to_crs("EPSG:3857").geometry.centroid
    points = np.column_stack([centroids.x, centroids.y])
    labels = KMeans(n_clusters=n_sites, n_init=4, random_state=seed).fit_predict(points)
    ids = np.array(city.district_ids)
    return [
        {"site_id": f"site-{index:03d}", "districts": ids[labels == index].tolist()}
        for index in range(n_sites)
    ]


def write_site_plan(sites: list[dict], path: str | Path) -> Path:
    """Write the plan as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"sites": sites}, indent=1))
    return path


def read_site_plan(path: str | Path) -> list[dict]:
    """Read a plan written by `write_site_plan`."""
    return json.loads(Path(path).read_text())["sites"]
