"""``kizashi city ...``: make a synthetic city and score its oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.defaults import DEFAULT_DAYS, DEFAULT_DISTRICTS

city_app = typer.Typer(no_args_is_help=True, help="Build, import, check and partition cities.")
console = Console()


@city_app.command("make")
def make(
    out: Annotated[Path, typer.Argument(help="City folder to write.")],
    districts: Annotated[int, typer.Option(help="Number of districts.")] = DEFAULT_DISTRICTS,
    days: Annotated[int, typer.Option(help="Days of hourly record.")] = DEFAULT_DAYS,
    seed: Annotated[int, typer.Option(help="Seed of every draw.")] = 0,
) -> None:
    """Draw a synthetic city and save it, with its hidden oracle beside the data."""
    from datasets.synthetic import make_city_and_oracle

    city, oracle = make_city_and_oracle(n_districts=districts, days=days, seed=seed)
    oracle.save(city.save(out))
    console.print(f"{city.name}: {len(city.events)} events, {len(city.reports)} reports -> {out}")


@city_app.command("oracle")
def oracle(
    city_dir: Annotated[Path, typer.Argument(help="A synthetic City folder (with oracle.npz).")],
    stride_hours: Annotated[int, typer.Option(help="Hours between windows.")] = 6,
    lookback_hours: Annotated[int, typer.Option(help="Context before each window.")] = 24,
) -> None:
    """Score the hidden rates on the test windows: the ceiling for every model."""
    from fedcore.site_data import DataSettings
    from pipelines.guard import guarded
    from pipelines.oracle import score_oracle

    settings = DataSettings(stride_hours=stride_hours, lookback_hours=lookback_hours)
    scores = guarded(lambda: score_oracle(city_dir, settings))
    table = Table(title=f"Oracle ceiling on the test windows of {city_dir}")
    for column in ("domain", "AUPRC", "AUROC", "Brier"):
        table.add_column(column)
    for name in (*settings.domains, "macro"):
        row = [scores.get(f"{metric}-{name}") for metric in ("auprc", "auroc", "brier")]
        table.add_row(name, *("-" if value is None else f"{value:.3f}" for value in row))
    console.print(table)


def _register_commands() -> None:
    """Add the import/check and partition commands, which live in their own modules."""
    from pipelines import city_io, partition_commands

    city_io.register(city_app)
    partition_commands.register(city_app)


_register_commands()
