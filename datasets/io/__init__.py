"""Importers: users' files in common formats, read and checked into City parts.

Each reader returns what `datasets.city.City` holds (a GeoDataFrame of districts,
an ``xarray.Dataset`` of sensors, frames and record tables) after checking it
against `datasets.schema`, so a bad file raises a named `CityDataError` that
says file, row and rule. `import_city` reads a TOML spec naming all the files
and saves the City atomically.
"""

from datasets.io.districts import read_districts
from datasets.io.formats import (
    DISTRICT_FORMATS,
    EVENT_FORMATS,
    IMAGE_FORMATS,
    REPORT_FORMATS,
    SENSOR_FORMATS,
)
from datasets.io.images import empty_frames, read_images
from datasets.io.records import empty_records, read_events, read_reports
from datasets.io.sensors import empty_sensors, read_sensors
from datasets.io.spec import ImportSpec, SourceSpec, build_city, import_city, read_spec

__all__ = [
    "DISTRICT_FORMATS",
    "EVENT_FORMATS",
    "IMAGE_FORMATS",
    "REPORT_FORMATS",
    "SENSOR_FORMATS",
    "ImportSpec",
    "SourceSpec",
    "build_city",
    "empty_frames",
    "empty_records",
    "empty_sensors",
    "import_city",
    "read_districts",
    "read_events",
    "read_images",
    "read_reports",
    "read_sensors",
    "read_spec",
]
