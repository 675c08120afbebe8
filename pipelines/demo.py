"""The demo job: a city, a federation of edge sites, predictions — one run folder.

This is the walking skeleton of every Kizashi job: build or load a City, split
its districts among edge sites (site folders written by `datasets.partition`),
federate RiskNet over them with Flower's simulation engine, predict the
hold-out windows and write the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from datasets.partition import PartitionSpec, partition_city
from datasets.partition_io import write_federation
from fedcore.federation.settings import FederationSettings
from fedcore.federation.simulation import simulate_federation
from fedcore.federation.task import data_settings, load_pooled_data
from fedcore.model import load_model
from pipelines.cities import CitySource, obtain_city, save_city_into_run
from pipelines.defaults import DEMO_LOCAL_EPOCHS, DEMO_ROUNDS
from pipelines.federate import round_line
from pipelines.predict import prediction_frame, write_predictions
from pipelines.runs import new_run_dir, write_manifest

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    """What the demo builds and how long it trains.

    Attributes:
        city: Where the city comes from.
        seed: Seed of the model and the site plan.
        n_sites: Edge sites in the federation.
        rounds: Federated rounds.
        preset: RiskNet preset.
        local_epochs: Epochs per site and round.
    """

    city: CitySource = CitySource()
    seed: int = 0
    n_sites: int = 10
    rounds: int = DEMO_ROUNDS
    preset: str = "small"
    local_epochs: int = DEMO_LOCAL_EPOCHS


def run_demo(options: DemoOptions, runs_dir: Path, progress: Progress = print) -> Path:
    """Run the whole demo and return the run folder it wrote."""
    started = time.perf_counter()
    city, oracle = obtain_city(options.city)  # bad input fails here, before anything is written
    n_sites = min(options.n_sites, len(city.districts))
    run_dir = new_run_dir(runs_dir, "demo")
    progress(f"city: {city.name}, {len(city.districts)} districts -> {run_dir}")
    city_dir = save_city_into_run(city, oracle, run_dir)
    federation = partition_city(city, PartitionSpec(n_sites=n_sites, seed=options.seed))
    partitions_dir = write_federation(federation, city, run_dir / "partitions")
    settings = FederationSettings(
        partitions_dir=str(partitions_dir),
        eval_city_dir=str(city_dir),
        run_dir=str(run_dir),
        preset=options.preset,
        num_rounds=options.rounds,
        local_epochs=options.local_epochs,
        min_train_sites=min(2, n_sites),
        seed=options.seed,
    )
    facts = {
        "kind": "demo",
        "city": {"name": city.name, "n_districts": len(city.districts), "timezone": city.timezone},
        "config": {"demo": asdict(options), "federation": settings.to_run_config()},
        "data_fingerprint": city.fingerprint(),
        "domains": settings.domain_list,
        "n_sites": n_sites,
    }
    write_manifest(run_dir, status="running", **facts)
    progress(f"federating over {n_sites} sites, {options.rounds} rounds (Flower simulation)")
    simulate_federation(
        settings, n_sites, progress=lambda record: progress(round_line(record, options.rounds))
    )
    progress("predicting the hold-out windows")
    model = load_model(run_dir / "model")
    data = load_pooled_data(str(city_dir), data_settings(settings))
    predictions = prediction_frame(model, city, data, data.split["test"])
    write_predictions(predictions, run_dir)
    seconds = round(time.perf_counter() - started, 1)
    write_manifest(
        run_dir, status="finished", seconds=seconds, n_predictions=len(predictions), **facts
    )
    progress(f"run written: {run_dir}")
    return run_dir
