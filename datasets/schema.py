"""The rules of a City bundle, checked the same way on import and on load.

Readers (`datasets.io` for users' files, `City.load` for our own folder) turn a
file into a frame, dataset or array and hand it here with the path it came from,
so every broken rule raises a named error (see `datasets.errors`) that says which
file, which row or key, and which rule. What can be repaired safely (an invalid
polygon) is repaired, with a `CityDataWarning` that says the same.

The rules:

- districts: a CRS is present (or given); ``district_id`` present, non-empty and
  unique; geometries are polygons, valid or repairable; stored in EPSG:4326;
- sensors: dims ``(district, time)``; one numeric variable per channel; the
  ``district`` coordinate names known districts without repeats (a subset, in any
  order); ``time`` is datetime (UTC, stored naive), unique; values finite or NaN;
- records (reports, images, events, graph edges): required columns present,
  every ``district_id`` known, timestamps time-zone aware (converted to UTC);
- frames: uint8 ``(n, height, width, 3)``; the image index points inside them.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS
from pyproj.exceptions import CRSError

from datasets.errors import (
    DistrictsFileError,
    DuplicateDistrictError,
    InvalidSensorValueError,
    MissingCRSError,
    NaiveRecordTimestampError,
    RecordsFileError,
    SensorsFileError,
    UnknownDistrictError,
    UnknownRecordDistrictError,
    UnknownSensorDistrictError,
)
from datasets.polygons import check_lonlat_range, valid_polygons

STORAGE_CRS = "EPSG:4326"
SENSOR_DIMS = ("district", "time")
TIME_ZONE_ATTRIBUTE = "time_zone_of_time_coordinate"


def validate_districts(
    frame: gpd.GeoDataFrame, path: str | Path, crs: str | None = None
) -> gpd.GeoDataFrame:
    """Check district polygons, repair what is safe, and return them in EPSG:4326.

    Args:
        frame: Polygons as read from ``path``.
        path: The file they came from, named in every error.
        crs: CRS of the coordinates when the file states none (e.g.
            ``"EPSG:6677"``); if the file states one, the two must agree.

    Returns:
        A new frame in EPSG:4326 with ``district_id`` as str and a ``name``
        (the id when the file has none), rows in file order.

    Raises:
        MissingCRSError: No CRS in the file and none given.
        DuplicateDistrictError: A ``district_id`` repeats.
        InvalidGeometryError: A geometry is empty, not a polygon, invalid beyond
            repair, or lands outside longitude/latitude after reprojection.
        DistrictsFileError: ``district_id`` is missing or empty, or ``crs`` is
            not a CRS or contradicts the file's.
    """
    path = Path(path)
    frame = _with_crs(frame.reset_index(drop=True), path, crs)
    if "district_id" not in frame.columns:
        raise DistrictsFileError(path, "missing column 'district_id'", row="header")
    frame["district_id"] = _district_ids(frame["district_id"], path)
    frame = frame.set_geometry(valid_polygons(frame.geometry, path))
    if "name" not in frame.columns:
        frame["name"] = frame["district_id"]
    source_crs = frame.crs.to_string()
    frame = frame.to_crs(STORAGE_CRS)
    check_lonlat_range(frame.geometry, path, source_crs)
    return frame


def _with_crs(frame: gpd.GeoDataFrame, path: Path, crs: str | None) -> gpd.GeoDataFrame:
    try:
        given = CRS.from_user_input(crs) if crs is not None else None
    except CRSError as error:
        raise DistrictsFileError(path, f"crs={crs!r} is not a CRS ({error})", row="crs") from None
    if frame.crs is None:
        if given is None:
            raise MissingCRSError(
                path,
                "districts have no coordinate reference system; give one (crs='EPSG:...')",
                row="crs",
            )
        return frame.set_crs(given)
    if given is not None and not frame.crs.equals(given):
        raise DistrictsFileError(
            path, f"the file's CRS {frame.crs.to_string()} differs from crs={crs!r}", row="crs"
        )
    return frame


def _district_ids(values: pd.Series, path: Path) -> pd.Series:
    missing = values.isna().to_numpy()
    ids = values.astype(str).str.strip()
    empty = missing | (ids == "").to_numpy()
    if empty.any():
        raise DistrictsFileError(path, "district_id is empty", row=int(np.flatnonzero(empty)[0]))
    first_row: dict[str, int] = {}
    for row, district in enumerate(ids):
        if district in first_row:
            raise DuplicateDistrictError(
                path,
                f"district_id {district!r} must be unique (also at row {first_row[district]})",
                row=row,
            )
        first_row[district] = row
    return ids


def validate_sensors(
    sensors: xr.Dataset, path: str | Path, district_ids: Collection[str]
) -> xr.Dataset:
    """Check a sensors dataset and return it as ``(district, time)``, time sorted.

    Args:
        sensors: One variable per channel over dims ``district`` and ``time``
            (either order); ``time`` already decoded to datetime (UTC, naive).
        path: The file it came from, named in every error.
        district_ids: The known districts; the sensors may cover any subset.

    Raises:
        SensorsFileError: Wrong dims, a variable not numeric or not over
            ``(district, time)``, a repeated district or time step, or a time
            coordinate that is not datetime.
        UnknownSensorDistrictError: The ``district`` coordinate names an
            unknown district.
        InvalidSensorValueError: A value is +inf or -inf.
    """
    path = Path(path)
    if set(sensors.dims) != set(SENSOR_DIMS) or not set(SENSOR_DIMS) <= set(sensors.coords):
        raise SensorsFileError(
            path,
            f"dims and coordinates must be (district, time), got dims {tuple(sensors.dims)}",
            row="dims",
        )
    for name, variable in sensors.data_vars.items():
        if set(variable.dims) != set(SENSOR_DIMS):
            raise SensorsFileError(
                path,
                f"must have dims (district, time), has {variable.dims}",
                row=f"variable {name!r}",
            )
        if not (np.issubdtype(variable.dtype, np.number) or variable.dtype == bool):
            raise SensorsFileError(
                path, f"must be numeric, is {variable.dtype}", row=f"variable {name!r}"
            )
    names = sensors["district"].values.astype(str)
    _check_sensor_districts(names, path, district_ids)
    times = sensors["time"].values
    if not np.issubdtype(times.dtype, np.datetime64):
        raise SensorsFileError(path, f"must be datetime, is {times.dtype}", row="coordinate 'time'")
    _check_unique_times(times, path)
    sensors = sensors.transpose(*SENSOR_DIMS).assign_coords(district=names).sortby("time")
    _check_finite(sensors, path)
    return sensors.assign_attrs({TIME_ZONE_ATTRIBUTE: "UTC"})


def _check_sensor_districts(names: np.ndarray, path: Path, district_ids: Collection[str]) -> None:
    known = set(district_ids)
    seen: set[str] = set()
    for row, name in enumerate(names):
        if name not in known:
            raise UnknownSensorDistrictError(
                path, f"district {name!r} is not in the districts file", row=f"district row {row}"
            )
        if name in seen:
            raise SensorsFileError(path, f"district {name!r} repeats", row=f"district row {row}")
        seen.add(name)


def _check_unique_times(times: np.ndarray, path: Path) -> None:
    missing = np.isnat(times)
    if missing.any():
        raise SensorsFileError(
            path, "time is missing", row=f"time row {np.flatnonzero(missing)[0]}"
        )
    _, first, counts = np.unique(times, return_index=True, return_counts=True)
    if (counts > 1).any():
        repeated = times[first[counts > 1][0]]
        raise SensorsFileError(
            path, f"time step {_utc_text(repeated)} repeats", row=f"time {_utc_text(repeated)}"
        )


def _check_finite(sensors: xr.Dataset, path: Path) -> None:
    for name, variable in sensors.data_vars.items():
        values = variable.values
        if not np.issubdtype(values.dtype, np.floating):
            continue
        infinite = np.argwhere(np.isinf(values))
        if len(infinite):
            d, t = infinite[0]
            district = str(sensors["district"].values[d])
            time = _utc_text(sensors["time"].values[t])
            raise InvalidSensorValueError(
                path,
                f"channel {name!r} is {values[d, t]}; values must be finite or NaN (a gap)",
                row=f"district {district!r}, time {time}",
            )


def _utc_text(value: np.datetime64) -> str:
    return pd.Timestamp(value).tz_localize("UTC").isoformat()


def validate_records(
    table: pd.DataFrame,
    path: str | Path,
    columns: Collection[str],
    district_ids: Collection[str],
) -> pd.DataFrame:
    """Check a table of records and return it with timestamps in UTC.

    Args:
        table: Rows as read from ``path``.
        path: The file it came from, named in every error.
        columns: Columns it must have; ``district_id`` and ``timestamp`` among them.
        district_ids: The known districts.

    Raises:
        RecordsFileError: A column is missing, or a timestamp is missing or
            not a datetime.
        UnknownRecordDistrictError: A ``district_id`` is unknown or empty.
        NaiveRecordTimestampError: Timestamps have no time zone.
    """
    path = Path(path)
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise RecordsFileError(path, f"missing columns {missing}", row="header")
    check_known_districts(table["district_id"], path, district_ids)
    table["district_id"] = table["district_id"].astype(str)
    stamps = table["timestamp"]
    if not len(table):
        return table
    if not pd.api.types.is_datetime64_any_dtype(stamps):
        raise RecordsFileError(path, f"timestamp must be a datetime, is {stamps.dtype}", row=0)
    if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
        raise NaiveRecordTimestampError(path, "timestamps must be time-zone aware", row=0)
    if stamps.isna().any():
        raise RecordsFileError(
            path, "timestamp is missing", row=int(np.flatnonzero(stamps.isna().to_numpy())[0])
        )
    table["timestamp"] = stamps.dt.tz_convert("UTC")
    return table


def check_known_districts(
    values: pd.Series,
    path: str | Path,
    district_ids: Collection[str],
    error: type[UnknownDistrictError] = UnknownRecordDistrictError,
) -> None:
    """Raise ``error`` naming the first row whose district id is empty or unknown."""
    known = set(district_ids)
    unknown = values.isna().to_numpy() | ~values.astype(str).isin(known).to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise error(path, f"district_id {values.iloc[row]!r} is not a known district", row=row)


def validate_frames(frames: np.ndarray, path: str | Path) -> np.ndarray:
    """Check camera frames are uint8 ``(n, height, width, 3)``."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise RecordsFileError(
            path,
            f"frames must be uint8 (n, height, width, 3), got {frames.dtype} {frames.shape}",
            row="frames",
        )
    return frames


def validate_image_index(images: pd.DataFrame, path: str | Path, n_frames: int) -> None:
    """Check every ``frame`` of the image index points at one of ``n_frames`` frames."""
    frame = pd.to_numeric(images["frame"], errors="coerce").to_numpy(dtype=float)
    outside = np.isnan(frame) | (frame < 0) | (frame >= n_frames)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise RecordsFileError(
            path, f"frame {images['frame'].iloc[row]} is not one of the {n_frames} frames", row=row
        )
