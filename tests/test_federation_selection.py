"""A federated run keeps its best round on validation, as the central trainer its best epoch."""

import json

import numpy as np
import pytest

from fedcore.federation.checkpoints import _complete_rounds, read_checkpoint
from fedcore.federation.client_app import app as client_app
from fedcore.federation.selection import (
    Selection,
    round_score,
    selection_source,
    update_selection,
)
from fedcore.federation.server_app import run_federation
from fedcore.federation.settings import FederationSettings
from fedcore.model import load_model
from tests.federation_helpers import DirectGrid, tiny_partitions, tiny_settings

__all__ = ["tiny_partitions"]


def _central(score):
    return {"central": {"auprc-macro": score}}


def test_source_is_central_validation_federated_validation_or_last():
    on_validation = FederationSettings(eval_city_dir="c", central_eval_split="validation")
    assert selection_source(on_validation) == "central validation"
    # central evaluation on the test windows never selects: that would tune on the hold-out
    on_test = FederationSettings(eval_city_dir="c", central_eval_split="test")
    assert selection_source(on_test) == "last round"
    assert selection_source(on_test.with_updates(fraction_evaluate=0.5)) == "federated validation"
    assert (
        selection_source(
            FederationSettings(
                eval_city_dir="c", central_eval_split="validation", select_round="last"
            )
        )
        == "last round"
    )
    with pytest.raises(ValueError, match="select-round"):
        FederationSettings(select_round="first")


def test_best_round_wins_ties_keep_the_earlier_and_unscored_rounds_follow_the_last():
    source = "central validation"
    picked = None
    for server_round, score in enumerate([0.1, 0.3, 0.2, 0.3, float("nan")], start=1):
        picked = update_selection(picked, server_round, _central(score), source)
    assert picked == Selection(2, 0.3, source)
    federated = {"federated_evaluation": {"val-auprc-macro": 0.4}}
    assert round_score(federated, "federated validation") == 0.4
    unscored = None
    for server_round in (1, 2, 3):
        unscored = update_selection(unscored, server_round, {}, "last round")
    assert unscored.round == 3 and unscored.score is None


def _lines(run_dir, kind):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line.get("kind") == kind]


def test_run_saves_the_best_rounds_model_and_keeps_its_checkpoint_through_a_resume(
    tiny_partitions, tiny_city_dir, tmp_path
):
    settings = tiny_settings(
        tiny_partitions,
        tiny_city_dir,
        tmp_path,
        num_rounds=2,
        lr=0.03,
        lr_schedule="constant",
        central_eval_split="validation",
        keep_checkpoints=1,
        modality_weighting=False,  # a trajectory whose best round is not the last
    )
    run_federation(DirectGrid(client_app), settings)
    run_federation(DirectGrid(client_app), settings.with_updates(num_rounds=4, resume=True))
    scores = {line["round"]: line["central"]["auprc-macro"] for line in _lines(tmp_path, "round")}
    assert sorted(scores) == [1, 2, 3, 4]
    best = max(scores, key=lambda r: (scores[r], -r))
    assert best < 4, f"the rounds' scores {scores} no longer test an earlier best round"
    kept = _lines(tmp_path, "model")[-1]
    assert kept["round"] == best and kept["last_round"] == 4
    assert kept["validation_auprc_macro"] == pytest.approx(scores[best])
    assert kept["selected_by"] == "central validation"
    # the newest checkpoint and the selected one stay; the others go
    assert _complete_rounds(tmp_path) == sorted({best, 4})
    saved = load_model(tmp_path / "model").state_dict()
    expected = read_checkpoint(tmp_path, best).model
    for key, value in saved.items():
        np.testing.assert_array_equal(value.numpy(), expected[key])
