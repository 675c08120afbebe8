"""District polygons from GeoJSON, Shapefile (plain or zipped), GeoPackage or GeoParquet.

Whatever the file's CRS, districts come back in EPSG:4326 with ``district_id``
(str), ``name`` and any other columns as public static attributes; the rules
they must meet are those of `datasets.schema.validate_districts`.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd

from datasets.errors import CityNotFoundError, DistrictsFileError, TruncatedDistrictsFileError
from datasets.io.formats import DISTRICT_FORMATS, resolve_format
from datasets.io.truncation import binary_truncation, geojson_truncated_row
from datasets.schema import validate_districts

# A Shapefile's field names stop at 10 characters, so district_id arrives cut.
SHAPEFILE_ID_COLUMN = "district_i"
FORMAT_LABELS = {
    "geojson": "GeoJSON",
    "shapefile": "Shapefile",
    "geopackage": "GeoPackage",
    "geoparquet": "GeoParquet",
}


def read_districts(
    path: str | Path,
    crs: str | None = None,
    format: str | None = None,
    layer: str | None = None,
) -> gpd.GeoDataFrame:
    """Read district polygons and return them checked, in EPSG:4326.

    Args:
        path: A ``.geojson``, ``.shp``, zipped Shapefile ``.zip``, ``.gpkg`` or
            GeoParquet ``.parquet`` file with a ``district_id`` column (and
            optionally ``name``).
        crs: CRS of the coordinates, needed when the file states none (a
            Shapefile without ``.prj``, a GeoParquet without CRS metadata).
        format: One of ``geojson``, ``shapefile``, ``geopackage``,
            ``geoparquet``; by default the suffix decides.
        layer: Layer to read from a file holding several.

    Raises:
        CityNotFoundError: The file does not exist.
        TruncatedDistrictsFileError: The file was cut short.
        MissingCRSError: No CRS in the file and none given.
        DuplicateDistrictError: A ``district_id`` repeats.
        InvalidGeometryError: A geometry is not a polygon or cannot be repaired.
        DistrictsFileError: Anything else that makes it unreadable.
    """
    path = Path(path)
    format = resolve_format(path, format, DISTRICT_FORMATS, DistrictsFileError)
    if not path.exists():
        raise CityNotFoundError(path, "districts file does not exist")
    try:
        frame = _read_frame(path, format, layer)
    except DistrictsFileError:
        raise
    except Exception as error:  # GDAL and pyarrow raise many kinds
        raise _unreadable(path, format, error) from None
    if format == "shapefile" and "district_id" not in frame and SHAPEFILE_ID_COLUMN in frame:
        frame = frame.rename(columns={SHAPEFILE_ID_COLUMN: "district_id"})
    return validate_districts(frame, path, crs=crs)


def _read_frame(path: Path, format: str, layer: str | None) -> gpd.GeoDataFrame:
    if format == "geoparquet":
        return gpd.read_parquet(path)
    source = f"zip://{path}" if path.suffix.lower() == ".zip" else str(path)
    if layer is None:
        layers = list(gpd.list_layers(source)["name"])
        if len(layers) > 1:
            raise DistrictsFileError(
                path, f"holds layers {layers}; name the one with the districts", row="layer"
            )
    return gpd.read_file(source, layer=layer)


def _unreadable(path: Path, format: str, error: Exception) -> DistrictsFileError:
    if format == "geojson":
        row = geojson_truncated_row(path.read_text(encoding="utf-8", errors="replace"))
        if row is not None:
            return TruncatedDistrictsFileError(
                path, f"the text stops inside feature {row}: the file was cut short", row=row
            )
    else:
        reason = binary_truncation(path)
        if reason is not None:
            return TruncatedDistrictsFileError(path, reason, row="end of file")
    return DistrictsFileError(path, f"not a readable {FORMAT_LABELS[format]} file ({error})")
