"""Which Flower node is which site, and an order of nodes that Flower's ids do not change.

Flower gives every node a random id each time a simulation (or a SuperLink)
starts, and its strategies sample a round's sites with
``random.sample(grid.get_node_ids(), k)``. Seeding ``random`` per round
(`fedcore.federation.rounds.run_round`) picks the same *positions* of that list
in every run, but the list's order follows the ids, so two runs of one
configuration trained on different sites (stop 14: 1 of 30 sites in common).

A roll call before the first round asks every node for its site id (from the
site's own ``site.json``; no data is read), and `SiteOrderedGrid` lists nodes in
site-id order. A seed then draws the same sites in every simulation of one
federation, and a resumed run draws what the unbroken run would have drawn.
Every server step that asks the sites (roll call, neighbour exchange, rounds)
names a failed site and its error with `SiteDirectory` and `error_text`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from fedcore.run_log import append_metrics

ROLL_CALL = "roll_call"
ROLL_CALL_MESSAGE = f"query.{ROLL_CALL}"
SITE_ID_KEY = "site-id"
SITE_TAG = re.compile(r"\[site=([^\]]+)\]")


@dataclass
class SiteDirectory:
    """Which site each Flower node is, learned from the roll call and the sites' replies."""

    site_of_node: dict[int, str] = field(default_factory=dict)

    def learn(self, reply: Message) -> str:
        """The site of a reply, remembered for later rounds (its errors, its time-outs)."""
        node = int(reply.metadata.src_node_id)
        if reply.has_error():
            found = SITE_TAG.search(str(reply.error.reason))
            if found:
                self.site_of_node.setdefault(node, found.group(1))
            return self.name(node)
        if "site" in reply.content.config_records:
            self.site_of_node[node] = str(reply.content["site"][SITE_ID_KEY])
        elif "metrics" in reply.content.metric_records:
            index = int(reply.content["metrics"].get("site-index", -1))
            if index >= 0:  # the roll call's name, where it gave one, stays
                self.site_of_node.setdefault(node, f"site-{index:03d}")
        return self.name(node)

    def name(self, node: int) -> str:
        """The site id of ``node``, or ``node-<id>`` while unknown."""
        return self.site_of_node.get(node, f"node-{node}")

    def ordered(self, nodes: Iterable[int]) -> list[int]:
        """``nodes`` by site id; nodes of unknown sites after them, by node id."""
        known = self.site_of_node
        return sorted(nodes, key=lambda node: (node not in known, known.get(node, ""), node))


def error_text(reason: str) -> str:
    """The line of an error reply that says what went wrong.

    Flower wraps a site's exception (in simulation, inside a Ray traceback); the
    useful part is our ``[site=...]`` line, else the message Flower's
    ``ClientAppException`` carries, else the last line.
    """
    found = SITE_TAG.search(reason)
    if found:
        text = reason[found.end() :]
    elif "Message: " in reason:
        text = reason[reason.rindex("Message: ") + len("Message: ") :]
    else:
        lines = [line for line in reason.splitlines() if line.strip()]
        text = lines[-1] if lines else reason
    text = text.strip().splitlines()[0] if text.strip() else reason
    return text.strip().removesuffix("'>").strip()[:500]


def roll_call(
    grid: Grid, config: ConfigRecord, run_dir: str, timeout: float, min_sites: int
) -> SiteDirectory:
    """Ask every connected node which site it is; append a ``kind: roll-call`` line.

    A node that fails or stays silent is recorded and simply stays unknown: it is
    still sampled, after the known sites.
    """
    began = time.perf_counter()
    _, nodes = sample_nodes(grid, min_sites, 0)
    asked = [
        Message(RecordDict({"config": config}), dst_node_id=node, message_type=ROLL_CALL_MESSAGE)
        for node in nodes
    ]
    sites, failures, answered = SiteDirectory(), [], set()
    for reply in grid.send_and_receive(asked, timeout=timeout):
        node = int(reply.metadata.src_node_id)
        answered.add(node)
        site = sites.learn(reply)
        if reply.has_error():
            failures.append(
                {"site": site, "node": node, "error": error_text(str(reply.error.reason))}
            )
    failures += [
        {"site": sites.name(node), "node": node, "error": f"no reply within {timeout:g} s"}
        for node in nodes
        if node not in answered
    ]
    record = {
        "kind": "roll-call",
        "nodes": len(nodes),
        "sites": len(sites.site_of_node),
        "failures": failures,
        "wall_seconds": time.perf_counter() - began,
    }
    append_metrics(Path(run_dir), record)
    return sites


class SiteOrderedGrid(Grid):
    """A Grid that lists its nodes in site-id order; everything else is the wrapped Grid's.

    Args:
        grid: The run's Grid.
        sites: Node → site, from `roll_call` (later replies only name nodes it
            did not).
    """

    def __init__(self, grid: Grid, sites: SiteDirectory) -> None:
        self.grid = grid
        self.sites = sites

    def get_node_ids(self) -> list[int]:
        """The connected nodes, by site id."""
        return self.sites.ordered(self.grid.get_node_ids())

    def set_run(self, run) -> None:
        """As the wrapped Grid."""
        self.grid.set_run(run)

    @property
    def run(self):
        """As the wrapped Grid."""
        return self.grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        """As the wrapped Grid."""
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """As the wrapped Grid."""
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """As the wrapped Grid."""
        return self.grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """As the wrapped Grid."""
        return self.grid.send_and_receive(messages, timeout=timeout)
