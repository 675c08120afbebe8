"""The federation's server: rounds over the sites, checkpoints, metrics and the final model.

`run_federation` is the whole server; the module-level ``app`` runs it with
settings from Flower's run config (``flwr run .``), `make_server_app` with
settings given in code (the simulation pipeline). The server needs no private
data: the model is sized by the partitions' public layer, and central
evaluation runs only when ``eval-city-dir`` names pooled data (simulation,
benchmarks).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from datasets import window_starts
from fedcore.federation.checkpoints import (
    Checkpoint,
    latest_checkpoint,
    read_checkpoint,
    save_checkpoint,
    trim_metrics_after,
)
from fedcore.federation.layers import encoder_keys, head_keys
from fedcore.federation.model_average import ModelAverage
from fedcore.federation.neighbour_exchange import exchange_neighbours
from fedcore.federation.rounds import run_rounds
from fedcore.federation.selection import Selection, selection_source, update_selection
from fedcore.federation.settings import FederationSettings
from fedcore.federation.site_order import SiteOrderedGrid, roll_call
from fedcore.federation.strategies import make_strategy
from fedcore.federation.task import (
    arrays_from_numpy,
    arrays_of,
    data_settings,
    load_pooled_data,
    model_config_from_public,
    model_from_arrays,
)
from fedcore.model import ModelConfig, build_model, save_model
from fedcore.run_log import append_metrics
from fedcore.site_data import load_city_cached
from fedcore.training import evaluate

SETTINGS_FILE = "federation-settings.json"
Progress = Callable[[dict], None]


def read_run_settings(run_dir: str | Path) -> FederationSettings:
    """The settings a run started with (``federation-settings.json`` in its folder)."""
    path = Path(run_dir) / SETTINGS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: {run_dir} is not a federation run")
    return FederationSettings.from_run_config(json.loads(path.read_text()))


def _start_or_resume(settings: FederationSettings) -> tuple[ModelConfig, Checkpoint | None]:
    run_dir = Path(settings.run_dir)
    found = latest_checkpoint(run_dir)
    if settings.resume:
        trim_metrics_after(run_dir, found.round if found else 0)
        if found is not None:
            return ModelConfig.from_json(found.facts["model_config"]), found
    elif found is not None:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints up to round {found.round}; "
            "resume it (resume=true, kizashi federate --resume) or pick another run-dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SETTINGS_FILE).write_text(json.dumps(settings.to_run_config(), indent=1))
    public = load_city_cached(str(Path(settings.partitions_dir) / "public"))
    return model_config_from_public(settings, public), None


def _central_evaluation(settings: FederationSettings, config: ModelConfig):
    if not settings.eval_city_dir:
        return None
    pooled = load_pooled_data(settings.eval_city_dir, data_settings(settings))
    indices = pooled.split[settings.central_eval_split]

    def central(server_round: int, arrays: ArrayRecord) -> dict:
        torch.set_num_threads(1)
        scores = evaluate(model_from_arrays(config, arrays), pooled, indices)
        return {key: value for key, value in scores.items() if math.isfinite(value)}

    return central


def public_shape(settings: FederationSettings) -> tuple[int, int]:
    """Districts and windows of the partitions' public layer, as every site cuts them."""
    public = load_city_cached(str(Path(settings.partitions_dir) / "public"))
    data = data_settings(settings)
    starts = window_starts(public, data.stride_hours, data.lookback_hours, data.horizon_hours)
    return len(public.districts), len(starts)


def run_federation(
    grid: Grid, settings: FederationSettings, progress: Progress | None = None
) -> ArrayRecord:
    """Run (or resume) every round; checkpoint each; save the selected round's model.

    A roll call first learns which node is which site, so rounds sample sites
    in an order Flower's random node ids do not change
    (`fedcore.federation.site_order`). With ``neighbour-exchange`` the sites then
    pool their neighbour sums (both again on a resume: node ids change, and a
    restarted site has lost what it kept).

    The run's ``model/`` is the global model of the round `fedcore.federation.selection`
    picks (the best on validation windows, or the last); ``metrics.jsonl`` ends
    with a ``kind: model`` line that names it. Returns the last round's arrays.
    """
    config, checkpoint = _start_or_resume(settings)
    torch.manual_seed(settings.seed)
    model = build_model(config)
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    strategy = make_strategy(settings, head_keys(model), trainable, encoder_keys(model))
    selected: Selection | None = None
    average = ModelAverage(settings.server_ema, checkpoint.average if checkpoint else None)
    if checkpoint is None:
        arrays, first_round = arrays_of(model), 1
    else:
        arrays = arrays_from_numpy(checkpoint.model)
        strategy.load_state_arrays(checkpoint.strategy)
        selected = Selection.from_facts(checkpoint.facts.get("selected"))
        first_round = checkpoint.round + 1
    shared = ConfigRecord({**settings.to_run_config(), "model-config": config.to_json()})
    facts = {
        "strategy": settings.strategy,
        "model_config": config.to_json(),
        "settings": settings.to_run_config(),
    }
    source = selection_source(settings)
    min_sites = settings.min_available_sites or settings.min_train_sites
    sites = roll_call(grid, shared, settings.run_dir, settings.round_timeout_s, min_sites)
    if settings.neighbour_exchange:
        exchange_neighbours(
            grid,
            shared,
            public_shape(settings),
            settings.run_dir,
            settings.round_timeout_s,
            min_sites,
        )

    def on_round_done(server_round: int, new_arrays: ArrayRecord, record: dict) -> None:
        nonlocal selected
        selected = update_selection(selected, server_round, record, source)
        state = {key: np.asarray(value) for key, value in strategy.state_arrays().items()}
        model_arrays = {key: array.numpy() for key, array in new_arrays.items()}
        save_checkpoint(
            settings.run_dir,
            Checkpoint(
                server_round,
                model_arrays,
                state,
                {**facts, "selected": selected.to_facts()},
                average=average.state,
            ),
            keep=settings.keep_checkpoints,
            protect=selected.round,
        )
        if progress is not None:
            progress({**record, "strategy": settings.strategy, "run_dir": settings.run_dir})

    final = run_rounds(
        SiteOrderedGrid(grid, sites),
        strategy,
        settings,
        arrays,
        first_round,
        shared,
        _central_evaluation(settings, config),
        on_round_done,
        average,
    )
    save_selected_model(settings, config, selected, average.of(final))
    return final


def save_selected_model(
    settings: FederationSettings,
    config: ModelConfig,
    selected: Selection | None,
    last: ArrayRecord,
) -> None:
    """Save the selected round's model as the run's ``model/`` and say which it is.

    ``last`` is the last round's model; with ``server-ema`` each round's model
    is the server's moving average (the checkpoint's ``average``).
    """
    run_dir = Path(settings.run_dir)
    if selected is None or selected.round == settings.num_rounds:
        chosen = model_from_arrays(config, last)
    else:
        kept = read_checkpoint(run_dir, selected.round)
        chosen = model_from_arrays(config, arrays_from_numpy(kept.average or kept.model))
    save_model(chosen, run_dir / "model")
    round_kept = selected.round if selected else settings.num_rounds
    append_metrics(
        run_dir,
        {
            "kind": "model",
            "round": round_kept,
            "last_round": settings.num_rounds,
            "selected_by": selected.by if selected else "last round",
            "validation_auprc_macro": selected.score if selected else None,
        },
    )


def make_server_app(
    settings: FederationSettings | list[FederationSettings], progress: Progress | None = None
) -> ServerApp:
    """A ServerApp that runs `run_federation` for each of ``settings``, one after another.

    Several federations on the same nodes share one simulation (Ray starts once,
    sites load their data once); each keeps its own run folder and site state.
    """
    runs = settings if isinstance(settings, list) else [settings]
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        for each in runs:
            run_federation(grid, each, progress)

    return server


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point for ``flwr run``: settings from the run config."""
    run_federation(grid, FederationSettings.from_run_config(dict(context.run_config)))
