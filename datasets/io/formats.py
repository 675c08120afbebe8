"""Which file formats each modality is read from, and how a path names one."""

from __future__ import annotations

from pathlib import Path

from datasets.errors import CityDataError

DISTRICT_FORMATS = ("geojson", "shapefile", "geopackage", "geoparquet")
SENSOR_FORMATS = ("netcdf", "zarr", "csv")
IMAGE_FORMATS = ("folder",)
REPORT_FORMATS = ("csv", "jsonl")
EVENT_FORMATS = ("csv", "jsonl")

FORMAT_OF_SUFFIX = {
    ".geojson": "geojson",
    ".json": "geojson",
    ".shp": "shapefile",
    ".zip": "shapefile",
    ".gpkg": "geopackage",
    ".parquet": "geoparquet",
    ".geoparquet": "geoparquet",
    ".nc": "netcdf",
    ".nc4": "netcdf",
    ".zarr": "zarr",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def resolve_format(
    path: Path, format: str | None, allowed: tuple[str, ...], error: type[CityDataError]
) -> str:
    """The format named, or the one ``path``'s suffix implies; it must be in ``allowed``.

    Raises:
        CityDataError: (as ``error``) The format is unknown or not allowed here.
    """
    if format is None:
        format = FORMAT_OF_SUFFIX.get(path.suffix.lower())
        if format is None:
            raise error(
                path,
                f"cannot tell the format from {path.suffix!r}; name one of {allowed}",
                "format",
            )
    format = format.lower()
    if format not in allowed:
        raise error(path, f"format {format!r} is not one of {allowed}", row="format")
    return format
