"""Shared pieces of the federation tests: tiny skewed partitions and an in-process Grid.

`DirectGrid` runs the real ClientApp on hand-built per-node Contexts in this
process, so the server's round loop, strategies, checkpoints and failure
accounting are tested without Ray in a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid

from datasets.partition import PartitionSpec, partition_city
from datasets.partition_io import write_federation
from fedcore.federation.settings import FederationSettings

N_SITES = 5
SKEWED = PartitionSpec(
    n_sites=N_SITES,
    dirichlet_alpha=0.1,
    quantity_skew=1.0,
    share_without_cameras=0.3,
    seed=0,
)


@pytest.fixture(scope="session")
def tiny_partitions(tiny_city, tmp_path_factory):
    """The tiny city split into 5 skewed site folders (do not modify)."""
    federation = partition_city(tiny_city, SKEWED)
    return write_federation(federation, tiny_city, tmp_path_factory.mktemp("parts") / "tiny")


def tiny_settings(partitions, city_dir, run_dir, **changes) -> FederationSettings:
    """Settings of a quick federation over the tiny partitions."""
    base = {
        "partitions_dir": str(partitions),
        "eval_city_dir": str(city_dir),
        "run_dir": str(run_dir),
        "preset": "tiny",
        "num_rounds": 2,
        "batch_size": 32,
        "min_train_sites": 2,
    }
    return FederationSettings(**{**base, **changes})


def set_task_identity() -> None:
    """Flower's runtimes set who runs a task before calling an app; so do we."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 7


def node_context(node_id: int, partition: int, n_sites: int = N_SITES, **node_config) -> Context:
    """A node's Context as the simulation engine makes it."""
    config = {"partition-id": partition, "num-partitions": n_sites, **node_config}
    return Context(run_id=1, node_id=node_id, node_config=config, state=RecordDict(), run_config={})


ClientCall = Callable[[Message, Context], Message]


class DirectGrid(Grid):
    """A Grid whose nodes are ClientApp calls in this process.

    Args:
        client: Called as ``client(message, context)`` per node (the ClientApp).
        n_sites: Nodes ``1000 + k`` are partitions ``k``.
        lost: Node ids whose replies never arrive (a timed-out site).
        node_ids: The node id of each partition instead (as Flower draws them:
            at random); `get_node_ids` lists nodes by id, not by partition.
    """

    def __init__(
        self,
        client: ClientCall,
        n_sites: int = N_SITES,
        lost: Iterable[int] = (),
        node_ids: list[int] | None = None,
    ):
        set_task_identity()
        self.client = client
        ids = node_ids or [1000 + k for k in range(n_sites)]
        self.contexts = {
            node: node_context(node, k, n_sites)
            for node, k in sorted(zip(ids, range(n_sites), strict=True))
        }
        self.lost = set(lost)
        self.sent: list[Message] = []
        self._run = None

    def set_run(self, run) -> None:
        """Remember the run (the simulation engine sets it)."""
        self._run = run

    @property
    def run(self):
        """The run set with `set_run`."""
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        """A message to one node."""
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        """Every node."""
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Queue messages for `pull_messages`."""
        self.sent = list(messages)
        return [str(index) for index in range(len(self.sent))]

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """Run the queued messages."""
        return list(self.send_and_receive(self.sent))

    def send_and_receive(self, messages: Iterable[Message], *, timeout=None) -> list[Message]:
        """Call the client per message; an exception becomes an error reply, as in Flower."""
        replies = []
        for message in messages:
            node = int(message.metadata.dst_node_id)
            try:
                reply = self.client(message, self.contexts[node])
            except Exception as error:
                reason = str(type(error)) + ":<'" + str(error) + "'>"
                reply = Message(Error(code=2, reason=reason), reply_to=message)
            if node not in self.lost:
                replies.append(reply)
        return replies
