"""``kizashi city import`` and ``kizashi city check``: bring users' files in, and look.

`import_city_command` builds a City folder from a TOML spec (see
`datasets.io.spec`); `check_city_command` loads a City folder under the same
rules. Both print what the city holds: districts and CRS, time span, sensor
channels and their coverage, frames, reports and events per domain. Bad data
ends as one red line naming file, row and rule, with exit code 2; repaired data
(an invalid polygon) is reported as a yellow warning line.

`register` adds both commands to a typer app (the ``city`` group of the CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from datasets import City
from datasets.io import import_city
from pipelines.guard import guarded

console = Console()


def import_city_command(
    spec: Annotated[Path, typer.Argument(help="TOML spec naming the city's files.")],
    out: Annotated[Path, typer.Argument(help="City folder to write.")],
) -> None:
    """Import a city from the files a spec names, check them, and save a City folder."""
    city = guarded(lambda: import_city(spec, out))
    console.print(f"[green]imported[/green] {escape(city.name)} -> {escape(str(out))}")
    console.print(city_summary(city))


def check_city_command(
    folder: Annotated[Path, typer.Argument(help="City folder to check.")],
) -> None:
    """Load a City folder under the import rules and show what it holds."""
    city = guarded(lambda: City.load(folder))
    console.print(f"[green]ok[/green] {escape(str(folder))}")
    console.print(city_summary(city))


def register(city_app: typer.Typer) -> None:
    """Add ``import SPEC OUT`` and ``check DIR`` to ``city_app``."""
    city_app.command("import")(import_city_command)
    city_app.command("check")(check_city_command)


def city_summary(city: City) -> Group:
    """Tables of what a city holds, for the terminal."""
    overview = Table(box=box.SIMPLE, show_header=False, title=city.name)
    overview.add_column("what", style="bold")
    overview.add_column("value")
    overview.add_row("districts", str(len(city.districts)))
    overview.add_row("CRS", str(city.districts.crs.to_string() if city.districts.crs else "-"))
    overview.add_row("time zone", city.timezone)
    overview.add_row("time span", _time_span(city))
    overview.add_row("frames", _frames_text(city))
    overview.add_row("reports", _reports_text(city.reports))
    overview.add_row("events", _events_text(city.events))
    return Group(overview, _sensor_table(city))


def _time_span(city: City) -> str:
    """First and last instant seen in any modality, in UTC."""
    stamps = [pd.DatetimeIndex(city.sensors["time"].values).tz_localize("UTC")]
    for table in (city.images, city.reports, city.events):
        stamps.append(pd.DatetimeIndex(table["timestamp"]).tz_convert("UTC"))
    seen = [index for index in stamps if len(index)]
    if not seen:
        return "-"
    first = min(index.min() for index in seen)
    last = max(index.max() for index in seen)
    hours = (last - first) / pd.Timedelta(hours=1)
    length = f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"
    return f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC ({length})"


def _sensor_table(city: City) -> Table:
    """Per channel: districts with any reading, and the share present where covered."""
    sensors = city.sensors
    steps = sensors.sizes.get("time", 0)
    table = Table(title=f"sensors: {len(sensors.data_vars)} channels, {steps} time steps")
    for column in ("channel", "districts", "readings present where covered"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for name, variable in sensors.data_vars.items():
        present = ~np.isnan(np.asarray(variable.values, dtype=float))
        with_any = int(present.any(axis=1).sum()) if present.size else 0
        share = present.mean() if present.size else 0.0
        table.add_row(name, f"{with_any}/{len(city.districts)}", f"{share:.0%}")
    return table


def _frames_text(city: City) -> str:
    if not len(city.frames):
        return "0"
    height, width = city.frames.shape[1:3]
    cameras = city.images["district_id"].nunique()
    return f"{len(city.frames)} ({height}x{width} px) from {cameras} districts"


def _reports_text(reports: pd.DataFrame) -> str:
    if reports.empty:
        return "0"
    sources = ", ".join(f"{k} {v}" for k, v in reports["source"].value_counts().items())
    return f"{len(reports)} ({sources})"


def _events_text(events: pd.DataFrame) -> str:
    if events.empty:
        return "0"
    counts = events["domain"].value_counts().sort_index()
    return f"{len(events)} ({', '.join(f'{domain} {n}' for domain, n in counts.items())})"
