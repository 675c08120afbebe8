"""Users' text tables (CSV, JSON lines) read with errors that name the row.

pandas fills a short row with NaN and reads ``"2024-06-01 09:00"`` as if it were
UTC; both would hide a broken file. So tables are read with the `csv` and `json`
modules, every field as text, and each rule is checked row by row. Rows are
counted from 0 without the header and blank lines, as in the table pandas
builds.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from datasets.errors import (
    CityDataError,
    CityNotFoundError,
    NaiveRecordTimestampError,
    NaiveSensorTimestampError,
    NaiveTimestampError,
    RecordsFileError,
    SensorsFileError,
    TruncatedFileError,
    TruncatedRecordsFileError,
    TruncatedSensorsFileError,
)
from datasets.io.truncation import json_ran_out

# Text after the date part that states a time zone: "Z", "+09:00", "-0500", "+09".
TIME_ZONE_SUFFIX = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
DATE_LENGTH = len("2024-06-01")
TABLE_FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class TableErrors:
    """The named errors a table reader raises, by the kind of file it reads."""

    malformed: type[CityDataError]
    truncated: type[TruncatedFileError]
    naive: type[NaiveTimestampError]


RECORD_ERRORS = TableErrors(RecordsFileError, TruncatedRecordsFileError, NaiveRecordTimestampError)
SENSOR_ERRORS = TableErrors(SensorsFileError, TruncatedSensorsFileError, NaiveSensorTimestampError)


def read_table(
    path: Path, format: str, columns: Sequence[str], errors: TableErrors
) -> pd.DataFrame:
    """Read a CSV or JSON-lines table whose every row has ``columns`` (as text)."""
    if format == "jsonl":
        return read_jsonl(path, columns, errors)
    return read_csv(path, columns, errors)


def read_text(path: Path, errors: TableErrors) -> str:
    """The file's UTF-8 text (a leading byte-order mark dropped, as Excel writes one)."""
    if not path.exists():
        raise CityNotFoundError(path, "file does not exist")
    if not path.is_file():
        raise errors.malformed(path, "is a folder, expected a file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise errors.malformed(
            path, f"not UTF-8 text ({error.reason})", row=f"byte {error.start}"
        ) from None


def read_csv(path: Path, columns: Sequence[str], errors: TableErrors) -> pd.DataFrame:
    """Read a comma-separated table with a header; empty fields become missing values.

    Raises:
        CityNotFoundError: The file does not exist.
        TruncatedFileError: (as ``errors.truncated``) The last row stops early.
        CityDataError: (as ``errors.malformed``) A column is missing or a row
            has the wrong number of fields.
    """
    text = read_text(path, errors)
    reader = csv.reader(io.StringIO(text), strict=True)
    rows: list[list[str]] = []
    try:
        header = [name.strip() for name in next(reader, [])]
        _check_columns(header, columns, path, errors)
        for fields in reader:
            if not fields:
                continue
            if len(fields) != len(header):
                at_end = reader.line_num == len(text.splitlines()) and not text.endswith("\n")
                if at_end and len(fields) < len(header):
                    raise errors.truncated(
                        path,
                        f"the last row stops after {len(fields)} of {len(header)} fields: "
                        "the file was cut short",
                        row=len(rows),
                    )
                raise errors.malformed(
                    path, f"has {len(fields)} fields, the header has {len(header)}", row=len(rows)
                )
            rows.append(fields)
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise errors.truncated(
                path, "a quoted field never closes: the file was cut short", row=len(rows)
            ) from None
        raise errors.malformed(path, f"not valid CSV ({error})", row=len(rows)) from None
    table = pd.DataFrame(rows, columns=header, dtype=object)
    return table.where(table != "", None)


def read_jsonl(path: Path, columns: Sequence[str], errors: TableErrors) -> pd.DataFrame:
    """Read JSON lines: one object per line with at least ``columns``.

    Raises:
        CityNotFoundError: The file does not exist.
        TruncatedFileError: (as ``errors.truncated``) The last line stops early.
        CityDataError: (as ``errors.malformed``) A line is not a JSON object or
            lacks a column.
    """
    text = read_text(path, errors)
    lines = [line for line in text.splitlines() if line.strip()]
    records = []
    for row, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if row == len(lines) - 1 and not text.endswith("\n") and json_ran_out(line, error):
                raise errors.truncated(
                    path, "the last line stops early: the file was cut short", row=row
                ) from None
            raise errors.malformed(path, f"not valid JSON ({error.msg})", row=row) from None
        if not isinstance(record, dict):
            raise errors.malformed(path, "must be a JSON object", row=row)
        missing = [column for column in columns if column not in record]
        if missing:
            raise errors.malformed(path, f"missing keys {missing}", row=row)
        records.append(record)
    table = pd.DataFrame.from_records(records, columns=_keys_in_order(records, columns))
    return table.astype(object).where(table.notna(), None)


def _keys_in_order(records: list[dict], columns: Sequence[str]) -> list[str]:
    keys = dict.fromkeys(columns)
    for record in records:
        keys.update(dict.fromkeys(record))
    return list(keys)


def _check_columns(
    header: list[str], columns: Sequence[str], path: Path, errors: TableErrors
) -> None:
    if not header:
        raise errors.malformed(path, "the file is empty; expected a header row", row="header")
    missing = [column for column in columns if column not in header]
    if missing:
        raise errors.malformed(path, f"missing columns {missing}", row="header")


def require_values(
    table: pd.DataFrame, columns: Sequence[str], path: Path, errors: TableErrors
) -> None:
    """Raise ``errors.malformed`` naming the first row where one of ``columns`` is empty."""
    for column in columns:
        values = table[column]
        empty = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            raise errors.malformed(path, f"{column} is empty", row=int(np.flatnonzero(empty)[0]))


def parse_timestamps(values: pd.Series, path: Path, errors: TableErrors) -> pd.Series:
    """Parse ISO 8601 text that states its time zone into UTC timestamps.

    Args:
        values: One timestamp text per row, e.g. ``2024-06-01T09:00:00+09:00``.
        path: The file, named in errors.
        errors: Which named errors to raise.

    Returns:
        ``datetime64[..., UTC]`` values, index kept.

    Raises:
        CityDataError: (as ``errors.malformed``) A timestamp is missing or not
            ISO 8601.
        NaiveTimestampError: (as ``errors.naive``) One states no time zone.
    """
    require_values(pd.DataFrame({"timestamp": values}), ["timestamp"], path, errors)
    text = values.astype(str).str.strip()
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise errors.malformed(path, f"{text.iloc[row]!r} is not an ISO 8601 timestamp", row=row)
    naive = ~text.str[DATE_LENGTH:].str.contains(TIME_ZONE_SUFFIX).to_numpy(dtype=bool)
    if naive.any():
        row = int(np.flatnonzero(naive)[0])
        raise errors.naive(
            path,
            f"timestamp {text.iloc[row]!r} has no time zone; write it like "
            "2024-06-01T09:00:00+09:00 or 2024-06-01T00:00:00Z",
            row=row,
        )
    return parsed
