"""Central training and the side-by-side evaluation, on a tiny city."""

import json

import pytest
import torch
from typer.testing import CliRunner

from datasets.synthetic import make_city_and_oracle
from fedcore.model import build_model
from fedcore.site_data import DataSettings, prepare_site_data
from fedcore.training import evaluate, sharpness_aware_gradients, train_epochs
from pipelines.cli import app
from pipelines.evaluate import GBM, VARIANTS, run_evaluation
from pipelines.jobs import evaluation_table
from pipelines.train import TrainOptions, model_config, train_centralised


@pytest.fixture(scope="module")
def world():
    city, oracle = make_city_and_oracle(n_districts=12, days=6, seed=3)
    settings = DataSettings()
    return city, oracle, settings, prepare_site_data(city, settings)


def test_early_stopping_keeps_the_best_epoch(world):
    _, _, settings, data = world
    config = model_config("tiny", data, list(settings.domains))
    model, history = train_centralised(config, data, TrainOptions(max_epochs=4, patience=1))
    assert 1 <= len(history) <= 4
    assert [record["epoch"] for record in history] == list(range(1, len(history) + 1))
    assert not model.training


def test_the_kept_model_is_the_moving_average_of_the_weights(world):
    _, _, settings, data = world
    config = model_config("tiny", data, list(settings.domains))
    torch.manual_seed(0)
    initial = build_model(config).state_dict()
    raw, _ = train_centralised(config, data, TrainOptions(max_epochs=1, ema_decay=0.0))
    # An average that barely moves stays by its start (the weights after the first
    # step); the raw weights travel on.
    still, _ = train_centralised(config, data, TrainOptions(max_epochs=1, ema_decay=1 - 1e-9))

    def travelled(model):
        state = model.state_dict()
        return sum(float((state[name] - initial[name]).norm() ** 2) for name in initial) ** 0.5

    assert travelled(still) < 0.6 * travelled(raw)
    # What was validated is what is kept: the best epoch's score is the kept model's.
    averaged, history = train_centralised(config, data, TrainOptions(max_epochs=3, patience=3))
    best = max(record["auprc-macro"] for record in history)
    kept = evaluate(averaged, data, data.split["validation"])["auprc-macro"]
    assert kept == pytest.approx(best)


def test_sharpness_aware_gradients_are_those_up_the_slope_and_the_weights_stay():
    """SAM's gradient is the objective's at w + r g/|g|; the weights end where they began."""
    model = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
    start = model.weight.detach().clone()

    def objective():
        return (model.weight**4).sum() / 4  # gradient w**3

    objective().backward()
    slope = start**3
    sharpness_aware_gradients(model, objective, radius=0.1)
    assert torch.equal(model.weight.detach(), start)
    expected = (start + 0.1 * slope / slope.norm()) ** 3
    assert torch.allclose(model.weight.grad, expected)
    assert not torch.allclose(model.weight.grad, slope)
    model.weight.grad.zero_()  # no slope, nowhere to climb: the gradients are left alone
    sharpness_aware_gradients(model, objective, radius=0.1)
    assert torch.equal(model.weight.grad, torch.zeros_like(start))
    model.weight.grad = None  # no gradients at all: nothing to do
    sharpness_aware_gradients(model, objective, radius=0.1)
    assert model.weight.grad is None


def test_training_with_a_sharpness_radius_takes_other_steps(world):
    _, _, settings, data = world
    config = model_config("tiny", data, list(settings.domains))
    trained = {}
    for radius in (0.0, 0.0, 0.05):
        torch.manual_seed(0)
        model = build_model(config)
        train_epochs(model, data, data.split["train"], 1, 1e-3, 16, 0, sharpness=radius)
        trained.setdefault(radius, []).append(model.state_dict())
    plain, again = trained[0.0]
    assert all(torch.equal(plain[key], again[key]) for key in plain)
    (sam,) = trained[0.05]
    assert any(not torch.allclose(plain[key], sam[key]) for key in plain)


def test_every_optimiser_step_is_seen_after_it(world):
    _, _, settings, data = world
    model = build_model(model_config("tiny", data, list(settings.domains)))
    seen = []
    train_epochs(
        model, data, data.split["train"], 2, 1e-3, 16, 0, after_step=lambda m: seen.append(m)
    )
    assert len(seen) == 2 * -(-len(data.split["train"]) // 16)
    assert all(m is model for m in seen)


def test_evaluation_scores_every_rival_on_the_same_split(world):
    city, oracle, settings, data = world
    domains = list(settings.domains)
    result = run_evaluation(
        city,
        oracle,
        data,
        domains,
        "tiny",
        TrainOptions(max_epochs=1),
        [0],
        progress=lambda _: None,
    )
    variants = {row["variant"] for row in result["summary"]}
    assert set(VARIANTS) | {GBM} <= variants
    assert {f"fused, {m} removed at test" for m in ("image", "text", "sensor", "graph")} <= variants
    tested = {run["num-examples"] for run in result["runs"] if "num-examples" in run}
    assert tested == {float(len(data.split["test"]))}
    assert result["oracle"]["auprc-macro"] > 0
    assert all("fraction-of-oracle" in row for row in result["summary"])
    assert evaluation_table(result, domains).row_count == len(result["summary"]) + 1


def test_seeds_in_parallel_processes_score_as_one_after_another(world):
    city, oracle, settings, data = world
    domains = list(settings.domains)
    options = TrainOptions(max_epochs=1)
    kwargs = {"progress": lambda _: None}
    alone = run_evaluation(city, oracle, data, domains, "tiny", options, [0, 1], **kwargs)
    parallel = run_evaluation(
        city, oracle, data, domains, "tiny", options, [0, 1], jobs=2, **kwargs
    )
    assert [run["seed"] for run in parallel["runs"]] == [run["seed"] for run in alone["runs"]]
    for mine, theirs in zip(parallel["runs"], alone["runs"], strict=True):
        assert mine["variant"] == theirs["variant"]
        assert mine["auprc-macro"] == pytest.approx(theirs["auprc-macro"], nan_ok=True)


def test_kizashi_train_writes_a_run(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            "--runs-dir",
            str(tmp_path),
            "--districts",
            "12",
            "--days",
            "6",
            "--preset",
            "tiny",
            "--epochs",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = list(tmp_path.iterdir())
    assert {"manifest.json", "metrics.jsonl", "model", "predictions.parquet"} <= {
        path.name for path in run_dir.iterdir()
    }
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in epochs] == [1, 2]
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"
