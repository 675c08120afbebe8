"""A run's predictions as downloadable files: GeoJSON, CSV and GeoParquet.

Each function returns the file's bytes, so the page can hand it to
``st.download_button`` (which calls it only when the button is pressed). Times are
written as ISO 8601 UTC; the CSV carries the geometry as WKT, so it opens in any
spreadsheet and still maps in QGIS.
"""

from __future__ import annotations

import io

import geopandas as gpd
import pandas as pd


def _with_text_times(predictions: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A copy whose ``window_start`` is an ISO 8601 string (``2024-06-01T06:00:00Z``)."""
    frame = predictions.copy()
    frame["window_start"] = (
        pd.to_datetime(frame["window_start"]).dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    return frame


def predictions_geojson(predictions: gpd.GeoDataFrame) -> bytes:
    """A GeoJSON FeatureCollection (EPSG:4326), one feature per prediction row."""
    return _with_text_times(predictions).to_crs("EPSG:4326").to_json(drop_id=True).encode("utf-8")


def predictions_csv(predictions: gpd.GeoDataFrame) -> bytes:
    """CSV, one line per prediction row, the geometry as a WKT ``geometry`` column."""
    frame = pd.DataFrame(_with_text_times(predictions))
    frame["geometry"] = predictions.geometry.to_wkt()
    return frame.to_csv(index=False).encode("utf-8")


def predictions_geoparquet(predictions: gpd.GeoDataFrame) -> bytes:
    """GeoParquet, as the run stores it (times stay timestamps)."""
    buffer = io.BytesIO()
    predictions.to_parquet(buffer)
    return buffer.getvalue()


EXPORTS = {
    "GeoJSON": (predictions_geojson, "geojson", "application/geo+json"),
    "CSV": (predictions_csv, "csv", "text/csv"),
    "GeoParquet": (predictions_geoparquet, "parquet", "application/vnd.apache.parquet"),
}
