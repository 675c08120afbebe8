"""`kizashi benchmark federation` on a tiny setting, and its arithmetic on hand-made rounds."""

import json
import math

import pytest
from typer.testing import CliRunner

import pipelines.bench_federation as bench_federation
from fedcore.federation.server_app import SETTINGS_FILE
from fedcore.federation.settings import FederationSettings
from fedcore.model import build_model
from fedcore.site_data import DataSettings, prepare_site_data
from pipelines.bench_federation import (
    BEST_OF_OURS,
    FederationBenchOptions,
    benchmark_table,
    days_of_test_windows,
    domain_table,
    federation_base,
    held_out_probabilities,
    interval_text,
    method_settings,
    ratio_interval,
    round_overhead,
    run_federation_benchmark,
    shortfall_table,
    summarise,
)
from pipelines.cities import CitySource
from pipelines.cli import app
from pipelines.train import model_config


def test_overhead_counts_warm_rounds_against_compute_per_core():
    rounds = [
        {"train_wall_seconds": 30.0, "compute_seconds": 4.0},
        {"train_wall_seconds": 2.0, "compute_seconds": 3.0},
        {"train_wall_seconds": 4.0, "compute_seconds": 5.0},
    ]
    out = round_overhead(rounds, cores=2)
    assert out["overhead"] == pytest.approx(6.0 / (8.0 / 2))
    assert out["first_round_wall_s"] == 30.0 and out["warm_round_wall_s"] == 3.0
    assert round_overhead(rounds[:1], cores=1)["overhead"] == pytest.approx(7.5)


def test_best_of_ours_is_picked_on_validation_and_scaled_by_centralised():
    central = {
        "method": "centralised (sites' data pooled)",
        "test": {"auprc-macro": 0.5},
        "test_sites": {"auprc-macro": 0.4},
    }

    def row(method, test, validation, sites):
        return {
            "method": method,
            "test": {"auprc-macro": test},
            "validation": {"auprc-macro": validation},
            "test_sites": {"auprc-macro": sites},
        }

    federated = [
        row("fedavg", 0.4, 0.4, 0.3),
        row("scaffold", 0.49, 0.3, 0.3),
        row("fedbn", 0.45, 0.35, 0.36),
    ]
    local = {"method": "local-only", "test": {}, "test_sites": {"auprc-macro": 0.2}}
    result = summarise(central, federated, local, None)
    methods = [row["method"] for row in result["rows"]]
    assert methods == [
        "centralised (sites' data pooled)",
        "fedavg",
        "best of ours: fedbn",
        "scaffold",
        "local-only",
    ]
    best = result["rows"][2]
    assert best["x_centralised"] == pytest.approx(0.9)  # 0.45 / 0.5 on the pooled data
    assert best["x_centralised_sites"] == pytest.approx(0.9)  # 0.36 / 0.4 on the sites' view
    assert result["rows"][-1]["x_centralised"] is None
    assert result["rows"][-1]["x_centralised_sites"] == pytest.approx(0.5)


def test_domain_table_shows_each_rows_auprc_per_domain():
    scores = {"auprc-macro": 0.3, "auprc-crowd": 0.4, "auprc-disaster": 0.2, "auroc-crowd": 0.7}
    central = {"method": "central", "test": scores}
    fed = {"method": "scaffold", "test": {"auprc-macro": 0.2, "auprc-crowd": 0.35}}
    local = {"method": "local-only", "test": {}, "test_sites": {"auprc-disaster": 0.05}}
    table = domain_table({"rows": [central, fed, local]})
    assert [column.header for column in table.columns] == ["method", "crowd", "disaster"]
    cells = [list(column.cells) for column in table.columns]
    assert cells[1] == ["0.400", "0.350", "-"]
    assert cells[2] == ["0.200", "-", "0.050"]


def test_shortfall_table_shows_each_federated_row_with_each_part_from_the_centralised_model():
    parts = {
        "candidate": {"auprc-macro": 0.40},
        "with reference district": {"auprc-macro": 0.41},
        "with reference time": {"auprc-macro": 0.39},
        "with reference local": {"auprc-macro": 0.49},
        "reference": {"auprc-macro": 0.50},
    }
    central = {"method": "central", "test": {"auprc-macro": 0.5}}
    fed = {"method": "fedavg", "test": {"auprc-macro": 0.4}, "shortfall": {"test": parts}}
    table = shortfall_table({"rows": [central, fed]})
    assert table.row_count == 1
    assert [next(iter(column.cells)) for column in table.columns] == [
        "fedavg", "test", "0.400", "0.410", "0.390", "0.490", "0.500",
    ]  # fmt: skip


@pytest.mark.slow
def test_benchmark_runs_every_method_on_a_tiny_partition(tiny_city_dir, tmp_path):
    options = FederationBenchOptions(
        city=CitySource(city_dir=tiny_city_dir),
        n_sites=5,
        rounds=2,
        preset="tiny",
        ours=("scaffold:server-lr=1.5",),
        central_epochs=1,
        cores=2,
        neighbour_exchange=True,
    )
    bench_dir, result = run_federation_benchmark(options, tmp_path, progress=lambda line: None)
    saved = json.loads((bench_dir / "benchmark.json").read_text())
    methods = [row["method"] for row in saved["rows"]]
    assert methods == [
        "centralised (sites' data pooled)",
        "fedavg",
        "fedprox",
        "best of ours: scaffold:server-lr=1.5",
        "local-only",
    ]
    for row in saved["rows"]:
        assert 0 < row["test_sites"]["auprc-macro"] <= 1
    for row in saved["rows"][:-1]:
        assert 0 < row["test"]["auprc-macro"] <= 1
    for row in saved["rows"][1:4]:
        assert row["rounds"] == 2 and row["overhead"] > 0 and row["failures"] == 0
        assert 1 <= row["selected_round"] <= 2 and len(row["curve"]) == 2
    for row in saved["rows"][1:4]:  # each federated row against the centralised model
        low, high = row["x_centralised_interval"]
        assert low <= high or math.isnan(low)
    assert 0 < saved["simulation"]["peak_rss_gb"] < 8
    assert saved["sites_without_training"] == []  # 5 sites over the tiny city's districts
    assert benchmark_table(result).row_count == domain_table(result).row_count == 5
    for row in saved["rows"][1:4]:  # where each federated row loses, part by part
        for split in ("validation", "test"):
            parts = row["shortfall"][split]
            central = saved["rows"][0][split]["auprc-macro"]
            assert parts["reference"]["auprc-macro"] == pytest.approx(central)
            assert parts["candidate"]["auprc-macro"] == pytest.approx(row[split]["auprc-macro"])
    assert shortfall_table(result).row_count == 6  # 3 federated rows x (validation, test)
    fedavg_lines = (bench_dir / "fed-fedavg" / "metrics.jsonl").read_text().splitlines()
    (exchange,) = [json.loads(x) for x in fedavg_lines if '"neighbour-exchange"' in x]
    assert exchange["contributed"] == exchange["stored"] == 5 and exchange["failures"] == []
    ran = json.loads((bench_dir / "fed-scaffold_server-lr=1.5" / SETTINGS_FILE).read_text())
    assert (ran["strategy"], ran["server-lr"]) == ("scaffold", 1.5)  # the method's own knob ran


def test_a_method_is_a_strategy_with_its_own_knobs_over_the_shared_settings():
    base = FederationSettings(lr=0.01, local_steps=20, server_lr=0.5)
    plain = method_settings(base, "fedprox")
    assert (plain.strategy, plain.lr, plain.server_lr, plain.local_steps) == (
        "fedprox",
        0.01,
        0.5,
        20,
    )
    tuned = method_settings(base, "fedavgm:server-lr=2:server-momentum=0")
    assert (tuned.strategy, tuned.server_lr, tuned.server_momentum) == ("fedavgm", 2.0, 0.0)
    assert (tuned.lr, tuned.local_steps) == (0.01, 20)
    for bad in ("fedavgm:server-lr", "fedavgm:no-such-knob=1", "nostrategy", "fedavgm:lr=fast"):
        with pytest.raises(ValueError):
            method_settings(base, bad)


def test_the_cli_passes_ours_and_the_round_rule_with_our_best_method_by_default(
    monkeypatch, tmp_path
):
    best = method_settings(FederationSettings(fraction_train=0.1), BEST_OF_OURS)
    assert (best.strategy, best.site_optimiser, best.local_steps) == ("fedadam", "sgd", 1)
    assert (best.sam_radius, best.fraction_train, best.num_rounds) == (0.05, 0.05, 400)
    given = []

    def record(options, runs_dir, progress):
        given.append((options.ours, options.select_round))
        raise ValueError("stop before training")

    monkeypatch.setattr(bench_federation, "run_federation_benchmark", record)
    runner = CliRunner()
    runner.invoke(app, ["benchmark", "federation", "--runs-dir", str(tmp_path)])
    runner.invoke(app, ["benchmark", "federation", "--runs-dir", str(tmp_path), "--ours", "fedbn"])
    runner.invoke(
        app, ["benchmark", "federation", "--runs-dir", str(tmp_path), "--select-round", "last"]
    )
    assert given == [
        ((BEST_OF_OURS,), "best"),
        (("fedbn",), "best"),
        ((BEST_OF_OURS,), "last"),
    ]


def test_the_ratio_interval_draws_test_days_and_a_model_matches_itself(tiny_city):
    data = prepare_site_data(tiny_city, DataSettings())
    days = days_of_test_windows(data)
    starts = data.samples.starts[data.samples.window[data.split["test"]]]
    assert len(days) == len(data.split["test"]) and days.min() == 0
    assert len(set(days.tolist())) == len(set(starts.date))
    model = build_model(model_config("tiny", data, list(DataSettings().domains)))
    itself = held_out_probabilities(model, data)["test"]
    assert ratio_interval(data, itself, itself) == pytest.approx([1.0, 1.0])
    assert interval_text([0.9123, 1.0561]) == "0.91-1.06"
    assert interval_text([math.nan, math.nan]) == interval_text(None) == "-"


def test_every_federated_method_keeps_the_round_the_benchmark_names(tmp_path):
    options = FederationBenchOptions(rounds=144, select_round="last", neighbour_exchange=True)
    base = federation_base(options, tmp_path / "partitions", tmp_path / "pooled")
    assert (base.select_round, base.num_rounds, base.neighbour_exchange) == ("last", 144, True)
    fedavgm = method_settings(base, "fedavgm:server-lr=2:fraction-train=0.3")
    assert (fedavgm.select_round, fedavgm.num_rounds, fedavgm.fraction_train) == ("last", 144, 0.3)
    ours = method_settings(base, BEST_OF_OURS)  # its own rounds, the benchmark's rule
    assert (ours.select_round, ours.num_rounds, ours.neighbour_exchange) == ("last", 400, True)
    assert federation_base(FederationBenchOptions(), tmp_path, tmp_path).select_round == "best"
    bad = FederationBenchOptions(select_round="middle")
    with pytest.raises(ValueError, match="select-round"):
        run_federation_benchmark(bad, tmp_path / "runs", progress=lambda line: None)
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_the_benchmark_city_is_the_same_from_the_cli_and_from_python(monkeypatch, tmp_path):
    given = []

    def record(options, runs_dir, progress):
        given.append(options.city)
        raise ValueError("stop before training")

    monkeypatch.setattr(bench_federation, "run_federation_benchmark", record)
    CliRunner().invoke(app, ["benchmark", "federation", "--runs-dir", str(tmp_path)])
    assert given == [FederationBenchOptions().city]
    assert (given[0].n_districts, given[0].days) == (400, 60)  # 300 sites hold 1+ districts each
