"""Run folders, the contract between pipelines and the app.

Every job writes ``runs/<run_id>/`` with ``manifest.json`` (what, when, config,
data fingerprint, code version), ``metrics.jsonl``, the model and, for jobs that
predict, ``predictions.parquet``.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_RUNS_DIR = Path("runs")


def new_run_dir(runs_dir: str | Path, kind: str) -> Path:
    """Create a fresh, uniquely named run folder ``<runs_dir>/<time>-<kind>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = Path(runs_dir) / f"{stamp}-{kind}"
    path, suffix = base, 1
    while path.exists():
        suffix += 1
        path = base.with_name(f"{base.name}-{suffix}")
    path.mkdir(parents=True)
    return path


def code_version() -> str:
    """The git commit of the code (``+dirty`` with local changes), or the package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"kizashi {version('kizashi')}"
        except PackageNotFoundError:
            return "unknown"


def write_manifest(run_dir: Path, **fields) -> Path:
    """Write ``manifest.json`` with the run id, creation time, code version and ``fields``."""
    manifest = {
        "run_id": run_dir.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        **fields,
    }
    path = run_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path
