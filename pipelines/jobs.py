"""`kizashi train` and `kizashi evaluate` as run-folder jobs."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

from fedcore.model import save_model
from fedcore.run_log import append_metrics
from fedcore.site_data import DataSettings, prepare_site_data
from pipelines.cities import CitySource, obtain_city, save_city_into_run
from pipelines.evaluate import run_evaluation
from pipelines.predict import prediction_frame, write_predictions
from pipelines.runs import new_run_dir, write_manifest
from pipelines.train import TrainOptions, model_config, train_centralised

Progress = Callable[[str], None]


def _prepare(source: CitySource, runs_dir: Path, kind: str, progress: Progress):
    city, oracle = obtain_city(source)  # bad input fails before anything is written
    run_dir = new_run_dir(runs_dir, kind)
    save_city_into_run(city, oracle, run_dir)
    settings = DataSettings()
    progress(f"{city.name}: preparing samples")
    return city, oracle, run_dir, settings, prepare_site_data(city, settings)


def train_job(
    source: CitySource, preset: str, options: TrainOptions, runs_dir: Path, progress: Progress
) -> Path:
    """Train centrally with early stopping; write model, metrics and test predictions."""
    city, _, run_dir, settings, data = _prepare(source, runs_dir, "train", progress)
    config = model_config(preset, data, list(settings.domains))
    facts = {
        "kind": "train",
        "city": {"name": city.name},
        "config": {"preset": preset, "train": asdict(options)},
        "data_fingerprint": city.fingerprint(),
        "domains": list(settings.domains),
    }
    write_manifest(run_dir, status="running", **facts)

    def on_epoch(record: dict) -> None:
        append_metrics(run_dir, {"phase": "validation", "scope": "central", **record})
        progress(f"epoch {record['epoch']}: validation macro AUPRC {record['auprc-macro']:.3f}")

    model, history = train_centralised(config, data, options, on_epoch)
    save_model(model, run_dir / "model")
    write_predictions(prediction_frame(model, city, data, data.split["test"]), run_dir)
    write_manifest(run_dir, status="finished", epochs=len(history), **facts)
    return run_dir


def evaluate_job(
    source: CitySource,
    preset: str,
    options: TrainOptions,
    seeds: list[int],
    runs_dir: Path,
    progress: Progress,
    jobs: int = 1,
) -> tuple[Path, Table]:
    """Run the side-by-side evaluation (``jobs`` seeds at a time); write ``evaluation.json``."""
    city, oracle, run_dir, settings, data = _prepare(source, runs_dir, "evaluate", progress)
    result = run_evaluation(
        city, oracle, data, list(settings.domains), preset, options, seeds, progress, jobs
    )
    (run_dir / "evaluation.json").write_text(json.dumps(result, indent=2, default=float))
    write_manifest(
        run_dir,
        kind="evaluate",
        status="finished",
        city={"name": city.name},
        config={"preset": preset, "train": asdict(options), "seeds": seeds, "jobs": jobs},
        data_fingerprint=city.fingerprint(),
        domains=list(settings.domains),
    )
    return run_dir, evaluation_table(result, list(settings.domains))


def evaluation_table(result: dict, domains: list[str]) -> Table:
    """The summary as a rich table: mean ± std over seeds."""
    table = Table(title="Test windows: mean ± std over seeds")
    columns = ["variant", "macro AUPRC", "x oracle", "AUROC", "Brier", "count MAE"]
    for column in columns + domains:
        table.add_column(column)

    def cell(row: dict, key: str) -> str:
        value, spread = row.get(key, math.nan), row.get(f"{key}-std", math.nan)
        if not math.isfinite(value):
            return "-"
        return f"{value:.3f}" + (f" ± {spread:.3f}" if math.isfinite(spread) else "")

    for row in result["summary"]:
        fraction = row.get("fraction-of-oracle")
        table.add_row(
            row["variant"],
            cell(row, "auprc-macro"),
            "-" if fraction is None else f"{fraction:.2f}",
            cell(row, "auroc-macro"),
            f"{row['brier-mean']:.4f}",
            cell(row, "count-mae"),
            *(cell(row, f"auprc-{name}") for name in domains),
        )
    if result["oracle"]:
        oracle = result["oracle"]
        table.add_row(
            "oracle (hidden rates)",
            f"{oracle['auprc-macro']:.3f}",
            "1.00",
            f"{oracle['auroc-macro']:.3f}",
            "-",
            "-",
            *(f"{oracle.get(f'auprc-{name}', math.nan):.3f}" for name in domains),
        )
    return table
