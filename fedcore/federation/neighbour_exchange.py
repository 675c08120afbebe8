"""Neighbour exchange: sites pool what their districts tell the districts next door.

Risk spills over district borders, and the pooled city gives each sample the
mean of its neighbours' summaries (`datasets.samples.neighbour_sums`). An edge
site alone knows only the neighbours it holds itself; with hundreds of sites,
that is almost none, and the federation loses what a centralised model trained
on the pooled data would learn from them. The exchange closes that gap once,
before the first round (as FedGCN does for graph neighbours, Yao et al. 2023):

1. each site sends the server its `neighbour_sums`: for every district next to
   one of its own, per window start it holds, the weighted sum of its own
   districts' summaries (pooled report embedding, report count, sensor
   statistics) and the weight behind it;
2. the server adds the sites' sums (sums over disjoint districts add up) and
   sends each site the totals for its own districts;
3. the site keeps them and turns them into its samples' neighbour context.

What it discloses: the server sees each site's sums (a site with one district
next to ``d`` discloses that district's summaries to the server), and a site
sees the total its districts' neighbours report. No record, frame or reading
leaves a site. It is off unless a run sets ``neighbour-exchange``; a site that
fails the exchange keeps its own view, and its neighbours see a lower share.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from datasets.partition import SiteInfo
from datasets.samples import neighbour_context, neighbour_sums
from fedcore.federation.local_state import store_for_run, stored_for_run
from fedcore.federation.site_order import SiteDirectory, error_text
from fedcore.federation.task import arrays_from_numpy
from fedcore.run_log import append_metrics
from fedcore.site_data import SiteData

SUMS_MESSAGE = "query.neighbour_sums"
TOTALS_MESSAGE = "query.neighbour_totals"
TOTALS_KEY = "neighbour-totals"


def own_rows(data: SiteData) -> np.ndarray:
    """Graph rows of the site's districts, in its samples' (district-major) order."""
    return pd.unique(data.samples.district)


def site_sums(data: SiteData, info: SiteInfo) -> dict[str, np.ndarray]:
    """What the site tells its districts' neighbours: sums over the window starts it holds.

    Returns ``targets`` (graph rows), ``windows`` (window indices), ``sums``
    ``(targets, windows, F)``, ``reach`` ``(targets, windows)`` and ``rows`` (its
    own districts, whose totals it asks for).
    """
    rows = own_rows(data)
    held = info.holds_starts(data.samples.starts).astype(np.float32)
    windows = np.flatnonzero(held)
    held = np.broadcast_to(held, (len(rows), len(held)))
    targets, sums, reach = neighbour_sums(data.graph, rows, data.samples.district_summaries(), held)
    return {
        "targets": targets.astype(np.int64),
        "windows": windows.astype(np.int64),
        "sums": np.ascontiguousarray(sums[:, windows]),
        "reach": np.ascontiguousarray(reach[:, windows]),
        "rows": rows.astype(np.int64),
    }


class NeighbourTotals:
    """The server's running totals of the sites' sums, per district and window."""

    def __init__(self, n_districts: int, n_windows: int) -> None:
        self.shape = (n_districts, n_windows)
        self.sums: np.ndarray | None = None
        self.reach = np.zeros(self.shape, dtype=np.float64)

    def add(self, part: dict[str, np.ndarray]) -> None:
        """Add one site's `site_sums`.

        Raises:
            ValueError: The part names districts or windows beyond the totals'.
        """
        targets, windows = part["targets"], part["windows"]
        if len(targets) and (targets.min() < 0 or targets.max() >= self.shape[0]):
            raise ValueError(f"neighbour sums name districts outside 0..{self.shape[0] - 1}")
        if len(windows) and (windows.min() < 0 or windows.max() >= self.shape[1]):
            raise ValueError(f"neighbour sums name windows outside 0..{self.shape[1] - 1}")
        sums = part["sums"]
        if (
            sums.shape != (len(targets), len(windows), sums.shape[-1])
            or not np.isfinite(sums).all()
        ):
            raise ValueError("neighbour sums have the wrong shape or non-finite values")
        if self.sums is None:
            self.sums = np.zeros((*self.shape, sums.shape[-1]), dtype=np.float64)
        where = np.ix_(targets, windows)
        self.sums[where] += sums
        self.reach[where] += part["reach"]

    def for_rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The totals of districts ``rows`` (what one site gets back)."""
        rows = np.asarray(rows, dtype=np.int64)
        return {
            "rows": rows,
            "sums": self.sums[rows].astype(np.float32),
            "reach": self.reach[rows].astype(np.float32),
        }


def with_neighbour_context(data: SiteData, totals: dict[str, np.ndarray]) -> SiteData:
    """The site's data with its samples' neighbour context taken from the pooled totals.

    The site's own data (possibly a per-process cache) is left as it was.

    Raises:
        ValueError: The totals are for other districts or another window count.
    """
    rows = own_rows(data)
    n_windows = len(data.samples.starts)
    if not np.array_equal(totals["rows"], rows) or totals["sums"].shape[1] != n_windows:
        raise ValueError("neighbour totals are for other districts or windows than this site's")
    samples = copy.copy(data.samples)
    samples.neighbours = neighbour_context(data.graph, rows, totals["sums"], totals["reach"])
    out = copy.copy(data)
    out.samples = samples
    return out


def exchange_in_process(sites: list[SiteData], infos: list[SiteInfo]) -> list[SiteData]:
    """The exchange without a network: every site's data with the pooled context.

    What the server and the sites compute in a federated run, for scoring each
    site's own view of a hold-out the way the federation's sites saw it.
    """
    first = sites[0]
    totals = NeighbourTotals(int(first.graph.num_nodes), len(first.samples.starts))
    parts = [site_sums(data, info) for data, info in zip(sites, infos, strict=True)]
    for part in parts:
        totals.add(part)
    return [
        with_neighbour_context(data, totals.for_rows(part["rows"]))
        for data, part in zip(sites, parts, strict=True)
    ]


def store_totals(context: Context, totals: dict[str, np.ndarray], scope: str) -> None:
    """Keep the totals at the site for every later round of the run ``scope`` (only)."""
    store_for_run(context, TOTALS_KEY, scope, arrays_from_numpy(totals))


def stored_totals(context: Context, scope: str) -> dict[str, np.ndarray] | None:
    """The totals the site got in run ``scope``; None before (or without) an exchange."""
    record = stored_for_run(context, TOTALS_KEY, scope)
    if record is None:
        return None
    return {key: array.numpy() for key, array in record.items()}


def exchange_neighbours(
    grid: Grid,
    config: ConfigRecord,
    shape: tuple[int, int],
    run_dir: str,
    timeout: float,
    min_sites: int,
) -> dict:
    """The server's side: gather every connected site's sums, send each its totals.

    ``shape`` is (districts, windows) of the public layer. A site that fails
    either step is recorded and keeps its own view. Appends a
    ``kind: neighbour-exchange`` line to ``metrics.jsonl`` and returns it.
    """
    began = time.perf_counter()
    _, nodes = sample_nodes(grid, min_sites, 0)
    asked = [
        Message(RecordDict({"config": config}), dst_node_id=node, message_type=SUMS_MESSAGE)
        for node in nodes
    ]
    totals, rows_of, failures, sites = NeighbourTotals(*shape), {}, [], SiteDirectory()
    sent_bytes = 0
    for reply in grid.send_and_receive(asked, timeout=timeout):
        node = int(reply.metadata.src_node_id)
        site = sites.learn(reply)
        if reply.has_error():
            failures.append(
                {"site": site, "node": node, "error": error_text(str(reply.error.reason))}
            )
            continue
        part = {key: array.numpy() for key, array in reply.content["arrays"].items()}
        try:
            totals.add(part)
        except ValueError as error:
            failures.append({"site": site, "node": node, "error": str(error)})
            continue
        sent_bytes += sum(value.nbytes for value in part.values())
        rows_of[node] = part["rows"]
    answered = set(rows_of) | {int(failure["node"]) for failure in failures}
    failures += [
        {"site": sites.name(node), "node": node, "error": f"no reply within {timeout:g} s"}
        for node in nodes
        if node not in answered
    ]
    replies = []
    if totals.sums is not None:
        answers = [
            Message(
                RecordDict({"config": config, "arrays": arrays_from_numpy(totals.for_rows(rows))}),
                dst_node_id=node,
                message_type=TOTALS_MESSAGE,
            )
            for node, rows in rows_of.items()
        ]
        replies = list(grid.send_and_receive(answers, timeout=timeout))
    stored = 0
    for reply in replies:
        if reply.has_error():
            failures.append(
                {
                    "site": sites.learn(reply),
                    "node": int(reply.metadata.src_node_id),
                    "error": error_text(str(reply.error.reason)),
                }
            )
        else:
            stored += 1
    record = {
        "kind": "neighbour-exchange",
        "sites": len(nodes),
        "contributed": len(rows_of),
        "stored": stored,
        "failures": failures,
        "sums_mb": sent_bytes / 2**20,
        "wall_seconds": time.perf_counter() - began,
    }
    append_metrics(Path(run_dir), record)
    return record
