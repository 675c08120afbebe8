"""Neighbour exchange: sites pool what their districts tell their neighbours."""

import json

import numpy as np
import pytest
import torch

from datasets import make_city
from datasets.partition import PartitionSpec, partition_city
from datasets.partition_io import PrivateDataSlicer, load_site, write_federation
from fedcore.federation.client_app import app as client_app
from fedcore.federation.local_state import site_control, store_site_control
from fedcore.federation.neighbour_exchange import (
    NeighbourTotals,
    exchange_in_process,
    site_sums,
    store_totals,
    stored_totals,
    with_neighbour_context,
)
from fedcore.federation.server_app import run_federation
from fedcore.site_data import DataSettings, prepare_site_data
from tests.federation_helpers import DirectGrid, node_context, tiny_partitions, tiny_settings

__all__ = ["tiny_partitions"]
DATA = DataSettings(domains=("traffic", "crowd"))


def _sites(city, spec, tmp_path):
    federation = partition_city(city, spec)
    folder = write_federation(federation, city, tmp_path / "fed")
    loaded = [
        load_site(folder / "sites" / site.site_id, folder / "public") for site in federation.sites
    ]
    data = [prepare_site_data(site_city, DATA, info.rows(site_city)) for site_city, info in loaded]
    return federation, [info for _, info in loaded], data


@pytest.fixture(scope="module")
def city():
    return make_city(n_districts=24, days=8, seed=4)


def test_exchanged_context_is_the_pooled_sites_context(city, tmp_path):
    spec = PartitionSpec(n_sites=6, dirichlet_alpha=0.3, share_without_cameras=0.5, seed=1)
    federation, infos, sites = _sites(city, spec, tmp_path)
    held = prepare_site_data(PrivateDataSlicer(city).held_city(federation.sites), DATA)
    exchanged = exchange_in_process(sites, infos)
    n_windows = len(held.samples.starts)
    for before, after in zip(sites, exchanged, strict=True):
        where = after.samples.district * n_windows + after.samples.window
        pooled = held.samples.neighbours[where]
        np.testing.assert_allclose(after.samples.neighbours, pooled, rtol=1e-4, atol=1e-5)
        assert after.samples.neighbours[:, -1].min() == pytest.approx(1.0)
        assert before.samples.neighbours is not after.samples.neighbours  # the cache is kept
    alone = np.concatenate([site.samples.neighbours[:, -1] for site in sites])
    assert alone.mean() < 0.5  # on its own a site sees few of its neighbours


def test_with_eras_every_neighbour_is_counted_once(city, tmp_path):
    spec = PartitionSpec(n_sites=60, dirichlet_alpha=0.1, quantity_skew=1.0, seed=0)
    _, infos, sites = _sites(city, spec, tmp_path)
    for info, site in zip(infos, exchange_in_process(sites, infos), strict=True):
        held = info.holds_starts(site.samples.starts)[site.samples.window]
        assert np.allclose(site.samples.neighbours[held, -1], 1.0)


def test_totals_reject_parts_beyond_the_city_and_other_sites_totals(city, tmp_path):
    spec = PartitionSpec(n_sites=3, seed=2)
    _, infos, sites = _sites(city, spec, tmp_path)
    part = site_sums(sites[0], infos[0])
    totals = NeighbourTotals(len(city.districts) - 20, len(sites[0].samples.starts))
    with pytest.raises(ValueError, match="districts outside"):
        totals.add(part)
    broken = {**part, "sums": np.full_like(part["sums"], np.nan)}
    with pytest.raises(ValueError, match="non-finite"):
        NeighbourTotals(len(city.districts), len(sites[0].samples.starts)).add(broken)
    totals = NeighbourTotals(len(city.districts), len(sites[0].samples.starts))
    totals.add(part)
    with pytest.raises(ValueError, match="other districts"):
        with_neighbour_context(sites[1], totals.for_rows(part["rows"]))


def _lines(run_dir, kind):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line.get("kind") == kind]


def test_run_exchanges_before_round_one_and_a_failing_site_keeps_its_view(
    tiny_partitions, tiny_city_dir, tmp_path
):
    seen = {}

    def client(message, context):
        partition = int(context.node_config["partition-id"])
        if partition == 0 and message.metadata.message_type == "query.neighbour_sums":
            raise RuntimeError("injected fault in the exchange")
        reply = client_app(message, context)
        if message.metadata.message_type == "train":
            seen[partition] = [key for key in context.state if key.startswith("neighbour")]
        return reply

    settings = tiny_settings(tiny_partitions, tiny_city_dir, tmp_path, neighbour_exchange=True)
    run_federation(DirectGrid(client), settings)
    (exchange,) = _lines(tmp_path, "neighbour-exchange")
    assert exchange["sites"] == 5 and exchange["contributed"] == exchange["stored"] == 4
    assert [failure["node"] for failure in exchange["failures"]] == [1000]
    assert "injected fault" in exchange["failures"][0]["error"]
    assert seen[0] == [] and all(len(seen[k]) == 1 for k in range(1, 5))
    assert [line["round"] for line in _lines(tmp_path, "round")] == [1, 2]


def test_a_resumed_run_exchanges_again_for_its_restarted_sites(
    tiny_partitions, tiny_city_dir, tmp_path
):
    settings = tiny_settings(
        tiny_partitions, tiny_city_dir, tmp_path, neighbour_exchange=True, num_rounds=1
    )
    run_federation(DirectGrid(client_app), settings)
    restarted = DirectGrid(client_app)  # fresh node states, as after a crash
    run_federation(restarted, settings.with_updates(num_rounds=2, resume=True))
    exchanges = _lines(tmp_path, "neighbour-exchange")
    assert [line["stored"] for line in exchanges] == [5, 5]
    assert [line["round"] for line in _lines(tmp_path, "round")] == [1, 2]
    assert all(
        any(key.startswith("neighbour-totals@") for key in context.state)
        for context in restarted.contexts.values()
    )


def test_a_node_keeps_each_kind_of_state_for_its_current_run_only():
    context = node_context(1000, 0)
    totals = {"rows": np.array([0]), "reach": np.zeros((1, 2), np.float32)}
    control = {"w": torch.ones(2)}
    store_site_control(context, control, "runs/a")
    store_totals(context, totals, "runs/a")
    store_totals(context, {**totals, "reach": np.ones((1, 2), np.float32)}, "runs/b")
    assert stored_totals(context, "runs/a") is None  # run a is over: its totals are gone
    assert stored_totals(context, "runs/b")["reach"] == pytest.approx(np.ones((1, 2)))
    assert site_control(context, {"w": torch.zeros(2)}, "runs/a")["w"].tolist() == [1.0, 1.0]
