"""District polygons made safe to use: only polygons, valid ones, in the right place.

Real ward files carry self-intersecting rings (a digitising slip, a bow-tie) that
break contiguity and areas. `shapely.make_valid` repairs them without moving a
vertex; we keep only the polygonal part of its result and say so with a
`CityDataWarning`, so the user can fix the source. Points or lines where a
district should be, and rings with no area, cannot be repaired and raise.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from datasets.errors import CityDataWarning, InvalidGeometryError

POLYGON_TYPES = ("Polygon", "MultiPolygon")


def valid_polygons(geometries: gpd.GeoSeries, path: Path) -> gpd.GeoSeries:
    """Polygons as given, invalid ones repaired with `shapely.make_valid` (and a warning).

    Raises:
        InvalidGeometryError: A geometry is empty, not a polygon, or has no area
            left after repair.
    """
    fixed = list(geometries.values)
    for row, geometry in enumerate(fixed):
        if geometry is None or geometry.is_empty:
            raise InvalidGeometryError(path, "geometry is empty", row=row)
        if geometry.geom_type not in POLYGON_TYPES:
            raise InvalidGeometryError(
                path,
                f"geometry must be a Polygon or MultiPolygon, got {geometry.geom_type}",
                row=row,
            )
        if geometry.is_valid:
            continue
        reason = shapely.is_valid_reason(geometry)
        repaired = _repair_polygon(geometry)
        if repaired is None:
            raise InvalidGeometryError(
                path, f"invalid polygon ({reason}) that make_valid cannot repair", row=row
            )
        warnings.warn(
            f"{path} (row {row}): invalid polygon ({reason}) repaired with shapely.make_valid",
            CityDataWarning,
            stacklevel=4,
        )
        fixed[row] = repaired
    return gpd.GeoSeries(fixed, index=geometries.index, crs=geometries.crs, name=geometries.name)


def _repair_polygon(geometry: shapely.Geometry) -> shapely.Geometry | None:
    """The polygonal part of ``make_valid(geometry)``; None when no area is left."""
    repaired = shapely.make_valid(geometry, method="structure", keep_collapsed=False)
    polygons = [
        part
        for piece in shapely.get_parts(repaired)
        for part in shapely.get_parts(piece)
        if part.geom_type == "Polygon" and part.area > 0
    ]
    if not polygons:
        return None
    return polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)


def check_lonlat_range(geometries: gpd.GeoSeries, path: Path, source_crs: str) -> None:
    """Raise if a reprojected geometry leaves longitude/latitude: a sign of a wrong CRS."""
    bounds = geometries.bounds.to_numpy()
    outside = (
        (bounds[:, 0] < -180) | (bounds[:, 2] > 180) | (bounds[:, 1] < -90) | (bounds[:, 3] > 90)
    )
    if outside.any():
        raise InvalidGeometryError(
            path,
            f"coordinates fall outside longitude/latitude when read as {source_crs}; "
            "is the CRS right?",
            row=int(np.flatnonzero(outside)[0]),
        )
