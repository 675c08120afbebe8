"""The federation's server: FedAvg over the sites, metrics and the final model into the run.

`run_federation` is the whole server loop; the module-level ``app`` runs it with
settings from Flower's run config (``flwr run .``), and `make_server_app` with
settings given in code (the simulation pipeline).
"""

from __future__ import annotations

from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result

from fedcore.federation.settings import FederationSettings
from fedcore.federation.strategies import RecordingFedAvg
from fedcore.federation.task import (
    arrays_of,
    data_settings,
    load_all_districts,
    model_config_for,
    model_from_arrays,
)
from fedcore.model import build_model, save_model
from fedcore.run_log import append_metrics
from fedcore.training import evaluate


def run_federation(grid: Grid, settings: FederationSettings, n_sites: int) -> Result:
    """Run all rounds, record metrics into the run folder and save the final model."""
    run_dir = Path(settings.run_dir)
    pooled = load_all_districts(settings.city_dir, data_settings(settings))
    config = model_config_for(settings, pooled)
    torch.manual_seed(settings.seed)
    initial = build_model(config)

    def record_sites(server_round: int, phase: str, rows: list[dict]) -> None:
        for row in rows:
            append_metrics(run_dir, {"round": server_round, "phase": phase, "scope": "site", **row})

    def central_evaluation(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = model_from_arrays(config, arrays)
        scores = evaluate(model, pooled, pooled.split["validation"])
        append_metrics(
            run_dir,
            {"round": server_round, "phase": "central-evaluate", "scope": "server", **scores},
        )
        return MetricRecord({key: float(value) for key, value in scores.items() if value == value})

    minimum = min(settings.min_train_sites, n_sites)
    strategy = RecordingFedAvg(
        record_sites,
        fraction_train=settings.fraction_train,
        fraction_evaluate=1.0,
        min_train_nodes=minimum,
        min_evaluate_nodes=minimum,
        min_available_nodes=minimum,
    )
    shared = ConfigRecord({**settings.to_run_config(), "model-config": config.to_json()})
    result = strategy.start(
        grid=grid,
        initial_arrays=arrays_of(initial),
        num_rounds=settings.num_rounds,
        train_config=shared,
        evaluate_config=shared,
        evaluate_fn=central_evaluation if settings.central_eval else None,
    )
    for server_round, metrics in result.train_metrics_clientapp.items():
        append_metrics(
            run_dir,
            {"round": server_round, "phase": "train", "scope": "federation", **dict(metrics)},
        )
    for server_round, metrics in result.evaluate_metrics_clientapp.items():
        append_metrics(
            run_dir,
            {"round": server_round, "phase": "evaluate", "scope": "federation", **dict(metrics)},
        )
    save_model(model_from_arrays(config, result.arrays), run_dir / "model")
    return result


def make_server_app(settings: FederationSettings, n_sites: int) -> ServerApp:
    """A ServerApp that runs `run_federation` with the given settings."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        run_federation(grid, settings, n_sites)

    return server


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point for ``flwr run``: settings from the run config."""
    settings = FederationSettings.from_run_config(dict(context.run_config))
    n_sites = int(context.run_config.get("num-sites", settings.min_train_sites))
    run_federation(grid, settings, n_sites)
