"""The errors raised for bad city data.

Every problem with a file a user hands us raises a subclass of `CityDataError`
that names the file, the row or key, and the rule that was broken, so the command
line can print one clear line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class CityDataError(Exception):
    """A city file or folder breaks a rule of the City bundle.

    Args:
        path: The file or folder at fault.
        rule: The rule that was broken, in plain words.
        row: The row, key or field at fault, when there is one.
    """

    def __init__(self, path: str | Path, rule: str, row: object | None = None) -> None:
        self.path = Path(path)
        self.rule = rule
        self.row = row
        where = f"{self.path}" if row is None else f"{self.path} (row {row})"
        super().__init__(f"{where}: {rule}")


class CityNotFoundError(CityDataError):
    """The city folder, or a file it must hold, does not exist."""


class DistrictsFileError(CityDataError):
    """The districts file cannot be read or is not valid district polygons."""


class SensorsFileError(CityDataError):
    """The sensors file cannot be read or has the wrong dimensions."""


class RecordsFileError(CityDataError):
    """A table of records (reports, images, events) is unreadable or inconsistent."""
