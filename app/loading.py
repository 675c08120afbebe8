"""The one place the app reads run folders from.

A run is a folder ``<runs_dir>/<run_id>/`` holding ``manifest.json``,
``metrics.jsonl``, ``predictions.parquet`` (GeoParquet, EPSG:4326, one row per
district, window and domain) and, for jobs that used one, the ``city/`` folder and
the federation's ``sites.json``. The app only reads runs; it never writes or trains.

The ``read_*`` / ``parse_*`` functions work without a Streamlit runtime, so tests
and scripts can call them directly. The ``load_*`` functions add ``st.cache_data``
(small frames, copied per call) or ``st.cache_resource`` (the predictions and the
City bundle: large, shared, read-only), keyed on the file's path and modification
time, so a rewritten run reloads.

`parse_federation_log` is the one place that understands ``metrics.jsonl``; it
reads both the per-phase records the Flower server writes today (``phase`` /
``scope``) and the per-round / per-site records (``kind``) it is moving to.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import streamlit as st

from app.hotspots import district_trends

RUNS_ENV_VAR = "KIZASHI_RUNS"
DEFAULT_RUNS_DIR = "runs"
MANIFEST_FILE = "manifest.json"
PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.jsonl"
SITES_FILE = "sites.json"
# Where a run keeps its site plan: the partitions a demo wrote into the run, or a plain plan.
SITE_PLAN_FILES = ("partitions/federation.json", SITES_FILE)
CITY_FOLDER = "city"
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


@st.cache_resource(show_spinner="Loading predictions...", max_entries=8)
def _read_predictions_cached(path: str, mtime_ns: int) -> gpd.GeoDataFrame:
    """Cached `read_predictions`; ``mtime_ns`` is only part of the cache key.

    ``cache_resource``, not ``cache_data``: every rerun would otherwise unpickle a
    fresh copy (0.4 s for 1,000 districts x 24 windows x 4 domains). The frame is
    shared, so callers must treat it as read-only (filters and ``.copy()`` only).
    """
    del mtime_ns
    return read_predictions(Path(path))


def load_predictions(run_path: Path) -> gpd.GeoDataFrame:
    """A run's predictions, cached per file path and modification time; read-only.

    Raises:
        RunFolderError: See `read_predictions`.
    """
    path = Path(run_path).resolve()
    file = path / PREDICTIONS_FILE
    if not file.is_file():
        raise RunFolderError(f"{file}: missing")
    return _read_predictions_cached(str(path), file.stat().st_mtime_ns)


def _mtime_ns(path: Path) -> int:
    """Modification time of ``path`` for cache keys; -1 when it does not exist."""
    return path.stat().st_mtime_ns if path.exists() else -1


@st.cache_data(max_entries=32)
def _load_manifest_cached(path: str, mtime_ns: int) -> dict[str, Any]:
    """Cached `load_manifest`; ``mtime_ns`` is only part of the cache key."""
    del mtime_ns
    return load_manifest(Path(path))


def load_run_manifest(run_path: Path) -> dict[str, Any]:
    """A run's manifest, cached per file modification time (see `load_manifest`)."""
    path = Path(run_path).resolve()
    return _load_manifest_cached(str(path), _mtime_ns(path / MANIFEST_FILE))


def site_plan_file(run_path: Path) -> Path:
    """The run's site plan: its ``partitions/federation.json``, else ``sites.json``.

    A run federated over partitions kept elsewhere names them in its manifest
    (``partitions-dir`` of the federation config); that folder's plan is used then.
    """
    for name in SITE_PLAN_FILES:
        if (Path(run_path) / name).is_file():
            return Path(run_path) / name
    manifest_path = Path(run_path) / MANIFEST_FILE
    try:
        config = json.loads(manifest_path.read_text(encoding="utf-8")).get("config", {})
        elsewhere = (config.get("federation") or {}).get("partitions-dir")
    except (OSError, json.JSONDecodeError, AttributeError):
        elsewhere = None
    if elsewhere and (Path(elsewhere) / "federation.json").is_file():
        return Path(elsewhere) / "federation.json"
    return Path(run_path) / SITES_FILE


def read_site_plan(run_path: Path) -> list[dict[str, Any]]:
    """The run's site plan: ``[{"site_id": ..., "districts": [...]}, ...]``; [] if absent."""
    path = site_plan_file(run_path)
    if not path.is_file():
        return []
    try:
        sites = json.loads(path.read_text(encoding="utf-8")).get("sites", [])
    except (json.JSONDecodeError, AttributeError):
        raise RunFolderError(f"{path}: not a site plan (want {{'sites': [...]}})") from None
    return [site for site in sites if isinstance(site, dict) and "site_id" in site]


def read_metrics_records(run_path: Path) -> list[dict[str, Any]]:
    """Every JSON object of the run's ``metrics.jsonl``; unreadable lines are skipped.

    A federation that is still running may have a half-written last line; it must
    not hide the rounds before it.
    """
    path = Path(run_path) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


@dataclass
class FederationLog:
    """What a run's ``metrics.jsonl`` says about its federation, one row per thing.

    Attributes:
        rounds: One row per round: ``round``, ``train_loss``, ``n_sites``,
            ``n_failures``, ``sites`` (list of site ids), ``failures`` (list of
            ``{"site", "error"}``) and one ``central_<metric>`` column per metric
            the server scored on the hold-out (round 0 is the initial model).
        sites: One row per site and round: ``round``, ``site``, ``num_examples``,
            ``loss``, ``auprc`` (macro) and ``error`` (None when it answered).
        missing: What the log does not hold, in words, for the page to say.
    """

    rounds: pd.DataFrame
    sites: pd.DataFrame
    missing: list[str] = field(default_factory=list)

    @property
    def central_metrics(self) -> list[str]:
        """Names of the server-side metrics present (``auprc-macro``, ``loss``...)."""
        return [c.removeprefix("central_") for c in self.rounds.columns if c.startswith("central_")]


_SKIPPED_KEYS = {"time", "round", "phase", "scope", "kind", "num-examples", "node-id"}


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (null, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _site_id(record: dict[str, Any], site_ids: list[str]) -> str:
    """The site a record is about: ``site``, else the plan's id at ``site-index``, else node."""
    if record.get("site") is not None:
        return str(record["site"])
    index = record.get("site-index")
    if isinstance(index, int | float) and 0 <= int(index) < len(site_ids):
        return site_ids[int(index)]
    if index is not None:
        return f"site-{int(index):03d}"
    return f"node-{record.get('node-id', '?')}"


def parse_federation_log(
    records: Iterable[dict[str, Any]], site_ids: list[str] | None = None
) -> FederationLog:
    """Turn ``metrics.jsonl`` records into per-round and per-site tables.

    Understands two layouts, so the page keeps working while the server changes:

    - ``{"kind": "round", "round", "central": {...}, "train_loss", "sites",
      "failures": [{"site", "error"}]}`` and ``{"kind": "site", "round", "site",
      "num_examples", "loss", "auprc"}``;
    - today's ``{"phase": "central-evaluate", "scope": "server", <metric>: ...}``,
      ``{"phase": "train" | "evaluate", "scope": "site", "site-index", ...}`` (an
      ``error`` key marks a failed site) and ``{"phase": "train", "scope":
      "federation", "train-loss"}``.

    Args:
        records: Parsed lines of ``metrics.jsonl``, in file order.
        site_ids: The site plan's ids in partition order, to name ``site-index``.
    """
    site_ids = site_ids or []
    rounds: dict[int, dict[str, Any]] = {}
    sites: dict[tuple[int, str], dict[str, Any]] = {}

    def round_row(number: int) -> dict[str, Any]:
        return rounds.setdefault(number, {"round": number, "sites": [], "failures": []})

    def site_row(number: int, site: str) -> dict[str, Any]:
        return sites.setdefault((number, site), {"round": number, "site": site, "error": None})

    for record in records:
        if _number(record.get("round")) is None:
            continue
        number = int(record["round"])
        kind = record.get("kind")
        phase, scope = record.get("phase"), record.get("scope")
        if kind == "round":
            row = round_row(number)
            central = record.get("central") if isinstance(record.get("central"), dict) else {}
            for key, value in central.items():
                row[f"central_{key}"] = _number(value)
            row["train_loss"] = _number(record.get("train_loss"))
            row["sites"] = [str(site) for site in record.get("sites") or []]
            row["failures"] = [f for f in record.get("failures") or [] if isinstance(f, dict)]
        elif kind == "site" or scope == "site":
            site = _site_id(record, site_ids)
            row = site_row(number, site)
            examples = _number(record.get("num_examples", record.get("num-examples")))
            if examples is not None and (phase == "train" or "num_examples" not in row):
                row["num_examples"] = examples  # training samples win over evaluation ones
            loss = _number(record.get("loss", record.get("train-loss")))
            if loss is not None and (phase != "train" or "loss" not in row):
                row["loss"] = loss
            auprc = _number(record.get("auprc", record.get("auprc-macro")))
            if auprc is not None:
                row["auprc"] = auprc
            if record.get("error"):
                row["error"] = str(record["error"])
        elif phase == "central-evaluate":
            row = round_row(number)
            for key, value in record.items():
                if key not in _SKIPPED_KEYS and _number(value) is not None:
                    row[f"central_{key}"] = _number(value)
        elif phase == "train" and scope == "federation":
            round_row(number)["train_loss"] = _number(record.get("train-loss"))

    site_table = pd.DataFrame(
        list(sites.values()), columns=["round", "site", "num_examples", "loss", "auprc", "error"]
    )
    for (number, site), row in sites.items():
        if number == 0:
            continue
        summary = round_row(number)
        if row["error"] is None and site not in summary["sites"]:
            summary["sites"].append(site)
        if row["error"] is not None and all(f.get("site") != site for f in summary["failures"]):
            summary["failures"].append({"site": site, "error": row["error"]})
    round_table = pd.DataFrame(sorted(rounds.values(), key=lambda row: row["round"]))
    if round_table.empty:
        round_table = pd.DataFrame(columns=["round", "sites", "failures", "train_loss"])
    if "train_loss" not in round_table:
        round_table["train_loss"] = None
    round_table["n_sites"] = [len(s) for s in round_table["sites"]]
    round_table["n_failures"] = [len(f) for f in round_table["failures"]]
    return FederationLog(round_table, site_table, _missing_parts(round_table, site_table))


def _missing_parts(rounds: pd.DataFrame, sites: pd.DataFrame) -> list[str]:
    """Plain-language notes on what a federation log lacks."""
    missing = []
    if rounds.empty:
        missing.append("no round records (metrics.jsonl is missing or empty)")
    elif not any(column.startswith("central_") for column in rounds.columns):
        missing.append("no server-side evaluation per round")
    if rounds.empty or rounds["train_loss"].isna().all():
        missing.append("no federated training loss")
    if sites.empty:
        missing.append("no per-site records")
    else:
        for column, words in (("num_examples", "sample counts"), ("auprc", "AUPRC")):
            if sites[column].isna().all():
                missing.append(f"no {words} per site")
    return missing


@st.cache_data(max_entries=16)
def _load_federation_log_cached(path: str, mtime_ns: int, sites_mtime_ns: int) -> FederationLog:
    """Cached `parse_federation_log` of a run; the mtimes are only cache keys."""
    del mtime_ns, sites_mtime_ns
    run_path = Path(path)
    site_ids = [str(site["site_id"]) for site in read_site_plan(run_path)]
    return parse_federation_log(read_metrics_records(run_path), site_ids)


def load_federation_log(run_path: Path) -> FederationLog:
    """The run's federation log, cached per ``metrics.jsonl`` / ``sites.json`` version."""
    path = Path(run_path).resolve()
    return _load_federation_log_cached(
        str(path), _mtime_ns(path / METRICS_FILE), _mtime_ns(site_plan_file(path))
    )


@st.cache_data(max_entries=16)
def load_site_plan(run_path: Path) -> list[dict[str, Any]]:
    """Cached `read_site_plan` (a site plan never changes once written)."""
    return read_site_plan(run_path)


@st.cache_resource(max_entries=4, show_spinner="Loading the city's observations...")
def _load_city_cached(path: str, mtime_ns: int):
    """Cached ``City.load``; shared read-only between sessions."""
    del mtime_ns
    from datasets import City

    return City.load(path)


def load_run_city(run_path: Path):
    """The City bundle kept in the run's ``city/`` folder, or None when the run has none.

    Raises:
        RunFolderError: The folder exists but is not a readable City.
    """
    folder = (Path(run_path) / CITY_FOLDER).resolve()
    if not folder.is_dir():
        return None
    from datasets.errors import CityDataError

    try:
        return _load_city_cached(str(folder), _mtime_ns(folder / "city.json"))
    except (CityDataError, OSError, ValueError) as error:
        raise RunFolderError(f"{folder}: not a readable City ({error})") from None


@st.cache_data(max_entries=16)
def _load_trends_cached(path: str, mtime_ns: int, domain: str) -> pd.DataFrame:
    """Cached `app.hotspots.district_trends` of a run; ``mtime_ns`` is only a cache key."""
    return district_trends(_read_predictions_cached(path, mtime_ns), domain)


def load_district_trends(run_path: Path, domain: str) -> pd.DataFrame:
    """Every district's hotspot-trend label for one domain, cached with the predictions."""
    path = Path(run_path).resolve()
    return _load_trends_cached(str(path), _mtime_ns(path / PREDICTIONS_FILE), domain)
