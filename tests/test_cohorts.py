"""Which sites train in a round: the ``cycle`` draw covers every site once per cycle."""

from collections import Counter

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord

from fedcore.federation.cohorts import cycle_cohort
from fedcore.federation.settings import FederationSettings
from fedcore.federation.strategies import KizashiFedProx
from tests.federation_helpers import DirectGrid, set_task_identity

NODES = list(range(100, 400))  # 300 sites, as node ids in site order


def test_each_site_trains_once_per_cycle():
    for cycle in range(3):
        rounds = range(cycle * 5 + 1, cycle * 5 + 6)  # 300 sites, 60 a round: 5 slots
        drawn = [node for r in rounds for node in cycle_cohort(NODES, 60, r, seed=0)]
        assert sorted(drawn) == NODES


def test_a_cycle_that_does_not_divide_evenly_tops_up_its_last_slot():
    nodes = list(range(20))
    cohorts = [cycle_cohort(nodes, 7, r, seed=3) for r in (1, 2, 3)]  # 3 slots: 7, 7, 6 + 1
    assert [len(set(cohort)) for cohort in cohorts] == [7, 7, 7]
    counts = Counter(node for cohort in cohorts for node in cohort)
    assert set(counts) == set(nodes)
    assert sorted(counts.values()) == [1] * 19 + [2]


def test_the_draw_depends_on_seed_and_round_only():
    assert cycle_cohort(NODES, 30, 4, seed=1) == cycle_cohort(list(NODES), 30, 4, seed=1)
    assert cycle_cohort(NODES, 30, 4, seed=1) != cycle_cohort(NODES, 30, 4, seed=2)
    # round 11 opens the second cycle of 10: a new permutation, not the first again
    assert cycle_cohort(NODES, 30, 11, seed=1) != cycle_cohort(NODES, 30, 1, seed=1)


@pytest.mark.parametrize("size", [0, 301])
def test_a_cohort_must_fit_the_sites(size):
    with pytest.raises(ValueError, match="cannot be drawn"):
        cycle_cohort(NODES, size, 1, seed=0)


def test_a_cycled_strategy_sends_flower_s_message_to_the_round_s_slot():
    set_task_identity()
    grid = DirectGrid(lambda message, context: None, n_sites=10)
    nodes = list(grid.get_node_ids())
    current = ArrayRecord({"body": Array(np.zeros(3, np.float32))})
    strategy = KizashiFedProx(
        proximal_mu=0.5,
        head_keys=[],
        n_domains=1,
        sampling="cycle",
        seed=7,
        fraction_train=0.5,
        min_train_nodes=1,
        min_available_nodes=1,
    )
    sent = []
    for server_round in (1, 2):
        messages = list(strategy.configure_train(server_round, current, ConfigRecord(), grid))
        assert [m.metadata.dst_node_id for m in messages] == cycle_cohort(nodes, 5, server_round, 7)
        assert all(m.content["config"]["proximal-mu"] == 0.5 for m in messages)  # Flower's config
        assert all(m.content["config"]["server-round"] == server_round for m in messages)
        sent += [m.metadata.dst_node_id for m in messages]
    assert sorted(sent) == sorted(nodes)


def test_site_sampling_is_a_checked_run_config_key():
    settings = FederationSettings.from_run_config({"site-sampling": "cycle"})
    assert settings.site_sampling == "cycle"
    with pytest.raises(ValueError, match="site-sampling"):
        FederationSettings(site_sampling="stratified")
