"""`kizashi federate`: a federated run over a partitions folder, in Flower's simulation engine.

The run folder holds ``manifest.json``, ``federation-settings.json``,
``metrics.jsonl`` (a ``site`` line per site and round, a ``round`` line per
round), ``checkpoints/round-NNNN`` and, when done, ``model/``. A killed run
continues with `resume_federation` from its last complete round.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from datasets.partition_io import read_federation
from fedcore.federation.server_app import read_run_settings
from fedcore.federation.settings import FederationSettings
from fedcore.federation.simulation import simulate_federation
from pipelines.runs import new_run_dir, write_manifest

Progress = Callable[[str], None]


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``key=value`` strings (the run config's hyphenated keys) as a dict.

    Raises:
        ValueError: A pair without ``=``, or a key that is not a setting.
    """
    known = set(FederationSettings().to_run_config())
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"--set takes key=value, got {pair!r}")
        if key not in known:
            raise ValueError(
                f"--set: unknown setting {key!r}; settings: {', '.join(sorted(known))}"
            )
        out[key] = value.strip()
    return out


def round_line(record: dict, total: int) -> str:
    """A one-line progress report of a finished round."""
    parts = [
        f"round {record['round']}/{total}",
        f"{len(record['sites'])}/{record['n_asked']} sites",
    ]
    if record["failures"]:
        parts.append(f"{len(record['failures'])} failed")
    if record.get("train_loss") is not None:
        parts.append(f"train loss {record['train_loss']:.3f}")
    central = record.get("central") or {}
    if "auprc-macro" in central:
        parts.append(f"central macro AUPRC {central['auprc-macro']:.3f}")
    parts.append(f"{record['wall_seconds']:.1f} s")
    return ", ".join(parts)


def partitions_fingerprint(partitions_dir: Path) -> str:
    """A short hash of ``federation.json``: which plan the run trained on."""
    return hashlib.sha256((partitions_dir / "federation.json").read_bytes()).hexdigest()[:16]


def federate(
    settings: FederationSettings, progress: Progress = print, cores: int | None = None
) -> Path:
    """Simulate the federation ``settings`` describe; write the manifest around it."""
    partitions = Path(settings.partitions_dir)
    n_sites = len(read_federation(partitions).sites)
    run_dir = Path(settings.run_dir)
    facts = {
        "kind": "federate",
        "config": {"federation": settings.to_run_config()},
        "data_fingerprint": partitions_fingerprint(partitions),
        "domains": settings.domain_list,
        "n_sites": n_sites,
    }
    started = time.perf_counter()
    write_manifest(run_dir, status="running", **facts)
    progress(
        f"federating over {n_sites} sites, {settings.num_rounds} rounds, "
        f"{settings.strategy} (Flower simulation) -> {run_dir}"
    )
    simulate_federation(
        settings,
        n_sites,
        cores=cores,
        progress=lambda record: progress(round_line(record, settings.num_rounds)),
    )
    seconds = round(time.perf_counter() - started, 1)
    write_manifest(run_dir, status="finished", seconds=seconds, **facts)
    return run_dir


def start_federation(
    overrides: dict, runs_dir: Path, progress: Progress = print, cores: int | None = None
) -> Path:
    """A new run folder under ``runs_dir`` and a federation with the given settings."""
    settings = FederationSettings.from_run_config(overrides)  # bad knobs fail before any folder
    if not (Path(settings.partitions_dir) / "federation.json").exists():
        raise FileNotFoundError(
            f"{settings.partitions_dir}: no federation.json (write one with "
            "'kizashi city partitions')"
        )
    run_dir = new_run_dir(runs_dir, "federate")
    return federate(settings.with_updates(run_dir=str(run_dir)), progress, cores)


def resume_federation(run_dir: Path, progress: Progress = print, cores: int | None = None) -> Path:
    """Continue a killed or failed run from its last checkpoint, with its own settings."""
    settings = read_run_settings(run_dir).with_updates(run_dir=str(run_dir), resume=True)
    return federate(settings, progress, cores)
