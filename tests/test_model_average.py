"""The server's moving average of the global model: its arithmetic, and a run that keeps it."""

import json

import numpy as np
import pytest
from flwr.app import ArrayRecord

from fedcore.federation.checkpoints import read_checkpoint
from fedcore.federation.client_app import app as client_app
from fedcore.federation.model_average import ModelAverage
from fedcore.federation.server_app import run_federation
from fedcore.federation.task import (
    arrays_from_numpy,
    data_settings,
    load_pooled_data,
    model_from_arrays,
)
from fedcore.model import load_model
from fedcore.training import evaluate
from tests.federation_helpers import DirectGrid, tiny_partitions, tiny_settings

__all__ = ["tiny_partitions"]


def _record(weight: float, count: int) -> ArrayRecord:
    return arrays_from_numpy(
        {"w": np.full((2, 2), weight, dtype=np.float32), "n": np.array(count, dtype=np.int64)}
    )


def test_average_starts_at_the_first_model_then_blends_floats_and_keeps_the_latest_counter():
    average = ModelAverage(0.75)
    first = average.update(_record(4.0, 1))
    np.testing.assert_array_equal(first["w"].numpy(), np.full((2, 2), 4.0))
    second = average.update(_record(8.0, 2))
    np.testing.assert_allclose(second["w"].numpy(), np.full((2, 2), 0.75 * 4.0 + 0.25 * 8.0))
    assert second["w"].numpy().dtype == np.float32
    assert int(second["n"].numpy()) == 2
    resumed = ModelAverage(0.75, average.state)  # as a checkpoint restores it
    np.testing.assert_allclose(resumed.update(_record(0.0, 3))["w"].numpy(), 0.75 * 5.0)


def test_without_decay_the_raw_model_is_scored_and_nothing_is_kept():
    average = ModelAverage(0.0)
    raw = _record(3.0, 1)
    assert average.update(raw) is raw and average.of(raw) is raw and average.state == {}
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="server-ema"):
            ModelAverage(bad)


def test_run_scores_selects_saves_and_resumes_the_average(tiny_partitions, tiny_city_dir, tmp_path):
    settings = tiny_settings(
        tiny_partitions,
        tiny_city_dir,
        tmp_path / "whole",
        num_rounds=3,
        lr=0.03,
        lr_schedule="constant",
        central_eval_split="validation",
        keep_checkpoints=0,
        server_ema=0.5,
    )
    run_federation(DirectGrid(client_app), settings)
    checkpoints = [read_checkpoint(settings.run_dir, r) for r in (1, 2, 3)]
    expected = dict(checkpoints[0].model)
    for checkpoint in checkpoints:
        if checkpoint.round > 1:  # a_r = 0.5 a_(r-1) + 0.5 x_r, from the raw models
            expected = {
                k: 0.5 * v + 0.5 * checkpoint.model[k] if v.dtype.kind == "f" else v
                for k, v in expected.items()
            }
        for key, value in expected.items():
            np.testing.assert_allclose(checkpoint.average[key], value, rtol=1e-5, atol=1e-6)
    lines = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    rounds = {line["round"]: line for line in lines if line["kind"] == "round"}
    pooled = load_pooled_data(str(tiny_city_dir), data_settings(settings))
    config = load_model(tmp_path / "whole" / "model").config
    for checkpoint in checkpoints:  # central evaluation scored the average, not the raw model
        average = model_from_arrays(config, arrays_from_numpy(checkpoint.average))
        score = evaluate(average, pooled, pooled.split["validation"])["auprc-macro"]
        assert rounds[checkpoint.round]["central"]["auprc-macro"] == pytest.approx(score)
    kept = [line for line in lines if line["kind"] == "model"][-1]["round"]
    saved = load_model(tmp_path / "whole" / "model").state_dict()
    for key, value in saved.items():
        np.testing.assert_array_equal(value.numpy(), checkpoints[kept - 1].average[key])

    broken = settings.with_updates(run_dir=str(tmp_path / "broken"), num_rounds=2)
    run_federation(DirectGrid(client_app), broken)
    run_federation(DirectGrid(client_app), broken.with_updates(num_rounds=3, resume=True))
    resumed = read_checkpoint(broken.run_dir, 3).average
    for key, value in checkpoints[2].average.items():
        np.testing.assert_allclose(resumed[key], value, rtol=1e-5, atol=1e-6)
