"""The one-pass message poll hands each site what Flower's per-node poll would."""

import threading
from queue import Queue
from types import SimpleNamespace

import flwr
from flwr.server.superlink.fleet.vce import vce_api

from fedcore.federation import simulation_polling
from fedcore.federation.simulation_polling import add_messages_to_queue, next_messages


class FakeLinkState:
    """The parts of Flower's InMemoryLinkState the poll reads; ``expired`` ids get dropped."""

    def __init__(self, messages: list[tuple[str, int]], expired: frozenset[str] = frozenset()):
        self.lock = threading.RLock()
        self.message_ins_store = {
            message_id: SimpleNamespace(
                id=message_id, metadata=SimpleNamespace(dst_node_id=node, delivered_at="")
            )
            for message_id, node in messages
        }
        self.expired = expired
        self.checked: list[set[str]] = []

    def _check_stored_messages(self, message_ids: set[str]) -> None:
        self.checked.append(set(message_ids))
        for message_id in message_ids & self.expired:
            del self.message_ins_store[message_id]


def test_one_message_per_node_in_stored_order_each_pass():
    state = FakeLinkState([("a1", 1), ("b1", 2), ("a2", 1), ("c1", 3), ("x1", 9)])
    first = next_messages(state, {1, 2, 3})
    assert [message.id for message in first] == ["a1", "b1", "c1"]
    assert all(message.metadata.delivered_at for message in first)
    second = next_messages(state, {1, 2, 3})
    assert [message.id for message in second] == ["a2"]
    assert next_messages(state, {1, 2, 3}) == []
    # A node outside the simulation is never served; every stored message is checked.
    assert state.message_ins_store["x1"].metadata.delivered_at == ""
    assert state.checked[0] == {"a1", "b1", "a2", "c1", "x1"}


def test_a_message_the_link_state_drops_is_not_delivered():
    state = FakeLinkState([("old", 1), ("new", 1)], expired=frozenset({"old"}))
    assert [message.id for message in next_messages(state, {1})] == ["new"]
    assert "old" not in state.message_ins_store


def test_another_link_state_keeps_flowers_own_loop(monkeypatch):
    calls = []
    monkeypatch.setattr(simulation_polling, "_FLOWER_LOOP", lambda *args: calls.append(args))
    stop = threading.Event()
    add_messages_to_queue(object(), Queue(), {1: 0}, stop)
    assert len(calls) == 1


def test_installed_only_for_the_flower_series_it_reads(monkeypatch):
    original = vce_api.add_messages_to_queue
    try:
        monkeypatch.setattr(flwr, "__version__", "9.0.0")
        assert not simulation_polling.use_one_pass_polling()
        assert vce_api.add_messages_to_queue is original
        monkeypatch.setattr(flwr, "__version__", "1.42.0")
        assert simulation_polling.use_one_pass_polling()
        assert vce_api.add_messages_to_queue is add_messages_to_queue
    finally:
        vce_api.add_messages_to_queue = original
