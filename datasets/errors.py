"""The errors raised for bad city data, and the warning for data we repaired.

Every problem with a file a user hands us raises a subclass of `CityDataError`
that names the file, the row or key, and the rule that was broken, so the command
line can print one clear line instead of a traceback.

Errors come in two families, so callers can catch by either:

- by file: `DistrictsFileError`, `SensorsFileError`, `RecordsFileError` (reports,
  images, events, graph edges), `SpecFileError` (the import spec);
- by rule: `TruncatedFileError`, `UnknownDistrictError`, `NaiveTimestampError`
  hold for several kinds of file, so the class raised for one kind inherits from
  both, e.g. `UnknownRecordDistrictError(UnknownDistrictError, RecordsFileError)`.
  Rules that only one kind of file can break subclass that file's error directly.
"""

from __future__ import annotations

from numbers import Integral
from pathlib import Path


class CityDataError(Exception):
    """A city file or folder breaks a rule of the City bundle.

    Args:
        path: The file or folder at fault.
        rule: The rule that was broken, in plain words.
        row: The row (an int: 0-based data row, header not counted) or the key
            (a str such as ``"column 'district_id'"``) at fault, when there is one.
    """

    def __init__(self, path: str | Path, rule: str, row: object | None = None) -> None:
        self.path = Path(path)
        self.rule = rule
        self.row = row
        if row is None:
            where = f"{self.path}"
        elif isinstance(row, Integral) and not isinstance(row, bool):
            where = f"{self.path} (row {row})"
        else:
            where = f"{self.path} ({row})"
        super().__init__(f"{where}: {rule}")

    def __reduce__(self):
        """Pickle with the constructor's arguments (errors cross process pools)."""
        return (type(self), (self.path, self.rule, self.row))


class CityDataWarning(UserWarning):
    """City data broke a rule we could repair (e.g. an invalid polygon); says file and row."""


class CityNotFoundError(CityDataError):
    """The city folder, or a file it must hold, does not exist."""


class DistrictsFileError(CityDataError):
    """The districts file cannot be read or is not valid district polygons."""


class SensorsFileError(CityDataError):
    """The sensors file cannot be read or has the wrong dimensions."""


class RecordsFileError(CityDataError):
    """A table of records (reports, images, events) is unreadable or inconsistent."""


class SpecFileError(CityDataError):
    """The import spec (TOML) is unreadable, incomplete or names an unknown format."""


# Rules that several kinds of file can break.


class TruncatedFileError(CityDataError):
    """A file ends before its format says it should (cut off in a copy or download)."""


class UnknownDistrictError(CityDataError):
    """A row names a district that the districts file does not have."""


class NaiveTimestampError(CityDataError):
    """A timestamp has no time zone, so the instant it names is ambiguous."""


# Districts file.


class MissingCRSError(DistrictsFileError):
    """The districts file has no coordinate reference system and none was given."""


class DuplicateDistrictError(DistrictsFileError):
    """Two rows of the districts file share a ``district_id``."""


class InvalidGeometryError(DistrictsFileError):
    """A district geometry is not a polygon, or is invalid beyond repair."""


class TruncatedDistrictsFileError(TruncatedFileError, DistrictsFileError):
    """The districts file is cut short."""


# Sensors file.


class InvalidSensorValueError(SensorsFileError):
    """A sensor value is infinite or not a number (NaN, a gap, is allowed)."""


class TruncatedSensorsFileError(TruncatedFileError, SensorsFileError):
    """The sensors file is cut short."""


class UnknownSensorDistrictError(UnknownDistrictError, SensorsFileError):
    """The sensors name a district that the districts file does not have."""


class NaiveSensorTimestampError(NaiveTimestampError, SensorsFileError):
    """A sensor time stamp has no time zone."""


# Records: reports, images, events, graph edges.


class UnreadableImageError(RecordsFileError):
    """A camera image is missing or cannot be decoded."""


class TruncatedRecordsFileError(TruncatedFileError, RecordsFileError):
    """A table of records is cut short."""


class UnknownRecordDistrictError(UnknownDistrictError, RecordsFileError):
    """A record names a district that the districts file does not have."""


class PointOutsideDistrictsError(UnknownRecordDistrictError):
    """An event's point (lat, lon) lies outside every district."""


class NaiveRecordTimestampError(NaiveTimestampError, RecordsFileError):
    """A record's timestamp has no time zone."""
