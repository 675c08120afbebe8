"""Building a City from users' files named in a short TOML spec.

A spec names the city and, per modality, a file and its format; paths are
relative to the spec's folder. Only ``[districts]`` is required; a modality left
out becomes an empty table. For example::

    name = "Kita City"
    timezone = "Asia/Tokyo"

    [districts]
    path = "wards_shp.zip"
    format = "shapefile"
    crs = "EPSG:6677"            # only for a file that states no CRS

    [sensors]
    path = "sensors_long.csv"    # netcdf, zarr or (long) csv
    format = "csv"

    [images]
    path = "cameras"             # a folder with index.csv (or index = "...")
    frame_size = 16

    [reports]
    path = "reports.jsonl"

    [events]
    path = "events_points.csv"

Everything is read and checked before anything is written, and `City.save`
writes atomically, so a failed import leaves no City folder behind and leaves an
existing one as it was.
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

from datasets.city import City
from datasets.errors import CityDataError, CityNotFoundError, SpecFileError
from datasets.graph import build_district_graph
from datasets.io.districts import read_districts
from datasets.io.images import DEFAULT_FRAME_SIZE, IMAGE_COLUMNS, empty_frames, read_images
from datasets.io.records import (
    EVENT_COLUMNS,
    REPORT_COLUMNS,
    empty_records,
    read_events,
    read_reports,
)
from datasets.io.sensors import empty_sensors, read_sensors

SECTION_KEYS = {
    "districts": {"path": str, "format": str, "crs": str, "layer": str},
    "sensors": {"path": str, "format": str},
    "images": {"path": str, "format": str, "index": str, "frame_size": int},
    "reports": {"path": str, "format": str},
    "events": {"path": str, "format": str},
}
TOP_KEYS = {"name": str, "timezone": str, "meta": dict}


@dataclass(frozen=True)
class SourceSpec:
    """One modality's file: where it is, its format and reader options."""

    path: Path
    format: str | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ImportSpec:
    """A parsed import spec; `sources` maps a modality to its file."""

    path: Path
    name: str
    timezone: str
    sources: dict[str, SourceSpec]
    meta: dict = field(default_factory=dict)


def read_spec(path: str | Path) -> ImportSpec:
    """Read and check an import spec.

    Raises:
        CityNotFoundError: The spec does not exist.
        SpecFileError: It is not TOML, lacks ``name``, ``timezone`` or
            ``[districts]``, has an unknown key or a value of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise CityNotFoundError(path, "import spec does not exist")
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        line = re.search(r"line (\d+)", str(error))
        where = f"line {line.group(1)}" if line else None
        raise SpecFileError(path, f"not valid TOML ({error})", row=where) from None
    _check_keys(spec, TOP_KEYS | dict.fromkeys(SECTION_KEYS, dict), path, prefix="")
    for key in ("name", "timezone", "districts"):
        if key not in spec:
            raise SpecFileError(path, "is required", row=key)
    _check_timezone(spec["timezone"], path)
    if spec.get("images", {}).get("frame_size", 1) < 1:
        raise SpecFileError(path, "must be a positive number of pixels", row="images.frame_size")
    sources = {}
    for section, keys in SECTION_KEYS.items():
        if section in spec:
            _check_keys(spec[section], keys, path, prefix=f"{section}.")
            if "path" not in spec[section]:
                raise SpecFileError(path, "is required", row=f"{section}.path")
            options = {k: v for k, v in spec[section].items() if k not in ("path", "format")}
            sources[section] = SourceSpec(
                path=path.parent / spec[section]["path"],
                format=spec[section].get("format"),
                options=options,
            )
    return ImportSpec(path, spec["name"], spec["timezone"], sources, spec.get("meta", {}))


def _check_keys(table: dict, allowed: dict[str, type], path: Path, prefix: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise SpecFileError(
                path, f"unknown key; expected one of {sorted(allowed)}", prefix + key
            )
        if not isinstance(value, allowed[key]) or isinstance(value, bool):
            raise SpecFileError(
                path, f"must be a {allowed[key].__name__}, got {value!r}", row=prefix + key
            )


def _check_timezone(name: str, path: Path) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SpecFileError(path, f"{name!r} is not an IANA time zone", row="timezone") from None


def import_city(spec_path: str | Path, out_dir: str | Path) -> City:
    """Build a City from the files a spec names and save it to ``out_dir``.

    Args:
        spec_path: The TOML spec (see the module docstring).
        out_dir: The City folder to write; an existing City folder there is
            replaced only once the new one is complete.

    Returns:
        The saved City.

    Raises:
        CityDataError: A file breaks a rule (a subclass names which), or
            ``out_dir`` exists and is not a City folder (it is never replaced).
    """
    spec = read_spec(spec_path)
    out_dir = Path(out_dir)
    _check_output_folder(out_dir)
    city = build_city(spec)
    city.save(out_dir)
    return city


def _check_output_folder(folder: Path) -> None:
    """Refuse to replace anything but a City folder (or an empty one)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise CityDataError(folder, "exists and is not a folder; refusing to replace it")
    if not (folder / "city.json").exists() and any(folder.iterdir()):
        raise CityDataError(
            folder, "exists and is not a City folder; refusing to replace it", row="city.json"
        )


def build_city(spec: ImportSpec) -> City:
    """Read every file the spec names, check it, and assemble the City (not saved)."""
    sources = spec.sources
    source = sources["districts"]
    districts = read_districts(source.path, format=source.format, **source.options)
    ids = list(districts["district_id"])
    if source := sources.get("sensors"):
        sensors = read_sensors(source.path, ids, format=source.format)
    else:
        sensors = empty_sensors()
    if source := sources.get("images"):
        frames, images = _read_images(source, ids, spec.path.parent)
    else:
        frames, images = empty_frames(DEFAULT_FRAME_SIZE), empty_records(IMAGE_COLUMNS)
    if source := sources.get("reports"):
        reports = read_reports(source.path, ids, format=source.format)
    else:
        reports = empty_records(REPORT_COLUMNS)
    if source := sources.get("events"):
        events = read_events(source.path, districts, format=source.format)
    else:
        events = empty_records(EVENT_COLUMNS)
    return City(
        name=spec.name,
        districts=districts,
        graph=build_district_graph(districts),
        sensors=sensors,
        frames=frames,
        images=images,
        reports=reports,
        events=events,
        timezone=spec.timezone,
        meta={
            **spec.meta,
            "imported_from": str(spec.path.resolve()),
            "sources": {name: str(source.path.resolve()) for name, source in sources.items()},
        },
    )


def _read_images(source: SourceSpec, ids: list[str], spec_folder: Path):
    index = source.options.get("index")
    return read_images(
        source.path,
        index=spec_folder / index if index else None,
        district_ids=ids,
        frame_size=source.options.get("frame_size", DEFAULT_FRAME_SIZE),
        format=source.format,
    )
