"""Grouping districts into sites: spatial runs, or per-class Dirichlet shares.

The two ways `datasets.partition.partition_city` groups the districts of one era:

- without label skew, districts are ordered along a Hilbert curve through their
  centroids and the order is cut into runs, so each site is a compact area;
- with label skew, each district's class is its dominant domain and every class
  is spread over the sites by Dirichlet draws (NIID-bench's ``noniid-labeldir``:
  Li et al., "Federated Learning on Non-IID Data Silos", ICDE 2022).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from datasets.city import City

NS_PER_DAY = 86_400 * 10**9


def day_numbers(stamps: pd.DatetimeIndex) -> np.ndarray:
    """Days since 1970-01-01 (UTC) of each time stamp; naive stamps are UTC."""
    stamps = pd.DatetimeIndex(stamps)
    if stamps.tz is not None:
        stamps = stamps.tz_convert("UTC").tz_localize(None)
    return stamps.as_unit("ns").asi8 // NS_PER_DAY


def spatial_order(city: City, bits: int = 10) -> np.ndarray:
    """District rows sorted along a Hilbert curve through their centroids.

    Consecutive runs of this order are compact areas, which is how sites without
    label skew are cut (a ward office holds neighbouring districts).
    """
    points = shapely.get_coordinates(shapely.centroid(city.districts.geometry.values))
    span = np.ptp(points, axis=0)
    scaled = (points - points.min(axis=0)) / np.where(span > 0, span, 1.0)
    cells = np.minimum((scaled * 2**bits).astype(np.int64), 2**bits - 1)
    return np.argsort(_hilbert_index(cells[:, 0], cells[:, 1], bits), kind="stable")


def _hilbert_index(x: np.ndarray, y: np.ndarray, bits: int) -> np.ndarray:
    """Distance along the Hilbert curve of order ``bits`` for integer cells."""
    side = 2**bits
    x, y = x.copy(), y.copy()
    index = np.zeros_like(x)
    step = side // 2
    while step > 0:
        rx = (x & step) > 0
        ry = (y & step) > 0
        index += step * step * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        flip = ~ry & rx
        x = np.where(flip, side - 1 - x, x)
        y = np.where(flip, side - 1 - y, y)
        x, y = np.where(~ry, y, x), np.where(~ry, x, y)
        step //= 2
    return index


def event_domains(city: City) -> list[str]:
    """The event domains of the city, in a stable order."""
    return sorted(str(name) for name in pd.unique(city.events["domain"]))


def dominant_domains(
    city: City, days: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Each district's class: the domain with the most events relative to the city mean.

    Counting events per domain over ``days`` and dividing by the city's mean per
    district makes rare domains (crowd, disaster) able to dominate a district, so
    every class has districts. Ties, e.g. districts without events, are broken at
    random, not towards the first domain.
    """
    events = city.events
    domains = event_domains(city)
    n = len(city.districts)
    if not domains:
        return np.zeros(n, dtype=np.int64)
    in_days = np.isin(day_numbers(pd.DatetimeIndex(events["timestamp"])), days)
    rows = pd.Index(city.district_ids).get_indexer(events["district_id"].astype(str))
    column = pd.Index(domains).get_indexer(events["domain"].astype(str))
    counts = np.zeros((n, len(domains)))
    np.add.at(counts, (rows[in_days], column[in_days]), 1.0)
    mean = counts.mean(axis=0)
    relative = counts / np.where(mean > 0, mean, 1.0)
    jitter = (rng or np.random.default_rng(0)).uniform(0, 1e-6, relative.shape)
    return np.argmax(relative + jitter, axis=1)


def group_districts(
    order: np.ndarray,
    classes: np.ndarray | None,
    weights: np.ndarray,
    alpha: float | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Site (0..m-1, ``m = len(weights)``) of each district row; each site gets one or more.

    Without classes the spatial ``order`` is cut into ``m`` runs whose lengths
    follow ``weights``. With classes, each class's districts (in spatial order)
    are cut by proportions ~ Dir(alpha) times the weights, and sites that reached
    their share stop receiving (NIID-bench's balancing); sites left empty then
    take one district from the largest site, of the class they drew most of.
    """
    n, m = len(order), len(weights)
    if m > n:
        raise ValueError(f"cannot give {m} sites at least one of {n} districts")
    site_of = np.full(n, -1, dtype=np.int64)
    if classes is None:
        sizes = 1 + _apportion(n - m, weights)
        site_of[order] = np.repeat(np.arange(m), sizes)
        return site_of
    capacity = n * weights / weights.sum()
    counts = np.zeros(m)
    n_classes = int(classes.max()) + 1 if n else 0
    preference = np.zeros((n_classes, m))
    for label in range(n_classes):
        members = order[classes[order] == label]
        preference[label] = rng.dirichlet(np.full(m, alpha))
        shares = preference[label] * weights * (counts < capacity)
        shares = shares if shares.sum() > 0 else weights.astype(float)
        cuts = (np.cumsum(shares / shares.sum()) * len(members)).astype(int)[:-1]
        for site, part in enumerate(np.split(members, cuts)):
            site_of[part] = site
            counts[site] += len(part)
    _fill_empty_sites(site_of, classes, preference)
    return site_of


def _fill_empty_sites(site_of: np.ndarray, classes: np.ndarray, preference: np.ndarray) -> None:
    """Move one district to each empty site from the currently largest site."""
    m = preference.shape[1]
    sizes = np.bincount(site_of, minlength=m)
    for site in np.flatnonzero(sizes == 0):
        donor = int(np.argmax(sizes))
        candidates = np.flatnonzero(site_of == donor)
        chosen = candidates[np.argmax(preference[classes[candidates], site])]
        site_of[chosen] = site
        sizes[donor] -= 1
        sizes[site] += 1


def _apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers summing to ``total`` proportional to ``weights`` (largest remainder)."""
    exact = total * weights / weights.sum()
    sizes = np.floor(exact).astype(np.int64)
    remainder = total - sizes.sum()
    sizes[np.argsort(-(exact - sizes), kind="stable")[:remainder]] += 1
    return sizes
