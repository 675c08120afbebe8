"""Partitioning a city into edge sites with controlled skew: who holds what.

A federation is a list of `SiteInfo`s drawn from a `PartitionSpec`. A site is a
group of districts (a ward office holds its own area) plus flags that take data
away from it, so that benchmarks can compare full sites with skewed ones:

- **label skew** (``dirichlet_alpha``): every district gets a class, its dominant
  domain (the domain whose event rate is highest relative to the city mean), and
  each class is spread over the sites in proportions drawn from Dir(alpha), as in
  NIID-bench's ``noniid-labeldir``; small alpha gives sites skewed domain mixes.
  Without label skew, sites are contiguous runs of districts along a Hilbert
  curve, i.e. compact areas.
- **quantity skew** (``quantity_skew``): site sizes weighted by LogNormal(0, sigma).
- **modality skew**: sites without cameras, without reports, or with only a few
  sensor channels (``kept_channels``).
- **scarce** sites keep their private records on a random 1/10 of the days (whole
  UTC days), hence ~1/10 of the samples; **coarse** sites keep every 10th sensor
  step, every 10th frame and every 10th report (events, the labels, are all kept).

More sites than districts: the record is cut into ``ceil(n_sites / n_districts)``
blocks of whole days ("eras"); site ``s`` belongs to era ``s % n_eras`` and the
sites of an era partition all districts over that era's days. A district's
windows are thus split by time among several sites, and a site always holds whole
districts over one span of days, so one mask over window starts describes it.

Everything is drawn from ``spec.seed``; the same city and spec give the same plan.
How districts are grouped lives in `datasets.partition_grouping`; writing and
loading site folders in `datasets.partition_io`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from datasets.city import City
from datasets.partition_grouping import (
    day_numbers,
    dominant_domains,
    group_districts,
    spatial_order,
)


@dataclass(frozen=True)
class PartitionSpec:
    """How to split a city into edge sites, and how skewed the sites are.

    Attributes:
        n_sites: Number of edge sites (10-500 in practice).
        dirichlet_alpha: Concentration of the per-domain Dirichlet over sites;
            None means no label skew (sites are compact areas).
        quantity_skew: Sigma of LogNormal(0, sigma) site-size weights; 0 = even.
        share_without_cameras: Share of sites that hold no camera frames.
        share_without_reports: Share of sites that hold no text reports.
        share_without_sensors: Share of sites that hold only ``kept_channels``.
        share_scarce: Share of sites that keep 1/``scarce_factor`` of their days.
        share_coarse: Share of sites with 1/``coarse_factor`` of the granularity.
        seed: Seed of every draw.
        kept_channels: Sensor channels that sites "without sensors" still have.
        scarce_factor: Scarce sites keep one day in this many.
        coarse_factor: Coarse sites keep one sensor step, frame, report in this many.
    """

    n_sites: int = 10
    dirichlet_alpha: float | None = None
    quantity_skew: float = 0.0
    share_without_cameras: float = 0.0
    share_without_reports: float = 0.0
    share_without_sensors: float = 0.0
    share_scarce: float = 0.0
    share_coarse: float = 0.0
    seed: int = 0
    kept_channels: tuple[str, ...] = ("rainfall", "temperature")
    scarce_factor: int = 10
    coarse_factor: int = 10

    def __post_init__(self) -> None:
        """Reject specs that cannot describe a federation."""
        if self.n_sites < 1:
            raise ValueError(f"n_sites must be at least 1, got {self.n_sites}")
        if self.dirichlet_alpha is not None and not self.dirichlet_alpha > 0:
            raise ValueError(f"dirichlet_alpha must be > 0 or None, got {self.dirichlet_alpha}")
        if self.quantity_skew < 0:
            raise ValueError(f"quantity_skew must be >= 0, got {self.quantity_skew}")
        for name in ("cameras", "reports", "sensors"):
            _check_share(f"share_without_{name}", getattr(self, f"share_without_{name}"))
        _check_share("share_scarce", self.share_scarce)
        _check_share("share_coarse", self.share_coarse)
        if self.share_scarce + self.share_coarse > 1:
            raise ValueError("share_scarce + share_coarse must be <= 1 (the sets are disjoint)")
        if self.scarce_factor < 1 or self.coarse_factor < 1:
            raise ValueError("scarce_factor and coarse_factor must be >= 1")
        object.__setattr__(self, "kept_channels", tuple(self.kept_channels))


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class SiteInfo:
    """One edge site: its districts and what it lacks.

    Attributes:
        site_id: ``site-000``...; site ``k`` is Flower's ``partition-id`` ``k``.
        districts: Ids of the districts whose private data the site holds.
        no_cameras: The site holds no camera frames.
        no_reports: The site holds no text reports.
        missing_channels: Sensor channels the site does not have.
        scarce: The site keeps only a few of its days (see ``active_days``).
        coarse_factor: 1 for full granularity; k keeps every k-th sensor step,
            frame and report.
        active_days: UTC dates (ISO) on which the site holds private records;
            None means every day of the record.
    """

    site_id: str
    districts: tuple[str, ...]
    no_cameras: bool = False
    no_reports: bool = False
    missing_channels: tuple[str, ...] = ()
    scarce: bool = False
    coarse_factor: int = 1
    active_days: tuple[str, ...] | None = None

    @property
    def coarse(self) -> bool:
        """Whether the site has coarser data than the others."""
        return self.coarse_factor > 1

    def rows(self, city: City) -> np.ndarray:
        """Row indices of the site's districts in ``city.districts`` (for `RiskSamples`)."""
        rows = pd.Index(city.district_ids).get_indexer(list(self.districts))
        if (rows < 0).any():
            unknown = [name for name, row in zip(self.districts, rows, strict=True) if row < 0]
            raise ValueError(f"{self.site_id}: districts {unknown} are not in this city")
        return rows

    def window_mask(self, starts: pd.DatetimeIndex, horizon_hours: int = 6) -> np.ndarray:
        """Which windows the site has data and labels for.

        A window counts when the day of its start and the day its horizon ends
        are both active days, so its targets are complete at this site.
        """
        starts = pd.DatetimeIndex(starts)
        if self.active_days is None:
            return np.ones(len(starts), dtype=bool)
        held = day_numbers_of_dates(self.active_days)
        last = starts + pd.Timedelta(hours=horizon_hours) - pd.Timedelta(1, "ns")
        return np.isin(day_numbers(starts), held) & np.isin(day_numbers(last), held)

    def holds_starts(self, starts: pd.DatetimeIndex) -> np.ndarray:
        """Which window starts fall on the site's active days.

        Every start falls on one era's days, so for each district exactly one
        site holds it: what the site says about that window is not said twice.
        """
        starts = pd.DatetimeIndex(starts)
        if self.active_days is None:
            return np.ones(len(starts), dtype=bool)
        return np.isin(day_numbers(starts), day_numbers_of_dates(self.active_days))

    def to_dict(self) -> dict:
        """A JSON-ready dict (with the derived ``coarse`` flag for readers)."""
        out = asdict(self)
        out["districts"] = list(self.districts)
        out["missing_channels"] = list(self.missing_channels)
        if self.active_days is not None:
            out["active_days"] = list(self.active_days)
        out["coarse"] = self.coarse
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SiteInfo:
        """Inverse of `to_dict`."""
        known = {item.name for item in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["districts"] = tuple(values["districts"])
        values["missing_channels"] = tuple(values.get("missing_channels", ()))
        if values.get("active_days") is not None:
            values["active_days"] = tuple(values["active_days"])
        return cls(**values)


@dataclass
class Federation:
    """The sites of one partitioned city, in Flower ``partition-id`` order."""

    spec: PartitionSpec
    sites: list[SiteInfo]

    def to_dict(self) -> dict:
        """A JSON-ready dict; its ``sites`` list also reads as a plain site plan."""
        spec = asdict(self.spec)
        spec["kept_channels"] = list(self.spec.kept_channels)
        return {"spec": spec, "sites": [site.to_dict() for site in self.sites]}

    @classmethod
    def from_dict(cls, data: dict) -> Federation:
        """Inverse of `to_dict`."""
        spec = dict(data["spec"])
        spec["kept_channels"] = tuple(spec.get("kept_channels", ()))
        return cls(PartitionSpec(**spec), [SiteInfo.from_dict(site) for site in data["sites"]])


def day_numbers_of_dates(dates) -> np.ndarray:
    """Day numbers of ISO dates (``"2026-06-01"``)."""
    return np.asarray(dates, dtype="datetime64[D]").astype(np.int64)


def record_days(city: City) -> np.ndarray:
    """Day numbers of every UTC day the sensor record touches, in order."""
    grid = pd.DatetimeIndex(city.sensors["time"].values)
    days = day_numbers(grid)
    return np.arange(days.min(), days.max() + 1) if len(days) else days


def partition_city(city: City, spec: PartitionSpec) -> Federation:
    """Split ``city`` into ``spec.n_sites`` edge sites with the spec's skews.

    Every site holds at least one district (over its era when sites outnumber
    districts), and every district is held by exactly one site per era.

    Raises:
        ValueError: More eras would be needed than the record has days.
    """
    rng = np.random.default_rng(spec.seed)
    ids = np.array(city.district_ids)
    days = record_days(city)
    n_eras = math.ceil(spec.n_sites / len(ids))
    if n_eras > len(days):
        raise ValueError(
            f"{spec.n_sites} sites need {n_eras} blocks of days, the record has {len(days)} days"
        )
    era_days = np.array_split(days, n_eras)
    weights = (
        rng.lognormal(0.0, spec.quantity_skew, spec.n_sites)
        if spec.quantity_skew > 0
        else np.ones(spec.n_sites)
    )
    order = spatial_order(city)
    held: list[np.ndarray] = [np.zeros(0, np.int64)] * spec.n_sites
    for era in range(n_eras):
        members = np.arange(era, spec.n_sites, n_eras)
        classes = None
        if spec.dirichlet_alpha is not None:
            classes = dominant_domains(city, era_days[era], rng)
        local = group_districts(order, classes, weights[members], spec.dirichlet_alpha, rng)
        for position, site in enumerate(members):
            held[site] = np.flatnonzero(local == position)
    flags = _draw_flags(city, spec, rng)
    sites = []
    for site in range(spec.n_sites):
        own_days = era_days[site % n_eras]
        scarce = bool(flags["scarce"][site])
        if scarce:
            keep = max(1, round(len(own_days) / spec.scarce_factor))
            own_days = np.sort(rng.choice(own_days, size=keep, replace=False))
        sites.append(
            SiteInfo(
                site_id=f"site-{site:03d}",
                districts=tuple(str(name) for name in ids[held[site]]),
                no_cameras=bool(flags["no_cameras"][site]),
                no_reports=bool(flags["no_reports"][site]),
                missing_channels=flags["missing_channels"] if flags["no_sensors"][site] else (),
                scarce=scarce,
                coarse_factor=spec.coarse_factor if flags["coarse"][site] else 1,
                active_days=None if n_eras == 1 and not scarce else _iso_dates(own_days),
            )
        )
    return Federation(spec=spec, sites=sites)


def _iso_dates(days: np.ndarray) -> tuple[str, ...]:
    return tuple(str(day) for day in np.asarray(days, dtype="datetime64[D]"))


def _draw_flags(city: City, spec: PartitionSpec, rng: np.random.Generator) -> dict:
    """Which sites lose which data.

    Modality flags are drawn independently; scarce and coarse sites are disjoint,
    so that each kind of scarcity can be measured alone.
    """
    n = spec.n_sites

    def pick(share: float) -> np.ndarray:
        chosen = np.zeros(n, dtype=bool)
        chosen[rng.permutation(n)[: round(share * n)]] = True
        return chosen

    flags = {
        "no_cameras": pick(spec.share_without_cameras),
        "no_reports": pick(spec.share_without_reports),
        "no_sensors": pick(spec.share_without_sensors),
    }
    order = rng.permutation(n)
    n_scarce = round(spec.share_scarce * n)
    n_coarse = min(round(spec.share_coarse * n), n - n_scarce)
    flags["scarce"] = np.isin(np.arange(n), order[:n_scarce])
    flags["coarse"] = np.isin(np.arange(n), order[n_scarce : n_scarce + n_coarse])
    kept = set(spec.kept_channels)
    flags["missing_channels"] = tuple(str(c) for c in city.sensors.data_vars if c not in kept)
    return flags
