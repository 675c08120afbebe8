"""The server's memory of each site's last update (`update-memory`), on hand-made arrays."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord

from fedcore.federation.settings import FederationSettings
from fedcore.federation.strategies import KizashiFedAvg, make_strategy
from fedcore.federation.update_memory import UpdateMemory
from tests.federation_helpers import DirectGrid, set_task_identity
from tests.test_federation_strategies import (
    CURRENT,
    HEADS,
    N_DOMAINS,
    _arrays,
    _reply,
    _two_sites,
    _with_scales,
)


@pytest.fixture(autouse=True)
def task_identity():
    set_task_identity()


def _fedavg(memory_rounds: int, rule: str = "average") -> KizashiFedAvg:
    return KizashiFedAvg(
        head_keys=HEADS,
        n_domains=N_DOMAINS,
        memory_rounds=memory_rounds,
        memory_rule=rule,
        min_train_nodes=1,
        min_available_nodes=1,
    )


def _round(strategy, server_round: int, current: dict, replies) -> dict[str, np.ndarray]:
    grid = DirectGrid(lambda message, context: None, n_sites=3)
    record = ArrayRecord({key: Array(value) for key, value in current.items()})
    strategy.configure_train(server_round, record, ConfigRecord(), grid)
    arrays, _ = strategy.aggregate_train(server_round, list(replies))
    return {key: array.numpy() for key, array in arrays.items()}


def _site_c(body: float):
    # 2 examples, labels domain 0 only
    return _reply(_arrays(body, [3.0, 3.0, 3.0, 3.0]), 2, [2, 0], 1002)


@pytest.mark.parametrize("rule", ["average", "correct"])
def test_one_round_of_memory_is_the_cohort_s_own_mean(rule):
    plain, remembered = _fedavg(0), _fedavg(1, rule)
    for server_round, replies in ((1, _two_sites()), (2, [_two_sites()[0], _site_c(10.0)])):
        expected = _round(plain, server_round, CURRENT, replies)
        got = _round(remembered, server_round, CURRENT, replies)
        for key in expected:
            assert got[key] == pytest.approx(expected[key])


def test_sites_absent_from_a_round_count_with_their_last_update():
    strategy = _fedavg(3)
    after_one = _round(strategy, 1, CURRENT, _two_sites())
    assert after_one["body"] == pytest.approx([4.0] * 3)  # (1*1 + 3*5) / 4
    # round 2: only C replies, from body 4 to 10 (update 6, 2 examples). A's
    # update (1, 1 example) and B's (5, 3 examples) still count.
    after_two = _round(strategy, 2, after_one, [_site_c(10.0)])
    assert after_two["body"] == pytest.approx([4.0 + (1 * 1 + 3 * 5 + 2 * 6) / 6] * 3)
    # domain 1's head rows: only A labels it; C has no labels there, so its
    # rows move by A's remembered update alone (1 - 7 = -6 from round 1)
    assert after_two["heads.bias"][2:] == pytest.approx(after_one["heads.bias"][2:] - 6.0)
    without_memory = _round(_fedavg(0), 2, after_one, [_site_c(10.0)])
    assert without_memory["body"] == pytest.approx([10.0] * 3)


def test_the_correction_makes_up_for_who_is_in_the_cohort_from_memory():
    strategy = _fedavg(5, "correct")
    after_one = _round(strategy, 1, CURRENT, _two_sites())
    assert after_one["body"] == pytest.approx([4.0] * 3)  # nothing remembered yet
    # round 2: A alone, now from 4 to 6 (update 2). The cohort's mean is A's
    # fresh update; memory adds all sites' remembered mean, (1*1 + 3*5) / 4,
    # minus the cohort's own remembered mean, A's old update 1.
    a_again = _reply(_arrays(6.0, [3.0, 3.0, 3.0, 3.0]), 1, [1, 1], 1000)
    after_two = _round(strategy, 2, after_one, [a_again])
    assert after_two["body"] == pytest.approx([4.0 + 2.0 + (4.0 - 1.0)] * 3)
    # a site memory has never heard from gets no correction
    after_three = _round(strategy, 3, after_two, [_site_c(after_two["body"][0] + 1.0)])
    assert after_three["body"] == pytest.approx(after_two["body"] + 1.0)
    assert set(strategy.memory.sites) == {"site-1000", "site-1001", "site-1002"}


def test_updates_older_than_the_memory_drop_out():
    strategy = _fedavg(2)
    after_one = _round(strategy, 1, CURRENT, _two_sites())
    after_two = _round(strategy, 2, after_one, [_site_c(10.0)])
    assert set(strategy.memory.sites) == {"site-1000", "site-1001", "site-1002"}
    after_three = _round(strategy, 3, after_two, [_site_c(after_two["body"][0] + 1.0)])
    assert set(strategy.memory.sites) == {"site-1002"}
    assert after_three["body"] == pytest.approx(after_two["body"] + 1.0)


def test_gradient_scales_weigh_remembered_updates_per_element():
    strategy = make_strategy(
        FederationSettings(
            gradient_weighting=True, update_memory=5, min_train_sites=1, domains="traffic,crowd"
        ),
        HEADS,
        list(CURRENT),
    )
    a, b = _two_sites()
    a = _with_scales(a, {"body": 6.0, "heads.weight": 1.0, "heads.bias": 1.0})
    b = _with_scales(b, {"body": 1.0, **dict.fromkeys(HEADS, [2.0, 2.0, 0.0, 0.0])})
    after_one = _round(strategy, 1, CURRENT, [a, b])
    assert after_one["body"] == pytest.approx([(6 * 1 + 3 * 5) / 9] * 3)
    c = _with_scales(_site_c(after_one["body"][0] + 3.0), dict.fromkeys(CURRENT, 4.0))
    after_two = _round(strategy, 2, after_one, [c])
    # A: weight 6, update 1; B: weight 3, update 5; C: weight 2 * 4 = 8, update 3
    step = (6 * 1 + 3 * 5 + 8 * 3) / (6 + 3 + 8)
    assert after_two["body"] == pytest.approx(after_one["body"] + step)


def test_a_resumed_strategy_remembers_what_the_unbroken_one_did():
    settings = FederationSettings(
        strategy="fedavgm",
        server_lr=2.0,
        update_memory=4,
        min_train_sites=1,
        domains="traffic,crowd",
    )

    def fresh():
        return make_strategy(settings, HEADS, list(CURRENT))

    unbroken = fresh()
    after_one = _round(unbroken, 1, CURRENT, _two_sites())
    resumed = fresh()
    resumed.load_state_arrays(unbroken.state_arrays())
    expected = _round(unbroken, 2, after_one, [_site_c(10.0)])
    got = _round(resumed, 2, after_one, [_site_c(10.0)])
    for key in expected:
        assert got[key] == pytest.approx(expected[key])
    lost = _round(fresh(), 2, after_one, [_site_c(10.0)])
    assert not np.allclose(lost["body"], expected["body"])


def test_memory_state_that_is_not_the_memory_s_is_refused():
    with pytest.raises(ValueError, match="no array"):
        UpdateMemory(2).load_state_arrays({"site-001/velocity/body": np.zeros(3)})
    with pytest.raises(ValueError, match="update-memory"):
        FederationSettings(update_memory=-1)
    with pytest.raises(ValueError, match="update-memory-rule"):
        FederationSettings(update_memory_rule="sum")
    with pytest.raises(ValueError, match="update-memory-rule"):
        UpdateMemory(2, "sum")
