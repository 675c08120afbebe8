"""Sensor series from NetCDF, Zarr or a long CSV, as a ``(district, time)`` dataset.

Gridded files (NetCDF, Zarr) already hold one variable per channel over
``district`` and ``time``; their CF time units are decoded by xarray, an offset
in the units (``hours since 2024-06-01 00:00+09:00``) converted to UTC, and a
reference time without one read as UTC, as the CF conventions say. Time stamps
stored as text must state their time zone.

A long CSV holds one reading per row: ``district_id, timestamp, channel, value``.
Districts may be sampled at different intervals; the time axis is the union of
all their time stamps, and a district has NaN where it took no reading. An empty
``value`` (or ``nan``) is a gap; ``inf`` is an error.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from datasets.errors import (
    CityNotFoundError,
    InvalidSensorValueError,
    SensorsFileError,
    TruncatedSensorsFileError,
    UnknownSensorDistrictError,
)
from datasets.io.formats import SENSOR_FORMATS, resolve_format
from datasets.io.tables import SENSOR_ERRORS, parse_timestamps, read_csv, require_values
from datasets.io.truncation import binary_truncation
from datasets.schema import TIME_ZONE_ATTRIBUTE, check_known_districts, validate_sensors

LONG_COLUMNS = ("district_id", "timestamp", "channel", "value")
GAP_TEXTS = frozenset({"nan", "na", "n/a", "null"})


def empty_sensors() -> xr.Dataset:
    """A sensors dataset with no district, no time step and no channel."""
    return xr.Dataset(
        coords={
            "district": np.array([], dtype=str),
            "time": np.array([], dtype="datetime64[ns]"),
        },
        attrs={TIME_ZONE_ATTRIBUTE: "UTC"},
    )


def read_sensors(
    path: str | Path,
    district_ids: Collection[str] | None = None,
    format: str | None = None,
) -> xr.Dataset:
    """Read sensor series and return them checked, dims ``(district, time)``.

    Args:
        path: A NetCDF file, a Zarr store (folder) or a long CSV.
        district_ids: The known districts; readings of any other raise. None
            skips that check (reading sensors on their own).
        format: ``netcdf``, ``zarr`` or ``csv``; by default the suffix decides.

    Returns:
        One float variable per channel over ``(district, time)``; ``time`` is
        UTC stored as naive datetime64, like `City.sensors`.

    Raises:
        CityNotFoundError: The file does not exist.
        TruncatedSensorsFileError: The file was cut short.
        UnknownSensorDistrictError: A reading names an unknown district.
        NaiveSensorTimestampError: A time stamp has no time zone.
        InvalidSensorValueError: A value is infinite or not a number.
        SensorsFileError: Anything else that makes it unreadable.
    """
    path = Path(path)
    format = resolve_format(path, format, SENSOR_FORMATS, SensorsFileError)
    if not path.exists():
        raise CityNotFoundError(path, "sensors file does not exist")
    if format == "csv":
        sensors = _read_long_csv(path, district_ids)
    else:
        sensors = _decode_text_times(_read_gridded(path, format), path)
    if district_ids is None:
        district_ids = sensors["district"].values.astype(str)
    return validate_sensors(sensors, path, district_ids)


def _read_gridded(path: Path, format: str) -> xr.Dataset:
    try:
        if format == "zarr":
            with xr.open_zarr(path, consolidated=None) as store:
                return store.load()
        return xr.load_dataset(path)
    except Exception as error:  # HDF5, netCDF4 and zarr raise many kinds
        reason = binary_truncation(path)
        if reason is not None:
            raise TruncatedSensorsFileError(path, reason, row="end of file") from None
        label = "Zarr store" if format == "zarr" else "NetCDF file"
        raise SensorsFileError(path, f"not a readable {label} ({error})") from None


def _decode_text_times(sensors: xr.Dataset, path: Path) -> xr.Dataset:
    """Time stamps stored as text, parsed to UTC (they must state a time zone)."""
    if "time" not in sensors.coords or sensors["time"].dtype.kind not in "OSU":
        return sensors
    text = pd.Series(sensors["time"].values.astype(str))
    stamps = parse_timestamps(text, path, SENSOR_ERRORS)
    return sensors.assign_coords(time=stamps.dt.tz_convert(None).to_numpy())


def _read_long_csv(path: Path, district_ids: Collection[str] | None) -> xr.Dataset:
    table = read_csv(path, LONG_COLUMNS, SENSOR_ERRORS)
    require_values(table, ["district_id", "channel"], path, SENSOR_ERRORS)
    if district_ids is not None:
        check_known_districts(
            table["district_id"], path, district_ids, error=UnknownSensorDistrictError
        )
    stamps = parse_timestamps(table["timestamp"], path, SENSOR_ERRORS)
    values = _reading_values(table, stamps, path)
    long = pd.DataFrame(
        {
            "district": table["district_id"].astype(str).to_numpy(),
            "time": stamps.dt.tz_convert(None).to_numpy(),
            "channel": table["channel"].astype(str).str.strip().to_numpy(),
            "value": values,
        }
    )
    repeated = long.duplicated(["district", "time", "channel"]).to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        raise SensorsFileError(
            path, "a second reading of the same channel, district and time", row=row
        )
    if long.empty:
        return empty_sensors()
    channels = list(dict.fromkeys(long["channel"]))
    wide = long.set_index(["district", "time", "channel"])["value"].unstack("channel")
    sensors = xr.Dataset.from_dataframe(wide[channels])
    return sensors.assign_coords(district=sensors["district"].values.astype(str))


def _reading_values(table: pd.DataFrame, stamps: pd.Series, path: Path) -> np.ndarray:
    """Values as floats: empty or ``nan`` is a gap (NaN); text or ±inf raises."""
    raw = table["value"]
    gap = raw.isna().to_numpy() | raw.astype(str).str.strip().str.lower().isin(GAP_TEXTS)
    values = pd.to_numeric(raw.where(~gap, None), errors="coerce").to_numpy(dtype=float)
    wrong = (~gap & np.isnan(values)) | np.isinf(values)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        what = "infinite" if np.isinf(values[row]) else "not a number"
        raise InvalidSensorValueError(
            path,
            f"value {raw.iloc[row]!r} of channel {table['channel'].iloc[row]!r} for district "
            f"{table['district_id'].iloc[row]!r} at {stamps.iloc[row].isoformat()} is {what}; "
            "values must be finite or NaN (a gap)",
            row=row,
        )
    return values
