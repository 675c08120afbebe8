"""The one place the app reads run folders from.

A run is a folder ``<runs_dir>/<run_id>/`` holding ``manifest.json``,
``metrics.jsonl`` and ``predictions.parquet`` (GeoParquet, EPSG:4326, one row per
district, window and domain). The app only reads runs; it never writes or trains.

Everything here except `load_predictions` works without a Streamlit runtime, so
tests and scripts can call it directly. `load_predictions` adds ``st.cache_data``
keyed on the file's path and modification time, so a rewritten run reloads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import streamlit as st

RUNS_ENV_VAR = "KIZASHI_RUNS"
DEFAULT_RUNS_DIR = "runs"
MANIFEST_FILE = "manifest.json"
PREDICTIONS_FILE = "predictions.parquet"
PREDICTION_COLUMNS = (
    "district_id",
    "name",
    "window_start",
    "domain",
    "probability",
    "expected_count",
    "level",
    "geometry",
)


class RunFolderError(ValueError):
    """A run folder breaks the run contract; the message names the file and the rule."""


@dataclass(frozen=True)
class RunSummary:
    """What the run picker shows about one usable run.

    Attributes:
        run_id: Folder name and manifest ``run_id``.
        path: The run folder.
        kind: How the run was made (``"demo"``, ...).
        created: When the run was made, tz-aware UTC.
        city_name: The manifest's ``city.name`` (empty when absent).
        domains: Domain names the manifest lists.
    """

    run_id: str
    path: Path
    kind: str
    created: datetime
    city_name: str
    domains: tuple[str, ...]


def runs_dir() -> Path:
    """The folder holding run folders: ``$KIZASHI_RUNS``, else ``./runs``."""
    return Path(os.environ.get(RUNS_ENV_VAR) or DEFAULT_RUNS_DIR)


def is_usable_run(run_path: Path) -> bool:
    """Whether a folder has both files the app needs (manifest and predictions)."""
    return (run_path / MANIFEST_FILE).is_file() and (run_path / PREDICTIONS_FILE).is_file()


def load_manifest(run_path: Path) -> dict[str, Any]:
    """Read a run's ``manifest.json``.

    Raises:
        RunFolderError: The file is missing, is not JSON, or is not a JSON object.
    """
    path = Path(run_path) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path}: missing") from None
    except json.JSONDecodeError as error:
        raise RunFolderError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise RunFolderError(f"{path}: must hold a JSON object")
    return manifest


def parse_created(value: Any) -> datetime:
    """Turn a manifest ``created`` ISO-8601 string into a tz-aware UTC datetime.

    A naive time is taken as UTC; anything unparsable sorts as the oldest run.
    """
    try:
        created = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    if created.tzinfo is None:
        return created.replace(tzinfo=UTC)
    return created.astimezone(UTC)


def summarize_run(run_path: Path, manifest: dict[str, Any]) -> RunSummary:
    """Build the picker's view of a run from its folder and manifest."""
    city = manifest.get("city")
    return RunSummary(
        run_id=str(manifest.get("run_id") or run_path.name),
        path=run_path,
        kind=str(manifest.get("kind", "")),
        created=parse_created(manifest.get("created")),
        city_name=str(city.get("name", "")) if isinstance(city, dict) else "",
        domains=tuple(str(name) for name in manifest.get("domains", [])),
    )


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """All usable runs under ``runs_dir``, newest first by manifest ``created``.

    Folders without a manifest or predictions, or with an unreadable manifest, are
    skipped: a half-written run must not break the app. A missing ``runs_dir``
    gives an empty list.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = []
    for run_path in sorted(runs_dir.iterdir()):
        if not run_path.is_dir() or not is_usable_run(run_path):
            continue
        try:
            runs.append(summarize_run(run_path, load_manifest(run_path)))
        except RunFolderError:
            continue
    return sorted(runs, key=lambda run: (run.created, run.run_id), reverse=True)


def read_predictions(run_path: Path) -> gpd.GeoDataFrame:
    """Read and check a run's ``predictions.parquet`` (no caching).

    ``window_start`` comes back tz-aware UTC and geometries in EPSG:4326, whatever
    the writer stored, so the components can rely on both.

    Raises:
        RunFolderError: The file is missing or lacks a contract column.
    """
    path = Path(run_path) / PREDICTIONS_FILE
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    predictions = gpd.read_parquet(path)
    missing = [column for column in PREDICTION_COLUMNS if column not in predictions.columns]
    if missing:
        raise RunFolderError(f"{path}: missing columns {', '.join(missing)}")
    window_start = pd.to_datetime(predictions["window_start"])
    if window_start.dt.tz is None:
        window_start = window_start.dt.tz_localize("UTC")
    predictions["window_start"] = window_start.dt.tz_convert("UTC")
    if predictions.crs is None:
        predictions = predictions.set_crs("EPSG:4326")
    elif predictions.crs.to_epsg() != 4326:
        predictions = predictions.to_crs("EPSG:4326")
    return predictions


@st.cache_data(show_spinner="Loading predictions...", max_entries=8)
def _read_predictions_cached(path: str, mtime_ns: int) -> gpd.GeoDataFrame:
    """Cached `read_predictions`; ``mtime_ns`` is only part of the cache key."""
    del mtime_ns
    return read_predictions(Path(path))


def load_predictions(run_path: Path) -> gpd.GeoDataFrame:
    """A run's predictions, cached per file path and modification time.

    Raises:
        RunFolderError: See `read_predictions`.
    """
    path = Path(run_path).resolve()
    file = path / PREDICTIONS_FILE
    if not file.is_file():
        raise RunFolderError(f"{file}: missing")
    return _read_predictions_cached(str(path), file.stat().st_mtime_ns)
