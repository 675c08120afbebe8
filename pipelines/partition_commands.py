"""``kizashi city partitions`` and ``site``: edge-site folders, and what each holds.

``partitions`` splits a City into site folders; ``site`` makes a partner's own
City one site folder of an existing federation (`datasets.own_site`).

`register` adds both to a typer app (the ``city`` group of the CLI). The
table they print per site — districts, samples, modalities, skew and label rate
per domain — is computed from the city and the plan, so it describes exactly
the data written to each site folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from datasets import City, temporal_split, window_starts
from datasets.partition import PartitionSpec, SiteInfo, partition_city
from datasets.partition_io import load_site, write_federation
from domains import domain_names
from pipelines.guard import guarded

STRIDE_HOURS = 6
LOOKBACK_HOURS = 24
HORIZON_HOURS = 6


@dataclass
class SiteSummary:
    """What one site holds, as the table shows it.

    Attributes:
        site_id: The site.
        n_districts: Districts it holds.
        samples: District-windows (6-hour windows) it has data and labels for.
        train_samples: Those of them in the training part of the temporal split
            (`datasets.temporal_split`); a site with none never trains.
        modalities: Modalities present (``cameras``, ``reports``, ``sensors``).
        skew: What was taken away (``scarce``, ``coarse 1/10``, ``2/6 channels``).
        label_rates: Events per sample, per domain.
    """

    site_id: str
    n_districts: int
    samples: int
    train_samples: int
    modalities: list[str]
    skew: list[str]
    label_rates: dict[str, float]


def summarize_sites(city: City, sites: list[SiteInfo]) -> list[SiteSummary]:
    """One `SiteSummary` per site of ``city``, indexing its records once."""
    starts = window_starts(city, STRIDE_HOURS, LOOKBACK_HOURS, HORIZON_HOURS)
    train = temporal_split(starts, HORIZON_HOURS)["train"]
    domains = _ordered_domains(city)
    events = city.events
    stamps = pd.DatetimeIndex(events["timestamp"]).as_unit("ns").asi8
    offset = stamps - starts.as_unit("ns")[0].value
    window = np.floor_divide(offset, pd.Timedelta(hours=STRIDE_HOURS).value)
    window = np.where((offset >= 0) & (window < len(starts)), window, -1)
    column = pd.Index(domains).get_indexer(events["domain"].astype(str))
    by_district = events.groupby("district_id", sort=False).indices
    with_frames = set(city.images["district_id"].astype(str))
    with_reports = set(city.reports["district_id"].astype(str))
    with_sensors = set(city.sensors["district"].values.astype(str))
    n_channels = len(city.sensors.data_vars)
    summaries = []
    for site in sites:
        held = site.window_mask(starts, HORIZON_HOURS)
        samples = len(site.districts) * int(held.sum())
        rows = [by_district.get(name, np.zeros(0, np.int64)) for name in site.districts]
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        rows = rows[(window[rows] >= 0) & (column[rows] >= 0)]
        rows = rows[held[window[rows]]]
        counts = np.bincount(column[rows], minlength=len(domains))
        rates = {name: counts[i] / samples if samples else 0.0 for i, name in enumerate(domains)}
        mine = set(site.districts)
        modalities = []
        if not site.no_cameras and mine & with_frames:
            modalities.append("cameras")
        if not site.no_reports and mine & with_reports:
            modalities.append("reports")
        if mine & with_sensors:
            modalities.append("sensors")
        summaries.append(
            SiteSummary(
                site_id=site.site_id,
                n_districts=len(site.districts),
                samples=samples,
                train_samples=len(site.districts) * int((held & train).sum()),
                modalities=modalities,
                skew=_skew_words(site, n_channels),
                label_rates=rates,
            )
        )
    return summaries


def _ordered_domains(city: City) -> list[str]:
    """Registered domains first (traffic, safety, crowd, disaster), then any others."""
    present = {str(name) for name in pd.unique(city.events["domain"])}
    registered = domain_names()
    return registered + sorted(present - set(registered))


def _skew_words(site: SiteInfo, n_channels: int) -> list[str]:
    words = []
    if site.scarce:
        words.append(f"scarce ({len(site.active_days or ())} d)")
    elif site.active_days is not None:
        words.append(f"{site.active_days[0][5:]}..{site.active_days[-1][5:]}")
    if site.coarse:
        words.append(f"coarse 1/{site.coarse_factor}")
    if site.missing_channels:
        words.append(f"{n_channels - len(site.missing_channels)}/{n_channels} channels")
    return words


def untrained_sites(summaries: list[SiteSummary]) -> list[str]:
    """Sites with no training window: they hold only validation or test days.

    This happens when sites outnumber districts: the partitioner then cuts the
    record into eras of days, and the eras that fall after the validation cut
    never train.
    """
    return [summary.site_id for summary in summaries if summary.train_samples == 0]


def idle_sites_line(n_idle: int, n_sites: int) -> str:
    """The warning for sites that never train, with what to do about it."""
    return (
        f"{n_idle} of {n_sites} sites hold no training window (sites outnumber districts, "
        "so they hold eras of days after the validation cut); a city with at least as "
        "many districts as sites gives every site whole districts over the whole record"
    )


def summary_table(summaries: list[SiteSummary]) -> Table:
    """A rich table, one row per site."""
    domains = list(summaries[0].label_rates) if summaries else []
    table = Table(
        title="Edge sites",
        caption=(
            "samples: 6-hour district-windows with data; train: those before the "
            "validation cut; domain columns: events per sample"
        ),
        box=box.SIMPLE_HEAD,
    )
    table.add_column("site", no_wrap=True)
    table.add_column("districts", justify="right")
    table.add_column("samples", justify="right")
    table.add_column("train", justify="right")
    table.add_column("modalities", no_wrap=True)
    table.add_column("skew")
    for name in domains:
        table.add_column(name, justify="right")
    for summary in summaries:
        table.add_row(
            summary.site_id,
            str(summary.n_districts),
            str(summary.samples),
            str(summary.train_samples),
            " ".join(summary.modalities) or "-",
            ", ".join(summary.skew) or "-",
            *(f"{summary.label_rates[name]:.3f}" for name in domains),
        )
    return table


def partitions(
    city_dir: Annotated[Path, typer.Argument(help="City folder to partition.")],
    out_dir: Annotated[Path, typer.Argument(help="Federation folder to write.")],
    sites: Annotated[int, typer.Option("--sites", help="Number of edge sites.")] = 10,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="Dirichlet label skew (none: no skew).")
    ] = None,
    quantity_skew: Annotated[
        float, typer.Option("--quantity-skew", help="Lognormal sigma of site sizes.")
    ] = 0.0,
    no_cameras: Annotated[
        float, typer.Option("--no-cameras", help="Share of sites without cameras.")
    ] = 0.0,
    no_reports: Annotated[
        float, typer.Option("--no-reports", help="Share of sites without reports.")
    ] = 0.0,
    no_sensors: Annotated[
        float, typer.Option("--no-sensors", help="Share of sites with only basic channels.")
    ] = 0.0,
    scarce: Annotated[float, typer.Option("--scarce", help="Share of scarce sites.")] = 0.0,
    coarse: Annotated[float, typer.Option("--coarse", help="Share of coarse sites.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every draw.")] = 0,
) -> None:
    """Split a City into edge-site folders and print what each site holds."""
    began = time.perf_counter()
    spec = guarded(
        lambda: PartitionSpec(
            n_sites=sites,
            dirichlet_alpha=alpha,
            quantity_skew=quantity_skew,
            share_without_cameras=no_cameras,
            share_without_reports=no_reports,
            share_without_sensors=no_sensors,
            share_scarce=scarce,
            share_coarse=coarse,
            seed=seed,
        ),
        also=(ValueError,),
    )

    def build():
        city = City.load(city_dir)
        federation = partition_city(city, spec)
        write_federation(federation, city, out_dir)
        return city, federation

    city, federation = guarded(build, also=(ValueError,))
    console = Console(width=max(Console().width, 120))  # a pipe still gets the whole table
    summaries = summarize_sites(city, federation.sites)
    console.print(summary_table(summaries))
    idle = untrained_sites(summaries)
    if idle:
        console.print(f"[yellow]{idle_sites_line(len(idle), len(summaries))}[/yellow]")
    seconds = time.perf_counter() - began
    console.print(f"wrote {len(federation.sites)} sites to {out_dir} in {seconds:.1f} s")


def own_site(
    city_dir: Annotated[Path, typer.Argument(help="Your own City folder (kizashi city import).")],
    out_dir: Annotated[Path, typer.Argument(help="Site folder to write.")],
    public: Annotated[
        Path, typer.Option("--public", help="The federation's public layer (FED/public).")
    ],
    site_id: Annotated[str, typer.Option("--site-id", help="Your site's name.")],
) -> None:
    """Make your own City a site folder of a federation, for kizashi join."""
    from datasets.own_site import write_own_site

    def build():
        public_layer = City.load(public)
        write_own_site(City.load(city_dir), public_layer, site_id, out_dir, city_dir)
        return load_site(out_dir, public_layer)  # what the site's ClientApp will read

    view, site = guarded(build, also=(ValueError,))
    console = Console(width=max(Console().width, 120))
    console.print(summary_table(summarize_sites(view, [site])))
    console.print(f"wrote site {site.site_id} to {out_dir}")


def register(city_app: typer.Typer) -> None:
    """Add the ``partitions`` and ``site`` commands to ``city_app``."""
    city_app.command("partitions")(partitions)
    city_app.command("site")(own_site)
