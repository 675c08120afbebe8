"""Per-round checkpoints of a federated run, written atomically, and resuming from them.

A checkpoint is ``run_dir/checkpoints/round-NNNN/`` with ``arrays.safetensors``
(the global model as ``model/<key>``, the strategy's state as ``strategy/<key>``,
the server's moving average of the model, if the run keeps one, as ``average/<key>``)
and ``state.json`` (round, strategy, model config, settings). The folder appears
whole or not at all (`datasets.atomic`), so a run killed at any moment resumes
from its last complete round. On resume, ``metrics.jsonl`` loses the lines of
rounds after that checkpoint, so no round is recorded twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from datasets.atomic import write_folder_atomically

CHECKPOINT_FORMAT_VERSION = 1
FOLDER = re.compile(r"^round-(\d{4,})$")
ROUND_KINDS = ("round", "site")


@dataclass
class Checkpoint:
    """The state after a complete round.

    Attributes:
        round: The last complete round.
        model: Global model arrays by state-dict key.
        strategy: Strategy state arrays (see `SiteAware.state_arrays`).
        facts: ``state.json``: strategy name, model config, settings.
        average: The server's moving average of the global model
            (`fedcore.federation.model_average`); empty when the run keeps none.
    """

    round: int
    model: dict[str, np.ndarray]
    strategy: dict[str, np.ndarray]
    facts: dict
    average: dict[str, np.ndarray] = field(default_factory=dict)


def checkpoints_dir(run_dir: str | Path) -> Path:
    """Where a run's checkpoints live."""
    return Path(run_dir) / "checkpoints"


def save_checkpoint(
    run_dir: str | Path, checkpoint: Checkpoint, keep: int = 0, protect: int | None = None
) -> Path:
    """Write ``checkpoint`` atomically; keep only the newest ``keep`` (0: all) and ``protect``.

    ``protect`` names a round whose checkpoint stays whatever its age: the round
    the run has selected so far (see `fedcore.federation.selection`).
    """
    arrays = {f"model/{key}": value for key, value in checkpoint.model.items()}
    arrays.update({f"strategy/{key}": value for key, value in checkpoint.strategy.items()})
    arrays.update({f"average/{key}": value for key, value in checkpoint.average.items()})
    arrays = {key: np.ascontiguousarray(value) for key, value in arrays.items()}
    facts = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        **checkpoint.facts,
        "round": checkpoint.round,
    }

    def write(folder: Path) -> None:
        save_file(arrays, str(folder / "arrays.safetensors"))
        (folder / "state.json").write_text(json.dumps(facts, indent=1))

    target = checkpoints_dir(run_dir) / f"round-{checkpoint.round:04d}"
    write_folder_atomically(target, write)
    if keep:
        for old in _complete_rounds(run_dir)[:-keep]:
            if old == protect:
                continue
            shutil.rmtree(checkpoints_dir(run_dir) / f"round-{old:04d}", ignore_errors=True)
    return target


def _complete_rounds(run_dir: str | Path) -> list[int]:
    folder = checkpoints_dir(run_dir)
    if not folder.is_dir():
        return []
    rounds = []
    for path in folder.iterdir():
        found = FOLDER.match(path.name)
        if found and (path / "state.json").exists() and (path / "arrays.safetensors").exists():
            rounds.append(int(found.group(1)))
    return sorted(rounds)


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The checkpoint of the last complete round, or None when the run has none."""
    rounds = _complete_rounds(run_dir)
    return read_checkpoint(run_dir, rounds[-1]) if rounds else None


def read_checkpoint(run_dir: str | Path, server_round: int) -> Checkpoint:
    """The checkpoint of ``server_round``.

    Raises:
        FileNotFoundError: The run holds no complete checkpoint of that round.
    """
    if server_round not in _complete_rounds(run_dir):
        raise FileNotFoundError(f"{run_dir} holds no checkpoint of round {server_round}")
    folder = checkpoints_dir(run_dir) / f"round-{server_round:04d}"
    facts = json.loads((folder / "state.json").read_text())
    if facts.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"{folder}: checkpoint format {facts.get('format_version')} unknown")
    arrays = load_file(str(folder / "arrays.safetensors"))
    groups = {
        group: {k[len(group) + 1 :]: v for k, v in arrays.items() if k.startswith(f"{group}/")}
        for group in ("model", "strategy", "average")
    }
    return Checkpoint(round=int(facts["round"]), facts=facts, **groups)


def trim_metrics_after(run_dir: str | Path, last_round: int) -> int:
    """Drop round and site lines of rounds after ``last_round`` from ``metrics.jsonl``.

    Those lines belong to a round whose checkpoint was never written (the run
    was killed mid-round); it will run again. Returns how many lines went.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1  # a line cut short by the kill
            continue
        if record.get("kind") in ROUND_KINDS and int(record.get("round", 0)) > last_round:
            dropped += 1
            continue
        kept.append(line)
    staging = path.with_name(f".{path.name}.trim")
    staging.write_text("".join(line + "\n" for line in kept))
    os.replace(staging, path)
    return dropped
