"""Site folders: what each partner's machine holds, written once for a whole federation.

`write_federation` lays a partitioned city out as::

    out_dir/
      federation.json        the spec and every SiteInfo (``sites`` reads as a site plan)
      public/                a City bundle without private records: districts, graph,
                             city.json, and a sensors.nc with the time grid and channel
                             names but no districts; written once for all sites
      sites/site-000/
        site.json            the site's SiteInfo
        sensors.nc           its districts only, at the time steps it holds (coarse: every
                             10th step; scarce: its active days), its channels only
        frames.npz           its camera frames (uncompressed: noise-like frames barely
                             compress, and zlib would triple the write time)
        images.parquet, reports.parquet, events.parquet   its records, same schema as City

The files follow the City bundle's formats and rules, so `load_site` checks them
with the City readers and returns a `City` with every public district and the
graph, whose sensors sit on the public time grid with every channel (missing
ones all NaN), ready for `RiskSamples`. Everything is written into a hidden
sibling folder first and renamed into place, so a failed write leaves nothing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from datasets.atomic import write_folder_atomically
from datasets.city import (
    RECORD_COLUMNS,
    City,
    _read_frames,
    _read_records,
    _read_sensors,
    read_versioned_json,
)
from datasets.errors import CityNotFoundError, RecordsFileError
from datasets.partition import (
    Federation,
    SiteInfo,
    day_numbers,
    day_numbers_of_dates,
)

SITE_FORMAT_VERSION = 1
RECORD_TABLES = ("images", "reports", "events")


class PrivateDataSlicer:
    """Cuts one site's private data out of a city; indexes the city once for all sites."""

    def __init__(self, city: City) -> None:
        self.city = city
        sensors = city.sensors
        self.channels = [str(name) for name in sensors.data_vars]
        self.values = {name: sensors[name].values for name in self.channels}
        self.sensor_row = {name: i for i, name in enumerate(sensors["district"].values.astype(str))}
        self.time = sensors["time"].values
        self.time_day = day_numbers(pd.DatetimeIndex(self.time))
        self.rows: dict[str, dict[str, np.ndarray]] = {}
        self.day: dict[str, np.ndarray] = {}
        self.stamp: dict[str, np.ndarray] = {}
        for name in RECORD_TABLES:
            table = getattr(city, name)
            stamps = pd.DatetimeIndex(table["timestamp"])
            self.rows[name] = {
                str(key): rows
                for key, rows in table.groupby("district_id", sort=False).indices.items()
            }
            self.day[name] = day_numbers(stamps)
            self.stamp[name] = stamps.as_unit("ns").asi8

    def site_city(self, site: SiteInfo) -> City:
        """The site's private data with the city's public layer (shared, not copied)."""
        held_days = None if site.active_days is None else day_numbers_of_dates(site.active_days)
        rows = self._record_rows
        images = self._records("images", rows("images", site, held_days, site.no_cameras))
        frames = self.city.frames[images["frame"].to_numpy()]
        images["frame"] = np.arange(len(images), dtype=np.int64)
        return dataclasses.replace(
            self.city,
            sensors=self._sensors(site, held_days),
            frames=frames,
            images=images,
            reports=self._records("reports", rows("reports", site, held_days, site.no_reports)),
            events=self._records("events", rows("events", site, held_days, False, thin=False)),
            meta={**self.city.meta, "site_id": site.site_id},
        )

    def _sensors(self, site: SiteInfo, held_days: np.ndarray | None) -> xr.Dataset:
        rows, steps = self._sensor_rows(site, held_days)
        districts = self.city.sensors["district"].values.astype(str)[rows]
        missing = set(site.missing_channels)
        data = {
            name: (("district", "time"), self.values[name][rows][:, steps])
            for name in self.channels
            if name not in missing
        }
        coords = {"district": np.array(districts, dtype=str), "time": self.time[steps]}
        return xr.Dataset(data, coords=coords, attrs=self.city.sensors.attrs)

    def held_city(self, sites: list[SiteInfo]) -> City:
        """Everything the sites hold, in one place: the city as pooling their data gives it.

        A record is kept when some site holds it, a sensor reading when some
        site holds that district, step and channel; frames of districts whose
        sites have no cameras, and readings no site keeps, are gone. Samples cut
        from it carry every neighbour's data that some site holds: the data a
        centralised model would be trained on, had the partners pooled theirs.
        """
        values = {name: np.full_like(self.values[name], np.nan) for name in self.channels}
        rows = {name: [] for name in RECORD_TABLES}
        for site in sites:
            held_days = None if site.active_days is None else day_numbers_of_dates(site.active_days)
            districts, steps = self._sensor_rows(site, held_days)
            for name in set(self.channels) - set(site.missing_channels):
                values[name][np.ix_(districts, steps)] = self.values[name][np.ix_(districts, steps)]
            rows["images"].append(self._record_rows("images", site, held_days, site.no_cameras))
            rows["reports"].append(self._record_rows("reports", site, held_days, site.no_reports))
            rows["events"].append(self._record_rows("events", site, held_days, False, thin=False))
        sensors = self.city.sensors.copy(data={name: values[name] for name in self.channels})
        records = {
            name: self._records(name, np.unique(np.concatenate([np.zeros(0, np.int64), *parts])))
            for name, parts in rows.items()
        }
        return dataclasses.replace(self.city, sensors=sensors, **records)

    def _sensor_rows(self, site: SiteInfo, held_days: np.ndarray | None):
        districts = [name for name in site.districts if name in self.sensor_row]
        rows = np.array([self.sensor_row[name] for name in districts], dtype=np.int64)
        steps = np.ones(len(self.time), dtype=bool)
        if held_days is not None:
            steps &= np.isin(self.time_day, held_days)
        steps[np.arange(len(self.time)) % site.coarse_factor != 0] = False
        return rows, np.flatnonzero(steps)

    def _records(self, name: str, rows: np.ndarray) -> pd.DataFrame:
        return getattr(self.city, name).iloc[rows].reset_index(drop=True)

    def _record_rows(
        self,
        name: str,
        site: SiteInfo,
        held_days: np.ndarray | None,
        skip: bool,
        thin: bool = True,
    ) -> np.ndarray:
        empty = np.zeros(0, dtype=np.int64)
        parts = [] if skip else [self.rows[name].get(d, empty) for d in site.districts]
        kept = []
        for rows in parts:
            if held_days is not None:
                rows = rows[np.isin(self.day[name][rows], held_days)]
            if thin and site.coarse_factor > 1:
                rows = rows[np.argsort(self.stamp[name][rows], kind="stable")]
                rows = rows[:: site.coarse_factor]
            kept.append(rows)
        return np.sort(np.concatenate(kept)) if kept else empty


def public_city(city: City) -> City:
    """The public layer as a City: districts, graph, time grid and channel names only."""
    return dataclasses.replace(
        city,
        sensors=city.sensors.isel(district=slice(0, 0)).drop_encoding(),
        frames=city.frames[:0],
        images=city.images.iloc[:0],
        reports=city.reports.iloc[:0],
        events=city.events.iloc[:0],
        meta={**city.meta, "public_layer": True},
    )


def write_federation(federation: Federation, city: City, out_dir: str | Path) -> Path:
    """Write the public layer once and one private folder per site, atomically.

    An existing ``out_dir`` is replaced only once the new federation is complete.
    """

    def write(staging: Path) -> None:
        public_city(city).save(staging / "public")
        slicer = PrivateDataSlicer(city)
        for site in federation.sites:
            write_site(staging / "sites" / site.site_id, slicer.site_city(site), site)
        document = {"format_version": SITE_FORMAT_VERSION, "city": city.name}
        document.update(federation.to_dict())
        (staging / "federation.json").write_text(json.dumps(document, indent=1))

    return write_folder_atomically(out_dir, write)


def write_site(folder: Path, site_city: City, site: SiteInfo) -> None:
    """Write one site's folder (see the module docstring) from its private view of a city."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {"format_version": SITE_FORMAT_VERSION, "site": site.to_dict()}
    (folder / "site.json").write_text(json.dumps(info, indent=1))
    site_city.sensors.to_netcdf(folder / "sensors.nc")
    np.savez(folder / "frames.npz", frames=site_city.frames)
    for name in RECORD_TABLES:
        getattr(site_city, name).to_parquet(folder / f"{name}.parquet", index=False)


def read_federation(out_dir: str | Path) -> Federation:
    """The federation plan written by `write_federation`."""
    path = Path(out_dir) / "federation.json"
    if not path.exists():
        raise CityNotFoundError(path, "federation.json missing: not a federation folder")
    return Federation.from_dict(json.loads(path.read_text()))


def read_site_info(site_dir: str | Path) -> SiteInfo:
    """The `SiteInfo` stored in a site folder."""
    path = Path(site_dir) / "site.json"
    info = read_versioned_json(path, SITE_FORMAT_VERSION, "a site folder")
    return SiteInfo.from_dict(info["site"])


def load_site(site_dir: str | Path, public_dir: str | Path | City) -> tuple[City, SiteInfo]:
    """One site's view of the city: every public district and the graph, its own data.

    The sensors are put back on the public time grid (steps the site does not
    hold are NaN) with every public channel (channels it lacks are all NaN), so
    every site's samples have the same shape.

    Args:
        site_dir: The site's folder (``out_dir/sites/site-000``).
        public_dir: The public layer (``out_dir/public``), or that layer already
            loaded with `City.load`, so that many sites in one process share it.

    Raises:
        CityNotFoundError: A folder or file is missing.
        CityDataError: A file breaks a City bundle rule (named file and rule).
    """
    site_dir = Path(site_dir)
    public = public_dir if isinstance(public_dir, City) else City.load(public_dir)
    site = read_site_info(site_dir)
    sensors = _read_sensors(site_dir / "sensors.nc", public.districts)
    sensors = sensors.reindex(time=public.sensors["time"].values)
    for name in public.sensors.data_vars:
        if name not in sensors.data_vars:
            blank = np.full((sensors.sizes["district"], sensors.sizes["time"]), np.nan, np.float32)
            sensors[name] = (("district", "time"), blank)
    sensors = sensors[list(public.sensors.data_vars)]
    frames = _read_frames(site_dir / "frames.npz")
    records = {
        name: _read_records(site_dir / f"{name}.parquet", RECORD_COLUMNS[name], public.districts)
        for name in RECORD_TABLES
    }
    if len(records["images"]) and records["images"]["frame"].max() >= len(frames):
        raise RecordsFileError(site_dir / "images.parquet", "frame index beyond frames.npz")
    city = dataclasses.replace(
        public,
        sensors=sensors,
        frames=frames,
        meta={**_without_public_flag(public.meta), "site_id": site.site_id},
        **records,
    )
    return city, site


def _without_public_flag(meta: dict) -> dict:
    return {key: value for key, value in meta.items() if key != "public_layer"}
