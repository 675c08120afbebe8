"""The ``kizashi`` command line: thin wrappers over the pipelines.

Errors in the user's data end with one red line naming the file and rule and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedcore.federation.settings import comma_list
from pipelines.city_commands import city_app
from pipelines.defaults import (
    BENCH_DAYS,
    BENCH_DISTRICTS,
    DEFAULT_DAYS,
    DEFAULT_DISTRICTS,
    DEMO_LOCAL_EPOCHS,
    DEMO_ROUNDS,
)
from pipelines.guard import guarded

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Kizashi: early signs of risk.")
console = Console(stderr=True)
app.add_typer(city_app, name="city")
benchmark_app = typer.Typer(
    no_args_is_help=True, help="Benchmarks: a table on stdout, JSON in the run."
)
app.add_typer(benchmark_app, name="benchmark")
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Folder of run folders.")]
Districts = Annotated[int, typer.Option(help="Districts of the synthetic city.")]
Days = Annotated[int, typer.Option(help="Days of the synthetic record.")]
Preset = Annotated[str, typer.Option(help="RiskNet preset (tiny, small, base).")]


@app.command()
def demo(
    runs_dir: RunsDir = Path("runs"),
    serve: Annotated[bool, typer.Option(help="Serve the app when done.")] = True,
    city: Annotated[Path | None, typer.Option(help="Use this City folder.")] = None,
    districts_file: Annotated[
        Path | None, typer.Option(help="Draw the synthetic city on these polygons.")
    ] = None,
    districts: Districts = DEFAULT_DISTRICTS,
    days: Days = DEFAULT_DAYS,
    sites: Annotated[int, typer.Option(help="Edge sites in the federation.")] = 10,
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = DEMO_ROUNDS,
    local_epochs: Annotated[
        int, typer.Option(help="Epochs per site and round.")
    ] = DEMO_LOCAL_EPOCHS,
    preset: Preset = "small",
    seed: Annotated[int, typer.Option(help="Seed of city and model.")] = 0,
    port: Annotated[int, typer.Option(help="Port of the app.")] = 8501,
) -> None:
    """Build a city, federate over edge sites, predict, and serve the risk map."""
    from pipelines.cities import CitySource
    from pipelines.demo import DemoOptions, run_demo

    source = CitySource(city, districts_file, districts, days, seed)
    options = DemoOptions(
        city=source,
        seed=seed,
        n_sites=sites,
        rounds=rounds,
        preset=preset,
        local_epochs=local_epochs,
    )
    with console.status("running the demo...") as status:
        run_dir = guarded(
            lambda: run_demo(options, runs_dir, progress=lambda text: status.update(text))
        )
    console.print(f"[green]done[/green]: {run_dir}")
    if serve:
        _serve(runs_dir, port)


CityDir = Annotated[Path | None, typer.Option("--city", help="Use this City folder.")]


@app.command()
def train(
    runs_dir: RunsDir = Path("runs"),
    city: CityDir = None,
    districts: Districts = DEFAULT_DISTRICTS,
    days: Days = DEFAULT_DAYS,
    preset: Preset = "small",
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping).")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of city and model.")] = 0,
) -> None:
    """Train RiskNet centrally with early stopping; write a run with test predictions."""
    from pipelines.cities import CitySource
    from pipelines.jobs import train_job
    from pipelines.train import TrainOptions

    source = CitySource(city, None, districts, days, seed)
    options = TrainOptions(max_epochs=epochs, seed=seed)
    with console.status("training...") as status:
        run_dir = guarded(lambda: train_job(source, preset, options, runs_dir, status.update))
    console.print(f"[green]done[/green]: {run_dir}")


@app.command("evaluate")
def evaluate_command(
    runs_dir: RunsDir = Path("runs"),
    city: CityDir = None,
    districts: Districts = DEFAULT_DISTRICTS,
    days: Days = DEFAULT_DAYS,
    preset: Preset = "small",
    epochs: Annotated[int, typer.Option(help="Most epochs per model (early stopping).")] = 20,
    seeds: Annotated[int, typer.Option(help="Number of seeds (0, 1, ...).")] = 3,
    jobs: Annotated[
        int | None, typer.Option(help="Seeds trained at a time (default: one per core).")
    ] = None,
) -> None:
    """Fused RiskNet vs single modalities, no graph and gradient boosting, side by side."""
    from rich.console import Console as StdoutConsole

    from pipelines.cities import CitySource
    from pipelines.jobs import evaluate_job
    from pipelines.train import TrainOptions

    source = CitySource(city, None, districts, days, 0)
    options = TrainOptions(max_epochs=epochs)
    with console.status("evaluating...") as status:
        run_dir, table = guarded(
            lambda: evaluate_job(
                source,
                preset,
                options,
                list(range(seeds)),
                runs_dir,
                status.update,
                jobs or os.cpu_count() or 1,
            )
        )
    StdoutConsole(width=200).print(table)
    console.print(f"[green]done[/green]: {run_dir}/evaluation.json")


@app.command()
def federate(
    partitions: Annotated[
        Path | None, typer.Argument(help="Federation folder ('kizashi city partitions').")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run from its last checkpoint.")
    ] = None,
    runs_dir: RunsDir = Path("runs"),
    eval_city: Annotated[
        Path | None, typer.Option("--eval-city", help="Pooled City folder for central evaluation.")
    ] = None,
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = 3,
    strategy: Annotated[
        str, typer.Option(help="fedavg, fedprox, fedadam, fedyogi, scaffold, fedbn or fedper.")
    ] = "fedavg",
    preset: Preset = "small",
    cores: Annotated[int | None, typer.Option(help="CPU cores for the simulation.")] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any run-config knob as key=value (repeatable)."),
    ] = None,
) -> None:
    """Federate RiskNet over a partitions folder in Flower's simulation; a line per round."""
    from fedcore.federation.rounds import RoundFailedError
    from pipelines.federate import parse_overrides, resume_federation, start_federation

    def say(line: str) -> None:
        console.print(line, soft_wrap=True)

    if resume is not None:
        if partitions is not None:
            raise typer.BadParameter("give either PARTITIONS or --resume RUN_DIR, not both")
        run_dir = guarded(
            lambda: resume_federation(resume, say, cores),
            also=(ValueError, OSError, RoundFailedError),
        )
    else:
        if partitions is None:
            raise typer.BadParameter("PARTITIONS is required unless --resume RUN_DIR is given")
        overrides = {
            "partitions-dir": str(partitions),
            "eval-city-dir": str(eval_city or ""),
            "num-rounds": rounds,
            "strategy": strategy,
            "preset": preset,
        }
        run_dir = guarded(
            lambda: start_federation(
                {**overrides, **parse_overrides(settings or [])}, runs_dir, say, cores
            ),
            also=(ValueError, OSError, RoundFailedError),
        )
    console.print(f"[green]done[/green]: {run_dir}")


@benchmark_app.command("federation")
def benchmark_federation(
    runs_dir: RunsDir = Path("runs"),
    city: CityDir = None,
    districts: Districts = BENCH_DISTRICTS,
    days: Days = BENCH_DAYS,
    sites: Annotated[int, typer.Option(help="Edge sites.")] = 300,
    alpha: Annotated[float, typer.Option(help="Dirichlet label skew (0: none).")] = 0.1,
    quantity_skew: Annotated[float, typer.Option(help="Lognormal sigma of site sizes.")] = 1.0,
    no_cameras: Annotated[float, typer.Option(help="Share of sites without cameras.")] = 0.3,
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = 10,
    fraction_train: Annotated[
        float, typer.Option(help="Share of sites sampled to train each round.")
    ] = 1.0,
    local_epochs: Annotated[int, typer.Option(help="Epochs per site and round.")] = 1,
    local_steps: Annotated[
        int, typer.Option(help="Fewest optimiser steps per site and round (0: off).")
    ] = 20,
    preset: Preset = "tiny",
    ours: Annotated[
        str,
        typer.Option(
            help="Our methods, comma-separated: a strategy, or a strategy with its own "
            "run-config knobs, e.g. fedavgm:server-lr=2:server-momentum=0. "
            "Default: our best measured method."
        ),
    ] = "",
    central_epochs: Annotated[int, typer.Option(help="Most centralised epochs.")] = 20,
    cores: Annotated[int | None, typer.Option(help="CPU cores for the simulation.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of city, partition and models.")] = 0,
    neighbour_exchange: Annotated[
        bool, typer.Option(help="Federated sites pool their neighbour sums before round 1.")
    ] = False,
    select_round: Annotated[
        str,
        typer.Option(help="The round each federated method keeps: best (on validation) or last."),
    ] = "best",
) -> None:
    """Centralised vs FedAvg vs FedProx vs ours vs local-only on one partition; overhead, memory."""
    from pipelines.bench_federation import (
        FederationBenchOptions,
        print_benchmark,
        run_federation_benchmark,
    )
    from pipelines.cities import CitySource

    options = FederationBenchOptions(
        city=CitySource(city, None, districts, days, seed),
        n_sites=sites,
        alpha=alpha or None,
        quantity_skew=quantity_skew,
        share_without_cameras=no_cameras,
        rounds=rounds,
        fraction_train=fraction_train,
        local_epochs=local_epochs,
        local_steps=local_steps,
        preset=preset,
        ours=comma_list(ours) or FederationBenchOptions.ours,
        central_epochs=central_epochs,
        seed=seed,
        cores=cores,
        neighbour_exchange=neighbour_exchange,
        select_round=select_round,
    )
    run_dir, result = guarded(
        lambda: run_federation_benchmark(options, runs_dir, lambda line: console.print(line)),
        also=(ValueError, OSError),
    )
    print_benchmark(result)
    console.print(f"[green]done[/green]: {run_dir}/benchmark.json")


@app.command("join")
def join_command(
    superlink: Annotated[str, typer.Argument(help="The federation's SuperLink, host:port.")],
    site_dir: Annotated[Path, typer.Option("--site-dir", help="This site's folder.")],
    public_dir: Annotated[
        Path | None,
        typer.Option("--public-dir", help="The federation's public layer [site-dir/../../public]."),
    ] = None,
    root_certificates: Annotated[
        Path | None,
        typer.Option(help="PEM root certificate(s) the SuperLink's TLS certificate chains to."),
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Plain HTTP, no TLS: for test set-ups on one machine.")
    ] = False,
    auth_key: Annotated[
        Path | None, typer.Option(help="This site's private key, for node authentication.")
    ] = None,
    trusted_entities: Annotated[
        Path | None, typer.Option(help="YAML of public keys whose signed apps this site runs.")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads the site trains with.")] = 1,
    port: Annotated[int, typer.Option(help="Local port of the SuperNode's runtime API.")] = 9094,
    unlabelled_domains: Annotated[
        str, typer.Option(help="Domains this site does not record, comma-separated.")
    ] = "",
    flwr_home: Annotated[
        Path | None, typer.Option(help="Flower's state folder for this node [FLWR_HOME].")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Where the site keeps report embeddings [FLWR_HOME/kizashi/cache]."),
    ] = None,
) -> None:
    """Join a federation: check this site's folder, then run a Flower SuperNode on it."""
    from pipelines.join import JoinOptions, join

    options = JoinOptions(
        superlink=superlink,
        site_dir=site_dir,
        public_dir=public_dir,
        root_certificates=root_certificates,
        insecure=insecure,
        auth_key=auth_key,
        trusted_entities=trusted_entities,
        threads=threads,
        port=port,
        unlabelled_domains=comma_list(unlabelled_domains),
        flwr_home=flwr_home,
        cache_dir=cache_dir,
    )
    guarded(lambda: join(options, say=typer.echo), also=(ValueError,))  # JoinError among them


@app.command()
def serve(runs_dir: RunsDir = Path("runs"), port: int = 8501) -> None:
    """Serve the app over the runs folder on 127.0.0.1."""
    _serve(runs_dir, port)


def _serve(runs_dir: Path, port: int) -> None:
    from pipelines.serve import serve_app

    console.print(f"serving the app on http://127.0.0.1:{port} (Ctrl+C to stop)")
    raise typer.Exit(serve_app(runs_dir, port=port))


def main() -> None:
    """Entry point of the ``kizashi`` console script."""
    app()


if __name__ == "__main__":
    main()
