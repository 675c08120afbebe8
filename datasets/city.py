"""The City bundle: everything Kizashi knows about one city, and its folder on disk.

A City is the public district layer (polygons, static attributes, the contiguity
graph) plus the private observations that edge sites hold (sensor series, camera
frames, text reports, events). On disk it is a folder of open formats:

    city.json            name, time zone, time span, format version
    districts.parquet    GeoParquet, EPSG:4326
    graph.parquet        undirected edges (source, target, weight) by district id
    sensors.nc           NetCDF, dims (district, time), one variable per channel
    frames.npz           camera frames, one uint8 array (n, height, width, 3)
    images.parquet       frame index: district_id, timestamp, frame
    reports.parquet      district_id, timestamp, source, text
    events.parquet       district_id, timestamp, domain, kind

Saving writes into a temporary sibling folder and renames it into place, so a
failed save never leaves a half-written City.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import torch
import xarray as xr
from torch_geometric.data import Data

from datasets.atomic import write_folder_atomically
from datasets.errors import (
    CityDataError,
    CityNotFoundError,
    DistrictsFileError,
    RecordsFileError,
    SensorsFileError,
)
from datasets.graph import build_district_graph
from datasets.schema import (
    check_known_districts,
    validate_districts,
    validate_frames,
    validate_image_index,
    validate_records,
    validate_sensors,
)

FORMAT_VERSION = 1
RECORD_COLUMNS = {
    "images": ["district_id", "timestamp", "frame"],
    "reports": ["district_id", "timestamp", "source", "text"],
    "events": ["district_id", "timestamp", "domain", "kind"],
}


@dataclass
class City:
    """One city's districts, graph and observations.

    Attributes:
        name: Human-readable city name.
        districts: ``district_id``, ``name``, ``geometry`` (EPSG:4326) and public
            static attributes, one row per district; row order is node order.
        graph: District graph (`build_district_graph`), same order as districts.
        sensors: ``xarray.Dataset`` with dims ``(district, time)``, time in UTC;
            it may cover only some districts (an edge site's, or those with
            sensors), in any order.
        frames: Camera frames, uint8 ``(n_frames, height, width, 3)``.
        images: Frame index: ``district_id``, ``timestamp`` (UTC), ``frame`` (row
            in ``frames``).
        reports: Text reports: ``district_id``, ``timestamp``, ``source``, ``text``.
        events: Observed events: ``district_id``, ``timestamp``, ``domain``, ``kind``.
        timezone: IANA time zone of the city, for local-time display.
        meta: Free-form facts about the city (generator, seed, ...).
    """

    name: str
    districts: gpd.GeoDataFrame
    graph: Data
    sensors: xr.Dataset
    frames: np.ndarray
    images: pd.DataFrame
    reports: pd.DataFrame
    events: pd.DataFrame
    timezone: str = "UTC"
    meta: dict = field(default_factory=dict)

    @property
    def district_ids(self) -> list[str]:
        """District ids in node order."""
        return [str(value) for value in self.districts["district_id"]]

    @property
    def start(self) -> pd.Timestamp:
        """First time step of the sensor record (UTC)."""
        return pd.Timestamp(self.sensors["time"].values[0]).tz_localize("UTC")

    @property
    def end(self) -> pd.Timestamp:
        """End of the observed span: one sensor step after the last (UTC)."""
        times = pd.DatetimeIndex(self.sensors["time"].values)
        step = times[1] - times[0] if len(times) > 1 else pd.Timedelta(hours=1)
        return (times[-1] + step).tz_localize("UTC")

    def save(self, path: str | Path) -> Path:
        """Write the bundle to ``path`` atomically and return it."""
        return write_folder_atomically(path, self._write)

    def _write(self, folder: Path) -> None:
        info = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "timezone": self.timezone,
            "meta": self.meta,
        }
        (folder / "city.json").write_text(json.dumps(info, indent=2, default=str))
        self.districts.to_parquet(folder / "districts.parquet")
        _graph_frame(self.graph).to_parquet(folder / "graph.parquet")
        self.sensors.to_netcdf(folder / "sensors.nc")
        np.savez_compressed(folder / "frames.npz", frames=self.frames)
        for name in RECORD_COLUMNS:
            getattr(self, name).to_parquet(folder / f"{name}.parquet", index=False)

    @classmethod
    def load(cls, path: str | Path) -> City:
        """Read a bundle written by `save`, checking each file as it comes.

        The rules are those of `datasets.schema`, the same an import is held to.

        Raises:
            CityNotFoundError: The folder or one of its files does not exist.
            CityDataError: A file breaks a rule (a subclass names which).
        """
        folder = Path(path)
        if not folder.is_dir():
            raise CityNotFoundError(folder, "city folder does not exist")
        info = read_versioned_json(folder / "city.json", FORMAT_VERSION, "a City folder")
        districts = _read_districts(folder / "districts.parquet")
        graph = _read_graph(folder / "graph.parquet", districts)
        sensors = _read_sensors(folder / "sensors.nc", districts)
        frames = _read_frames(folder / "frames.npz")
        records = {
            name: _read_records(folder / f"{name}.parquet", columns, districts)
            for name, columns in RECORD_COLUMNS.items()
        }
        validate_image_index(records["images"], folder / "images.parquet", len(frames))
        return cls(
            name=info["name"],
            districts=districts,
            graph=graph,
            sensors=sensors,
            frames=frames,
            timezone=info.get("timezone", "UTC"),
            meta=info.get("meta", {}),
            **records,
        )

    def fingerprint(self) -> str:
        """A short hash of the data, recorded in every run that used this city."""
        digest = hashlib.sha256()
        digest.update(b"".join(shapely.to_wkb(self.districts.geometry.values)))
        digest.update(_canonical_hash(pd.DataFrame(self.districts.drop(columns="geometry"))))
        for name in self.sensors.data_vars:
            digest.update(np.nan_to_num(self.sensors[name].values).tobytes())
        digest.update(self.frames.tobytes())
        for name in RECORD_COLUMNS:
            digest.update(_canonical_hash(getattr(self, name)))
        return digest.hexdigest()[:16]


def _canonical_hash(table: pd.DataFrame) -> bytes:
    """Hash of a record table that ignores storage details (time unit, string dtype)."""
    canonical = pd.DataFrame(index=range(len(table)))
    for column in table.columns:
        values = table[column].reset_index(drop=True)
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            canonical[column] = values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
        else:
            canonical[column] = values.astype(str)
    return pd.util.hash_pandas_object(canonical, index=False).to_numpy().tobytes()


def read_districts_file(path: str | Path, crs: str | None = None) -> gpd.GeoDataFrame:
    """Read district polygons from any supported file; see `datasets.io.read_districts`.

    Kept here for callers of the first release; the reader lives in `datasets.io`,
    which builds Cities and so imports this module (hence the import inside).
    """
    from datasets.io.districts import read_districts

    return read_districts(path, crs=crs)


def read_versioned_json(path: Path, version: int, what: str) -> dict:
    """A JSON document of ours, checked for existence, syntax and format version.

    Args:
        path: The file.
        version: The ``format_version`` this code reads.
        what: What the file's folder is, for the missing-file message ("a City folder").
    """
    if not path.exists():
        raise CityNotFoundError(path, f"{path.name} missing: not {what}")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CityDataError(path, f"not valid JSON ({error.msg})", row=error.lineno) from None
    if info.get("format_version") != version:
        raise CityDataError(path, f"format_version must be {version}")
    return info


def _graph_frame(graph: Data) -> pd.DataFrame:
    ids = np.array(graph.district_ids, dtype=object)
    source, target = graph.edge_index.numpy()
    half = source < target
    return pd.DataFrame(
        {
            "source": ids[source[half]],
            "target": ids[target[half]],
            "weight": graph.edge_weight.numpy()[half],
        }
    )


def _read_districts(path: Path) -> gpd.GeoDataFrame:
    if not path.exists():
        raise CityNotFoundError(path, "districts file does not exist")
    try:
        frame = gpd.read_parquet(path)
    except Exception as error:  # pyarrow raises many kinds
        raise DistrictsFileError(path, f"not a readable GeoParquet file ({error})") from None
    return validate_districts(frame, path)


def _read_graph(path: Path, districts: gpd.GeoDataFrame) -> Data:
    edges = _read_table(path, ["source", "target", "weight"])
    ids = list(districts["district_id"])
    check_known_districts(edges["source"], path, ids)
    check_known_districts(edges["target"], path, ids)
    graph = build_district_graph(districts.iloc[:0])
    row_of = {district: row for row, district in enumerate(ids)}
    half = torch.tensor(
        [[row_of[s] for s in edges["source"]], [row_of[t] for t in edges["target"]]],
        dtype=torch.long,
    ).reshape(2, -1)
    graph.edge_index = torch.cat([half, half.flip(0)], dim=1)
    weight = torch.tensor(edges["weight"].to_numpy(), dtype=torch.float32)
    graph.edge_weight = torch.cat([weight, weight])
    graph.num_nodes = len(ids)
    graph.district_ids = ids
    return graph


def _read_sensors(path: Path, districts: gpd.GeoDataFrame) -> xr.Dataset:
    if not path.exists():
        raise CityNotFoundError(path, "sensors file does not exist")
    try:
        sensors = xr.load_dataset(path)
    except Exception as error:
        raise SensorsFileError(path, f"not a readable NetCDF file ({error})") from None
    return validate_sensors(sensors, path, districts["district_id"])


def _read_frames(path: Path) -> np.ndarray:
    if not path.exists():
        raise CityNotFoundError(path, "frames file does not exist")
    try:
        with np.load(path) as archive:
            frames = archive["frames"]
    except Exception as error:
        raise RecordsFileError(path, f"not a readable frames archive ({error})") from None
    return validate_frames(frames, path)


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise CityNotFoundError(path, "file does not exist")
    try:
        table = pd.read_parquet(path)
    except Exception as error:
        raise RecordsFileError(path, f"not a readable Parquet file ({error})") from None
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise RecordsFileError(path, f"missing columns {missing}", row="header")
    return table


def _read_records(path: Path, columns: list[str], districts: gpd.GeoDataFrame) -> pd.DataFrame:
    return validate_records(_read_table(path, columns), path, columns, districts["district_id"])
