"""The server's round loop over an in-process Grid: strategies, checkpoints, resume, failures."""

import json

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord

from datasets.partition_io import read_federation
from fedcore.federation.checkpoints import latest_checkpoint
from fedcore.federation.client_app import app as client_app
from fedcore.federation.rounds import RoundFailedError
from fedcore.federation.server_app import run_federation
from fedcore.federation.settings import STRATEGIES
from fedcore.federation.site_order import error_text
from fedcore.federation.strategies import SiteAware
from fedcore.model import load_model
from tests.federation_helpers import N_SITES, DirectGrid, tiny_partitions, tiny_settings

__all__ = ["tiny_partitions"]


def _lines(run_dir, kind):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line.get("kind") == kind]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_runs_rounds_and_records_them(
    strategy, tiny_partitions, tiny_city_dir, tmp_path
):
    settings = tiny_settings(tiny_partitions, tiny_city_dir, tmp_path, strategy=strategy)
    rounds = []
    run_federation(DirectGrid(client_app), settings, progress=rounds.append)
    assert [record["round"] for record in rounds] == [1, 2]
    round_lines = _lines(tmp_path, "round")
    assert [line["round"] for line in round_lines] == [1, 2]
    for line in round_lines:
        assert len(line["sites"]) == N_SITES and line["failures"] == []
        assert np.isfinite(line["train_loss"]) and "auprc-macro" in line["central"]
    site_lines = _lines(tmp_path, "site")
    assert len(site_lines) == 2 * N_SITES
    assert {line["site"] for line in site_lines} == {f"site-{k:03d}" for k in range(N_SITES)}
    assert all(line["num_examples"] >= 0 and "val_loss" in line for line in site_lines)
    infos = {site.site_id: site for site in read_federation(tiny_partitions).sites}
    for line in site_lines:  # samples with a frame, with a report
        images, reports = line["modality_samples"]
        assert (images == 0) == infos[line["site"]].no_cameras and 0 < reports <= line[
            "num_examples"
        ]
    assert latest_checkpoint(tmp_path).round == 2
    assert load_model(tmp_path / "model").config.preset == "tiny"


def test_gradient_weighted_rounds_take_every_site_s_reply(tiny_partitions, tiny_city_dir, tmp_path):
    settings = tiny_settings(tiny_partitions, tiny_city_dir, tmp_path, gradient_weighting=True)
    final = run_federation(DirectGrid(client_app), settings)
    for line in _lines(tmp_path, "round"):
        assert len(line["sites"]) == N_SITES and line["failures"] == []
    assert all(np.isfinite(array.numpy()).all() for array in final.values())


class _ReversedGrid(DirectGrid):
    """Replies arrive in reverse order, as the simulation's arrive in varying order."""

    def send_and_receive(self, messages, *, timeout=None):
        return super().send_and_receive(messages, timeout=timeout)[::-1]


def test_replies_are_averaged_in_site_order_whatever_order_they_arrive_in(
    tiny_partitions, tiny_city_dir, tmp_path, monkeypatch
):
    # float sums depend on their order: site order makes a run repeat exactly
    averaged = []
    original = SiteAware.aggregate_replies

    def spy(self, server_round, replies):
        averaged.append([int(reply.metrics["site-index"]) for reply in replies])
        return original(self, server_round, replies)

    monkeypatch.setattr(SiteAware, "aggregate_replies", spy)
    run_federation(
        _ReversedGrid(client_app), tiny_settings(tiny_partitions, tiny_city_dir, tmp_path)
    )
    assert averaged == [list(range(N_SITES))] * 2


@pytest.mark.parametrize(
    ("strategy", "site_optimiser", "extra"),
    [
        ("fedadam", "adamw", {}),
        ("fedavgm", "mimelite", {}),
        ("fedavgm", "adamw", {"update_memory": 3, "fraction_train": 0.4}),
    ],
)
def test_resumed_run_ends_where_an_unbroken_run_ends(
    strategy, site_optimiser, extra, tiny_partitions, tiny_city_dir, tmp_path
):
    # The break is emulated by planning 2 rounds, then 3: a constant site learning
    # rate keeps both plans' first rounds alike (a cosine one depends on the plan).
    # Every case keeps server state a resume must restore: FedAdam's and FedAvgM's
    # moments, the moments mimelite sites step with, the sites' remembered updates.
    whole = tiny_settings(
        tiny_partitions,
        tiny_city_dir,
        tmp_path / "whole",
        strategy=strategy,
        site_optimiser=site_optimiser,
        num_rounds=3,
        lr_schedule="constant",
        **extra,
    )
    expected = run_federation(DirectGrid(client_app), whole)
    broken = whole.with_updates(run_dir=str(tmp_path / "broken"), num_rounds=2)
    run_federation(DirectGrid(client_app), broken)
    with pytest.raises(FileExistsError, match="resume"):
        run_federation(DirectGrid(client_app), broken)
    got = run_federation(DirectGrid(client_app), broken.with_updates(num_rounds=3, resume=True))
    for key in expected:
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), rtol=1e-5, atol=1e-6)
    assert [line["round"] for line in _lines(tmp_path / "broken", "round")] == [1, 2, 3]


def test_a_round_draws_the_same_sites_whatever_ids_flower_gives_the_nodes(
    tiny_partitions, tiny_city_dir, tmp_path
):
    drawn = []
    for name, node_ids in (("ordered", None), ("shuffled", [7051, 3002, 9013, 1024, 5035])):
        settings = tiny_settings(
            tiny_partitions, tiny_city_dir, tmp_path / name, fraction_train=0.4, num_rounds=3
        )
        run_federation(DirectGrid(client_app, node_ids=node_ids), settings)
        (roll_call,) = _lines(tmp_path / name, "roll-call")
        assert roll_call["sites"] == N_SITES and roll_call["failures"] == []
        drawn.append([line["sites"] for line in _lines(tmp_path / name, "round")])
    assert all(len(sites) == 2 for sites in drawn[0])
    assert drawn[0] == drawn[1]


def _failing_client(failing: set[int], in_round: int):
    def client(message, context):
        partition = int(context.node_config["partition-id"])
        if (
            partition in failing
            and int(message.content["config"].get("server-round", 0)) == in_round
        ):
            raise RuntimeError(f"injected fault at partition {partition}")
        return client_app(message, context)

    return client


def test_round_completes_without_failed_and_silent_sites(tiny_partitions, tiny_city_dir, tmp_path):
    settings = tiny_settings(tiny_partitions, tiny_city_dir, tmp_path, min_train_sites=2)
    grid = DirectGrid(_failing_client({0, 1}, in_round=2), lost={1004})
    run_federation(grid, settings)
    (roll_call,) = _lines(tmp_path, "roll-call")
    assert roll_call["nodes"] == 5 and roll_call["sites"] == 4  # node 1004 never answers
    assert [(f["site"], f["node"]) for f in roll_call["failures"]] == [("node-1004", 1004)]
    assert "no reply" in roll_call["failures"][0]["error"]
    first, second = _lines(tmp_path, "round")
    # a site silent from the start is known only by its node
    assert len(first["sites"]) == 4 and [f["site"] for f in first["failures"]] == ["node-1004"]
    assert "no reply" in first["failures"][0]["error"] and first["failures"][0]["node"] == 1004
    failures = {f["site"]: f["error"] for f in second["failures"]}
    assert set(failures) == {"site-000", "site-001", "node-1004"}
    assert "injected fault at partition 0" in failures["site-000"]
    assert sorted(second["sites"]) == ["site-002", "site-003"]


def _tampering_client(in_round: int):
    """Sites 0-3 send, in ``in_round``, replies that cannot be averaged."""

    def client(message, context):
        reply = client_app(message, context)
        partition = int(context.node_config["partition-id"])
        if int(message.content["config"].get("server-round", 0)) != in_round or partition > 3:
            return reply
        arrays = dict(reply.content["arrays"].items())
        metrics = dict(reply.content["metrics"].items())
        key = sorted(arrays)[0]
        if partition == 0:
            poisoned = arrays[key].numpy().copy()
            poisoned.flat[0] = np.nan
            arrays[key] = Array(poisoned)
        elif partition == 1:
            metrics["domain-labels"] = [1, 2]
        elif partition == 2:
            del arrays[key]
        else:
            arrays[key] = Array(dtype="float32", shape=(1,), stype="numpy.ndarray", data=b"junk")
        reply.content["arrays"] = ArrayRecord(arrays)
        reply.content["metrics"] = MetricRecord(metrics)
        return reply

    return client


def test_replies_that_cannot_be_averaged_are_failures_and_the_round_completes(
    tiny_partitions, tiny_city_dir, tmp_path
):
    settings = tiny_settings(tiny_partitions, tiny_city_dir, tmp_path, min_train_sites=1)
    arrays = run_federation(DirectGrid(_tampering_client(in_round=2)), settings)
    first, second = _lines(tmp_path, "round")
    assert first["failures"] == [] and len(first["sites"]) == N_SITES
    failures = {f["site"]: f["error"] for f in second["failures"]}
    assert set(failures) == {"site-000", "site-001", "site-002", "site-003"}
    assert all(error.startswith("reply rejected: ") for error in failures.values())
    assert "non-finite" in failures["site-000"]
    assert "domain-labels must hold 4 counts" in failures["site-001"]
    assert "missing" in failures["site-002"]
    assert "cannot be read" in failures["site-003"]
    assert second["sites"] == ["site-004"]
    assert {line["site"] for line in _lines(tmp_path, "site") if line["round"] == 2} == {"site-004"}
    assert all(np.isfinite(array.numpy()).all() for array in arrays.values())
    assert np.isfinite(second["central"]["auprc-macro"])


def test_too_few_replies_stop_the_run_and_resume_retries(tiny_partitions, tiny_city_dir, tmp_path):
    settings = tiny_settings(tiny_partitions, tiny_city_dir, tmp_path, min_train_sites=4)
    with pytest.raises(RoundFailedError, match="round 2: 3 of 5 sites replied"):
        run_federation(DirectGrid(_failing_client({0, 1}, in_round=2)), settings)
    assert [line["round"] for line in _lines(tmp_path, "round-failed")] == [2]
    run_federation(DirectGrid(client_app), settings.with_updates(resume=True))
    assert [line["round"] for line in _lines(tmp_path, "round")] == [1, 2]


def test_error_text_finds_the_cause_in_flowers_wrapping():
    ray_like = (
        "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'ray::ClientAppActor.run()\n"
        "  File x, line 1\nException ClientAppException occurred. Message: "
        "[site=site-004] ValueError: bad sensors\n\nThe above exception ...'>"
    )
    assert error_text(ray_like) == "ValueError: bad sensors"
    untagged = "<class 'X'>:<'\nException ClientAppException occurred. Message: chaos: boom'>"
    assert error_text(untagged) == "chaos: boom"
    assert error_text("plain failure") == "plain failure"


def test_a_cosine_server_schedule_decays_the_adaptive_servers_step(
    tiny_partitions, tiny_city_dir, tmp_path, monkeypatch
):
    from flwr.serverapp.strategy import FedAdam

    steps = []
    stepped = FedAdam.aggregate_train

    def spy(self, server_round, replies):
        steps.append((server_round, self.eta))
        return stepped(self, server_round, replies)

    monkeypatch.setattr(FedAdam, "aggregate_train", spy)
    settings = tiny_settings(
        tiny_partitions,
        tiny_city_dir,
        tmp_path,
        strategy="fedadam",
        site_optimiser="sgd",
        lr=1.0,
        local_steps=1,
        server_lr=0.01,
        server_lr_schedule="cosine",
        num_rounds=3,
    )
    run_federation(DirectGrid(client_app), settings)
    assert [round_ for round_, _ in steps] == [1, 2, 3]
    assert [eta for _, eta in steps] == pytest.approx([0.01, 0.0075, 0.0025])
    with pytest.raises(ValueError, match="server-lr-schedule"):
        settings.with_updates(strategy="fedavgm")  # its step is not Adam's eta


def test_evaluate_every_scores_only_its_rounds_and_the_last_and_selects_among_them(
    tiny_partitions, tiny_city_dir, tmp_path
):
    settings = tiny_settings(
        tiny_partitions,
        tiny_city_dir,
        tmp_path,
        num_rounds=3,
        evaluate_every=2,
        fraction_evaluate=1.0,
        central_eval_split="validation",
        server_ema=0.5,
    )
    run_federation(DirectGrid(client_app), settings)
    rounds = _lines(tmp_path, "round")
    assert [line["round"] for line in rounds] == [1, 2, 3]
    assert ["central" in line for line in rounds] == [False, True, True]
    assert ["federated_evaluation" in line for line in rounds] == [False, True, True]
    (kept,) = _lines(tmp_path, "model")
    assert kept["round"] in (2, 3) and kept["selected_by"] == "central validation"
    with pytest.raises(ValueError, match="evaluate-every"):
        settings.with_updates(evaluate_every=0)
