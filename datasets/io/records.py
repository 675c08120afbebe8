"""Text reports and risk events from CSV or JSON lines.

Reports: ``district_id, timestamp, source, text``. Events: ``timestamp, domain,
kind`` and where they happened, either ``district_id`` or a point ``lat, lon``
(WGS84) that is placed in the district containing it (on a shared border, the
first such district in file order); a point outside every district is an error.
Every timestamp must state its time zone and comes back in UTC.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from datasets.errors import PointOutsideDistrictsError, RecordsFileError
from datasets.io.formats import EVENT_FORMATS, REPORT_FORMATS, resolve_format
from datasets.io.tables import RECORD_ERRORS, parse_timestamps, read_table, require_values
from datasets.schema import check_known_districts, validate_records

REPORT_COLUMNS = ["district_id", "timestamp", "source", "text"]
EVENT_COLUMNS = ["district_id", "timestamp", "domain", "kind"]
POINT_COLUMNS = ["lat", "lon"]


def read_reports(
    path: str | Path, district_ids: Collection[str] | None = None, format: str | None = None
) -> pd.DataFrame:
    """Read text reports and return them checked, timestamps in UTC.

    Args:
        path: A CSV or JSON-lines file with ``district_id, timestamp, source, text``.
        district_ids: The known districts; None skips that check.
        format: ``csv`` or ``jsonl``; by default the suffix decides.

    Raises:
        CityNotFoundError: The file does not exist.
        UnknownRecordDistrictError: A row names an unknown district.
        NaiveRecordTimestampError: A timestamp has no time zone.
        RecordsFileError: A column or value is missing (TruncatedRecordsFileError
            when the file was cut short).
    """
    path = Path(path)
    format = resolve_format(path, format, REPORT_FORMATS, RecordsFileError)
    table = read_table(path, format, REPORT_COLUMNS, RECORD_ERRORS)
    require_values(table, REPORT_COLUMNS, path, RECORD_ERRORS)
    if district_ids is not None:
        check_known_districts(table["district_id"], path, district_ids)
    table["timestamp"] = parse_timestamps(table["timestamp"], path, RECORD_ERRORS)
    table = table[REPORT_COLUMNS + [c for c in table.columns if c not in REPORT_COLUMNS]]
    known = table["district_id"].astype(str) if district_ids is None else district_ids
    return validate_records(_as_text(table, ["source", "text"]), path, REPORT_COLUMNS, known)


def read_events(
    path: str | Path, districts: gpd.GeoDataFrame, format: str | None = None
) -> pd.DataFrame:
    """Read risk events and return them checked, each with its ``district_id``.

    Args:
        path: A CSV (or JSON lines) with ``timestamp, domain, kind`` and either
            ``district_id`` or ``lat, lon``; with both, ``district_id`` is used.
        districts: The city's districts in EPSG:4326 (as `read_districts` gives).
        format: ``csv`` or ``jsonl``; by default the suffix decides.

    Returns:
        ``district_id, timestamp, domain, kind`` (then ``lat, lon`` and any other
        columns the file has).

    Raises:
        CityNotFoundError: The file does not exist.
        PointOutsideDistrictsError: A point lies outside every district.
        UnknownRecordDistrictError: A row names an unknown district.
        NaiveRecordTimestampError: A timestamp has no time zone.
        RecordsFileError: A column or value is missing or lat/lon are not
            coordinates (TruncatedRecordsFileError when the file was cut short).
    """
    path = Path(path)
    format = resolve_format(path, format, EVENT_FORMATS, RecordsFileError)
    table = read_table(path, format, ["timestamp", "domain", "kind"], RECORD_ERRORS)
    if "district_id" in table.columns:
        require_values(table, ["district_id"], path, RECORD_ERRORS)
    elif set(POINT_COLUMNS) <= set(table.columns):
        table["district_id"] = _district_of_points(table, districts, path)
    else:
        raise RecordsFileError(
            path, "events need a district_id column or lat and lon columns", row="header"
        )
    require_values(table, ["domain", "kind"], path, RECORD_ERRORS)
    ids = list(districts["district_id"])
    check_known_districts(table["district_id"], path, ids)
    table["timestamp"] = parse_timestamps(table["timestamp"], path, RECORD_ERRORS)
    table = table[EVENT_COLUMNS + [c for c in table.columns if c not in EVENT_COLUMNS]]
    return validate_records(_as_text(table, ["domain", "kind"]), path, EVENT_COLUMNS, ids)


def _district_of_points(table: pd.DataFrame, districts: gpd.GeoDataFrame, path: Path) -> np.ndarray:
    """The district containing each row's ``lat, lon`` point."""
    require_values(table, POINT_COLUMNS, path, RECORD_ERRORS)
    lat = pd.to_numeric(table["lat"], errors="coerce").to_numpy(dtype=float)
    lon = pd.to_numeric(table["lon"], errors="coerce").to_numpy(dtype=float)
    wrong = ~(np.abs(lat) <= 90) | ~(np.abs(lon) <= 180)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise RecordsFileError(
            path,
            f"lat {table['lat'].iloc[row]!r}, lon {table['lon'].iloc[row]!r} are not WGS84 degrees",
            row=row,
        )
    table["lat"], table["lon"] = lat, lon
    points = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    point, district = districts.to_crs("EPSG:4326").sindex.query(points, predicate="intersects")
    first = np.full(len(points), len(districts), dtype=np.int64)
    np.minimum.at(first, point, district)  # the first district, in file order, holding it
    outside = first == len(districts)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise PointOutsideDistrictsError(
            path, f"point lat {lat[row]}, lon {lon[row]} lies outside every district", row=row
        )
    return districts["district_id"].astype(str).to_numpy()[first]


def empty_records(columns: list[str]) -> pd.DataFrame:
    """A table of records with ``columns`` and no rows (UTC timestamps, text elsewhere)."""
    table = pd.DataFrame({column: pd.Series(dtype=str) for column in columns})
    table["timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
    if "frame" in table:
        table["frame"] = pd.Series(dtype="int64")
    return table


def _as_text(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for column in columns:
        table[column] = table[column].astype(str).str.strip()
    return table
