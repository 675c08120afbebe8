"""Appending records to a run's ``metrics.jsonl``, one JSON object per line."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def append_metrics(run_dir: str | Path, record: dict) -> None:
    """Append one record (with a wall-clock ``time``) to ``run_dir/metrics.jsonl``.

    Non-finite floats become null so every line stays valid JSON.
    """
    path = Path(run_dir) / "metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_clean({"time": time.time(), **record}), default=float)
    with path.open("a") as handle:
        handle.write(line + "\n")
