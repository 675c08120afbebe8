"""`kizashi benchmark federation`: centralised vs federated vs local-only, side by side.

One city, one skewed partition (default: 300 sites, Dir(0.1) label skew, quantity
skew, 30% without cameras), one model preset, one temporal hold-out:

- **centralised**: `pipelines.train.train_centralised` on the sites' data pooled
  (`PrivateDataSlicer.held_city`: every record, frame and reading some site
  holds, in one place, so every sample has its neighbours' data; frames of
  sites without cameras are not there), early stopping on validation;
- **federated**: FedAvg, FedProx and "ours" (default `BEST_OF_OURS`; a method
  may carry its own knobs, `fedavgm:server-lr=2:server-momentum=0`) in
  one Flower simulation (Ray starts once), with the neighbour exchange if turned
  on (`fedcore.federation.neighbour_exchange`); each final model scored
  on the same test windows, and on each site's own view of them; "best of ours"
  is picked on the validation windows;
- **local-only**: every site trains alone for the same epochs and predicts its
  own test windows; the predictions of all sites are scored together
  (`pipelines.local_only`, sites in parallel processes, one per core).

Every row is scored on the pooled data's test windows ("test") and on each
site's own view of them ("sites": its own data, plus the exchanged neighbour
context where the federation had it); both are divided by the centralised row's.

For each federated row it also says where the row loses against the centralised
model: its validation and test AUPRC with the district, time or local part of its logits
replaced by the centralised model's (`fedcore.shortfall`).

It also measures the simulation's overhead per round: wall time of the training
phase ÷ (Σ site CPU seconds of training ÷ cores), over warm rounds (round 1
includes starting Ray), and the peak RSS of the process tree. Sites count CPU
seconds, not wall seconds: the server and the simulation engine share the cores
with the sites, and wall seconds would book their work as the sites'. Table on stdout,
``benchmark.json`` in the run folder.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from datasets import City
from datasets.partition import PartitionSpec, partition_city
from datasets.partition_io import PrivateDataSlicer, read_site_info, write_federation
from fedcore.federation.neighbour_exchange import exchange_in_process
from fedcore.federation.settings import FederationSettings
from fedcore.federation.simulation import simulate_federation
from fedcore.federation.task import (
    data_settings,
    load_partition_site,
    load_pooled_data,
    model_config_from_public,
)
from fedcore.metrics import macro_auprc_ratio_interval
from fedcore.model import ModelConfig, load_model
from fedcore.shortfall import PARTS, shortfall_by_part
from fedcore.training import evaluate, predict
from pipelines.cities import CitySource, obtain_city
from pipelines.defaults import BENCH_DAYS, BENCH_DISTRICTS
from pipelines.federate import parse_overrides, round_line
from pipelines.local_only import run_local_only
from pipelines.partition_commands import idle_sites_line, summarize_sites, untrained_sites
from pipelines.process_memory import PeakMemory
from pipelines.runs import new_run_dir, write_manifest
from pipelines.site_pool import site_view_scores
from pipelines.train import TrainOptions, train_centralised

Progress = Callable[[str], None]
BASELINES = ("fedavg", "fedprox")
SPLITS = ("validation", "test")
# Our best measured method at 300 sites (README, "Federation"): FedSGD with a
# server Adam. Each round 15 sites (5%, in cycles) send one full-batch gradient
# taken sharpness-aware (SAM at 0.05), Flower's FedAdam steps on their mean as
# the centralised AdamW would, and a short server moving average (0.9) is what
# is scored, every 5th round, and kept: 400 such rounds, whatever the
# benchmark's ``rounds`` gives the baselines. Before it: FedAvgM with a doubled
# step, no momentum, gradient-weighted means and 30% of sites a round.
BEST_OF_OURS = (
    "fedadam:server-lr=0.004:server-beta1=0.9:server-beta2=0.999:server-tau=1e-8"
    ":site-optimiser=sgd:lr=1:local-steps=1:batch-size=1024:gradient-weighting=false"
    ":fraction-train=0.05:site-sampling=cycle:sam-radius=0.05:lr-schedule=constant"
    ":server-ema=0.9:site-eval=false:evaluate-every=5:num-rounds=400"
)


@dataclass(frozen=True)
class FederationBenchOptions:
    """What the benchmark partitions, trains and compares.

    Attributes:
        city: Where the city comes from.
        n_sites: Edge sites.
        alpha: Dirichlet label skew (None: none).
        quantity_skew: Lognormal sigma of site sizes.
        share_without_cameras: Share of sites without cameras.
        rounds: Federated rounds (local-only sites train as many epochs as they
            would in all rounds of the federation).
        fraction_train: Share of sites sampled to train each round (Flower's
            ``fraction_train``); at hundreds of sites a round need not ask all.
        local_epochs: Epochs per site and round.
        local_steps: Fewest optimiser steps per site and round (see
            `FederationSettings.local_steps`). 20: at 30 sites (60 districts,
            Dir(0.1)) one epoch a round (3-11 steps a site) left FedAvgM at
            validation AUPRC 0.056 after 6 rounds, 20 steps at 0.075.
        preset: RiskNet preset.
        ours: Our methods to compare (the best on validation is "best of ours"):
            each a strategy, optionally with its own run-config knobs
            (`method_settings`).
        central_epochs: Most epochs of the centralised trainer (early stopping).
        lr: Site learning rate.
        batch_size: Site batch size.
        seed: Seed of the partition, models and shuffling.
        cores: Cores of the simulation (None: all).
        select_round: Which round's model each federated method keeps (its
            row's model): ``best`` on validation, as the centralised trainer
            keeps its best epoch, or ``last``, the model at the end of the
            site learning rate's decay. Validation is noisy while that rate is
            high, and "best" can keep a mid-run spike (README, "Federation").
        neighbour_exchange: Federated sites pool their neighbour sums before
            round 1 (see `FederationSettings.neighbour_exchange`). Off by default:
            at 300 sites it did not lift the federated models' test AUPRC.
    """

    city: CitySource = CitySource(n_districts=BENCH_DISTRICTS, days=BENCH_DAYS)
    n_sites: int = 300
    alpha: float | None = 0.1
    quantity_skew: float = 1.0
    share_without_cameras: float = 0.3
    rounds: int = 10
    fraction_train: float = 1.0
    local_epochs: int = 1
    local_steps: int = 20
    preset: str = "tiny"
    ours: tuple[str, ...] = (BEST_OF_OURS,)
    central_epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0
    cores: int | None = None
    select_round: str = "best"
    neighbour_exchange: bool = False


def method_settings(base: FederationSettings, method: str) -> FederationSettings:
    """The settings of one compared method: ``base`` with its strategy and knobs.

    ``method`` is a strategy, or a strategy with run-config knobs of its own,
    ``strategy:key=value:key=value``: ``fedavgm:server-lr=2:server-momentum=0`` is
    FedAvg with a doubled global step. Baselines and other methods keep ``base``.

    Raises:
        ValueError: An unknown strategy or key, or a value of the wrong type.
    """
    strategy, *pairs = method.split(":")
    try:
        knobs = parse_overrides(pairs)
    except ValueError as error:
        raise ValueError(f"method {method!r}: {error}") from None
    return FederationSettings.from_run_config(
        {**base.to_run_config(), **knobs, "strategy": strategy.strip()}
    )


def _scores(model, data, split: str) -> dict:
    scores = evaluate(model, data, data.split[split])
    return {key: value for key, value in scores.items() if math.isfinite(value)}


def days_of_test_windows(data) -> np.ndarray:
    """The UTC day of each of the pooled data's test windows: the bootstrap's blocks."""
    starts = data.samples.starts[data.samples.window[data.split["test"]]]
    return (starts.normalize() - starts.normalize().min()).days.to_numpy()


def held_out_probabilities(model, data) -> dict[str, np.ndarray]:
    """A model's event probabilities on the pooled validation and test windows."""
    return {split: predict(model, data, data.split[split])["probability"] for split in SPLITS}


def ratio_interval(data, reference: np.ndarray, candidate: np.ndarray) -> list[float]:
    """90% interval of the candidate's test macro AUPRC over the reference's (day blocks).

    Both are probabilities on the pooled test windows (`held_out_probabilities`).
    See `fedcore.metrics.macro_auprc_ratio_interval`: with the default
    benchmark's 12 test days it spans several points.
    """
    counts = data.samples.targets[data.split["test"]]
    low, high = macro_auprc_ratio_interval(counts, reference, candidate, days_of_test_windows(data))
    return [low, high]


def shortfall(data, reference: dict, candidate: dict, domains: list[str]) -> dict:
    """Where the candidate loses against the reference, on validation and on test windows.

    Its AUPRC with its district, time or local part of the logits replaced by
    the reference's (`fedcore.shortfall.shortfall_by_part`); both models'
    probabilities by split (`held_out_probabilities`). Validation has about as
    many windows as test, and the two together say which finding holds.
    """
    samples = data.samples
    return {
        split: shortfall_by_part(
            samples.targets[data.split[split]],
            reference[split],
            candidate[split],
            samples.district[data.split[split]],
            samples.window[data.split[split]],
            domains,
        )
        for split in SPLITS
    }


def run_centralised(
    config: ModelConfig,
    data,
    options: FederationBenchOptions,
    sites: list,
    method: str = "centralised (sites' data pooled)",
) -> tuple[dict, dict[str, np.ndarray]]:
    """Train on ``data`` with early stopping; test scores (city and sites' view) and time.

    Single-threaded, as every site trains: on a busy machine two torch threads
    contending for cores ran 10 steps in 88 s instead of 4 s.

    Returns:
        The row, and the model's probabilities on the pooled validation and
        test windows (the reference of every other row's interval,
        `ratio_interval`, and `shortfall`).
    """
    torch.set_num_threads(1)
    began = time.perf_counter()
    train_options = TrainOptions(max_epochs=options.central_epochs, seed=options.seed)
    model, history = train_centralised(config, data, train_options)
    row = {
        "method": method,
        "test": _scores(model, data, "test"),
        "test_sites": site_view_scores(model, sites),
        "validation": _scores(model, data, "validation"),
        "epochs": len(history),
        "wall_s": time.perf_counter() - began,
    }
    return row, held_out_probabilities(model, data)


def central_line(row: dict) -> str:
    """One progress line for a centralised reference."""
    return (
        f"{row['method']}: {row['epochs']} epochs, {row['wall_s']:.0f} s, test macro AUPRC "
        f"pooled {row['test'].get('auprc-macro', float('nan')):.3f}, "
        f"sites' view {row['test_sites'].get('auprc-macro', float('nan')):.3f}"
    )


def round_overhead(rounds: list[dict], cores: int) -> dict:
    """Simulation overhead: training wall time ÷ (Σ site CPU seconds ÷ cores), warm rounds.

    Round 1 includes starting the simulation (Ray, imports, site data loading),
    so it is reported apart; with a single round it is all there is.
    """
    warm = rounds[1:] or rounds
    wall = sum(record["train_wall_seconds"] for record in warm)
    compute = sum(record["compute_seconds"] for record in warm)
    return {
        "overhead": wall / (compute / cores) if compute > 0 else None,
        "warm_round_wall_s": wall / len(warm),
        "first_round_wall_s": rounds[0]["train_wall_seconds"],
        "rounds_counted": len(warm),
    }


def run_federated(
    base: FederationSettings,
    methods: list[str],
    pooled,
    sites: list,
    n_sites: int,
    cores: int,
    bench_dir: Path,
    progress: Progress,
    reference: dict[str, np.ndarray],
) -> tuple[list[dict], dict]:
    """Every method in one simulation; their rows and the simulation's peak memory.

    ``reference``: the centralised model's validation and test probabilities,
    against which each row gets its ``x_centralised_interval`` (`ratio_interval`)
    and its ``shortfall``.
    """
    runs = [
        method_settings(base, method).with_updates(
            run_dir=str(bench_dir / f"fed-{method.replace(':', '_')}")
        )
        for method in methods
    ]
    by_dir = {
        settings.run_dir: (method, settings) for method, settings in zip(methods, runs, strict=True)
    }

    def report(record: dict) -> None:
        method, settings = by_dir[record["run_dir"]]
        progress(f"{method}: {round_line(record, settings.num_rounds)}")

    began = time.perf_counter()
    with PeakMemory() as memory:
        simulate_federation(
            runs,
            n_sites,
            cores=cores,
            progress=report,
        )
    simulation = {"wall_s": time.perf_counter() - began, "peak_rss_gb": memory.peak_bytes / 2**30}
    rows = []
    for method, settings in zip(methods, runs, strict=True):
        run_dir = Path(settings.run_dir)
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        rounds = [line for line in lines if line["kind"] == "round"]
        kept = [line for line in lines if line["kind"] == "model"][-1]
        model = load_model(run_dir / "model")
        candidate = held_out_probabilities(model, pooled)
        rows.append(
            {
                "method": method,
                "test": _scores(model, pooled, "test"),
                "x_centralised_interval": ratio_interval(
                    pooled, reference["test"], candidate["test"]
                ),
                "shortfall": shortfall(pooled, reference, candidate, list(model.config.domains)),
                "test_sites": site_view_scores(model, sites),
                "validation": _scores(model, pooled, "validation"),
                "rounds": len(rounds),
                "selected_round": kept["round"],
                "curve": [(line.get("central") or {}).get("auprc-macro") for line in rounds],
                "wall_s": sum(record["wall_seconds"] for record in rounds),
                "failures": sum(len(record["failures"]) for record in rounds),
                **round_overhead(rounds, cores),
            }
        )
    return rows, simulation


def run_federation_benchmark(
    options: FederationBenchOptions, runs_dir: Path, progress: Progress = print
) -> tuple[Path, dict]:
    """Run every method on one partition; write ``benchmark.json``; return the result."""
    shared = FederationSettings(select_round=options.select_round)  # bad values fail here
    for method in options.ours:
        method_settings(shared, method)  # a bad method fails before any training
    city, _ = obtain_city(options.city)
    spec = PartitionSpec(
        n_sites=options.n_sites,
        dirichlet_alpha=options.alpha,
        quantity_skew=options.quantity_skew,
        share_without_cameras=options.share_without_cameras,
        seed=options.seed,
    )
    federation = partition_city(city, spec)  # bad specs fail before anything is written
    bench_dir = new_run_dir(runs_dir, "bench-federation")
    progress(f"{city.name}: {len(city.districts)} districts -> {options.n_sites} sites")
    idle = untrained_sites(summarize_sites(city, federation.sites))
    if idle:
        progress(idle_sites_line(len(idle), options.n_sites))
    partitions = write_federation(federation, city, bench_dir / "partitions")
    held_dir = PrivateDataSlicer(city).held_city(federation.sites).save(bench_dir / "pooled")
    cores = options.cores or os.cpu_count() or 1
    base = federation_base(options, partitions, held_dir)
    config = model_config_from_public(base, City.load(partitions / "public"))
    pooled = load_pooled_data(str(held_dir), data_settings(base))
    facts = {
        "kind": "bench-federation",
        "config": {**asdict(options), "city": str(options.city)},
        "command": " ".join(sys.argv),
        "data_fingerprint": city.fingerprint(),
    }
    write_manifest(bench_dir, status="running", **facts)
    sites = load_sites(base, options.n_sites)
    progress("centralised training on the sites' data pooled")
    central, reference = run_centralised(config, pooled, options, sites)
    progress(central_line(central))
    methods = list(dict.fromkeys([*BASELINES, *options.ours]))
    federated, simulation = run_federated(
        base, methods, pooled, sites, options.n_sites, cores, bench_dir, progress, reference
    )
    progress("local-only training")
    local = run_local_only(config, base, options.n_sites, cores)
    local["test_sites"], local["test"] = local["test"], {}
    result = summarise(central, federated, local, options)
    result.update({"simulation": simulation, "cores": cores, "n_sites": options.n_sites})
    result["sites_without_training"] = idle
    result.update({"partition": asdict(spec), "command": facts["command"]})
    (bench_dir / "benchmark.json").write_text(json.dumps(result, indent=2, default=str))
    write_manifest(bench_dir, status="finished", **facts)
    return bench_dir, result


def federation_base(
    options: FederationBenchOptions, partitions: Path, held_dir: Path
) -> FederationSettings:
    """The settings every federated method shares, before its own knobs."""
    return FederationSettings(
        partitions_dir=str(partitions),
        eval_city_dir=str(held_dir),
        central_eval_split="validation",
        select_round=options.select_round,
        preset=options.preset,
        num_rounds=options.rounds,
        fraction_train=options.fraction_train,
        local_epochs=options.local_epochs,
        local_steps=options.local_steps,
        lr=options.lr,
        batch_size=options.batch_size,
        min_train_sites=max(1, min(2, options.n_sites)),
        keep_checkpoints=1,
        neighbour_exchange=options.neighbour_exchange,
        seed=options.seed,
    )


def load_sites(settings: FederationSettings, n_sites: int) -> list:
    """The first ``n_sites`` sites' data, each as its own folder gives it.

    With the neighbour exchange, each with the pooled neighbour context, as the
    federation's sites had it.
    """
    partitions = Path(settings.partitions_dir)
    site_dirs = sorted((partitions / "sites").iterdir())[:n_sites]
    data = data_settings(settings)
    sites = [
        load_partition_site(str(path), str(partitions / "public"), data)[1] for path in site_dirs
    ]
    if settings.neighbour_exchange:
        sites = exchange_in_process(sites, [read_site_info(path) for path in site_dirs])
    return sites


def summarise(central: dict, federated: list[dict], local: dict, options) -> dict:
    """Rows in table order, each with its fraction of the centralised macro AUPRC.

    ``x_centralised``: the row's AUPRC on the pooled data's test windows over the
    centralised row's; ``x_centralised_sites``: the same on the sites' own view
    of the test windows.
    """
    ours = [row for row in federated if row["method"] not in BASELINES]
    best = max(ours, key=lambda row: row["validation"].get("auprc-macro", -1.0), default=None)
    rows = [central, *[row for row in federated if row["method"] in BASELINES]]
    if best is not None:
        rows.append({**best, "method": f"best of ours: {best['method']}"})
    rows += [row for row in ours if row is not best] + [local]
    for column, key in (("x_centralised", "test"), ("x_centralised_sites", "test_sites")):
        reference = central.get(key, {}).get("auprc-macro")
        for row in rows:
            value = row.get(key, {}).get("auprc-macro")
            row[column] = value / reference if value is not None and reference else None
    return {"rows": rows, "best_of_ours": best["method"] if best else None}


def benchmark_table(result: dict) -> Table:
    """The rows as a rich table."""
    table = Table(title=f"Federation benchmark: {result['n_sites']} sites, test windows")
    for column in ("method", "AUPRC pooled", "x central", "x central 90%", "AUPRC sites",
                   "x central (sites)",
                   "AUROC pooled", "rounds/epochs", "wall s", "warm s/round", "overhead",
                   "failures"):  # fmt: skip
        table.add_column(column, justify="left" if column == "method" else "right")

    def number(value, digits=3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for row in result["rows"]:
        table.add_row(
            row["method"],
            number(row["test"].get("auprc-macro")),
            number(row.get("x_centralised"), 3),
            interval_text(row.get("x_centralised_interval")),
            number(row.get("test_sites", {}).get("auprc-macro")),
            number(row.get("x_centralised_sites"), 3),
            number(row["test"].get("auroc-macro")),
            rounds_text(row),
            number(row.get("wall_s"), 1),
            number(row.get("warm_round_wall_s"), 2),
            number(row.get("overhead"), 2),
            str(row.get("failures", "-")),
        )
    simulation = result["simulation"]
    table.caption = (
        f"simulation: {simulation['wall_s']:.0f} s, peak RSS {simulation['peak_rss_gb']:.2f} GB "
        f"(process tree), {result['cores']} cores; overhead = training wall per round ÷ "
        "(Σ site CPU seconds ÷ cores), rounds ≥ 2; rounds: the round kept (best on validation "
        "or the last, by select-round) / rounds run; "
        "x central 90%: a paired bootstrap over test days of the ratio; "
        "pooled: the test windows of the sites' data pooled; "
        "sites: each site's own view of them (its data, and the neighbour context it was given)"
    )
    return table


def interval_text(interval: list[float] | None) -> str:
    """``low-high`` of a ratio interval, or ``-`` without one."""
    if not interval or any(math.isnan(end) for end in interval):
        return "-"
    return f"{interval[0]:.2f}-{interval[1]:.2f}"


def rounds_text(row: dict) -> str:
    """Rounds (federated: ``selected/run``) or epochs (centralised) of a row."""
    if "selected_round" in row:
        return f"{row['selected_round']}/{row['rounds']}"
    return str(row.get("rounds", row.get("epochs", "-")))


def domain_table(result: dict) -> Table:
    """AUPRC per domain of every row on the pooled test windows: where a method loses."""
    domains = [
        key.removeprefix("auprc-")
        for key in result["rows"][0]["test"]
        if key.startswith("auprc-") and key != "auprc-macro"
    ]
    table = Table(title="AUPRC per domain, pooled test windows (sites' view for local-only)")
    table.add_column("method")
    for name in domains:
        table.add_column(name, justify="right")
    for row in result["rows"]:
        scores = row["test"] or row.get("test_sites", {})
        table.add_row(
            row["method"],
            *(
                f"{scores[f'auprc-{name}']:.3f}" if f"auprc-{name}" in scores else "-"
                for name in domains
            ),
        )
    return table


def shortfall_table(result: dict) -> Table:
    """Each federated row's macro AUPRC with one part of its logits the centralised model's.

    The part that lifts a row to the centralised score is where it loses
    (`fedcore.shortfall`).
    """
    table = Table(
        title="Where each federated row loses: macro AUPRC with one part of its logits "
        "from the centralised model",
        caption="district: which districts are riskier; time: when the whole city is; "
        "local: this district at this time (fedcore/shortfall.py)",
    )
    columns = ["candidate", *(f"with reference {part}" for part in PARTS), "reference"]
    table.add_column("method")
    table.add_column("windows")
    for name in ("own", *(f"central's {part}" for part in PARTS), "central"):
        table.add_column(name, justify="right")
    for row in result["rows"]:
        for split, parts in row.get("shortfall", {}).items():
            scores = [parts[name].get("auprc-macro") for name in columns]
            cells = ("-" if value is None else f"{value:.3f}" for value in scores)
            table.add_row(row["method"], split, *cells)
    return table


def print_benchmark(result: dict) -> None:
    """The tables on stdout."""
    console = Console(width=160)
    console.print(benchmark_table(result))
    console.print(domain_table(result))
    console.print(shortfall_table(result))
