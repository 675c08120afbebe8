"""Flower strategies as Kizashi uses them: FedAvg that records every site's reply.

Sites differ in which domains they can score (a site with no crowd events has no
crowd AUPRC), so metrics are averaged per key over the sites that report it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from flwr.app import Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

SiteRecorder = Callable[[int, str, list[dict]], None]


def average_present_metrics(contents: list[RecordDict], weight_key: str) -> MetricRecord:
    """Example-weighted mean of each metric over the replies that carry it."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for content in contents:
        metrics = content["metrics"]
        weight = float(metrics.get(weight_key, 1.0))
        for key, value in metrics.items():
            if key in (weight_key, "site-index") or not isinstance(value, int | float):
                continue
            if math.isfinite(float(value)):
                sums[key] = sums.get(key, 0.0) + weight * float(value)
                weights[key] = weights.get(key, 0.0) + weight
    return MetricRecord({key: sums[key] / weights[key] for key in sums if weights[key] > 0})


def site_rows(replies: Iterable[Message]) -> list[dict]:
    """One plain dict per reply: the site's metrics, or its error."""
    rows = []
    for reply in replies:
        node = int(reply.metadata.src_node_id)
        if reply.has_error():
            rows.append({"node-id": node, "error": str(reply.error.reason)})
        else:
            rows.append({"node-id": node, **dict(reply.content["metrics"])})
    return rows


class RecordingFedAvg(FedAvg):
    """FedAvg that hands each round's per-site replies to a recorder.

    Args:
        recorder: Called as ``recorder(round, phase, rows)`` with phase
            ``"train"`` or ``"evaluate"`` and one row per site (`site_rows`).
        **kwargs: Passed to `flwr.serverapp.strategy.FedAvg`.
    """

    def __init__(self, recorder: SiteRecorder, **kwargs) -> None:
        kwargs.setdefault("train_metrics_aggr_fn", average_present_metrics)
        kwargs.setdefault("evaluate_metrics_aggr_fn", average_present_metrics)
        super().__init__(**kwargs)
        self.recorder = recorder

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        """Record the sites' training replies, then average as FedAvg does."""
        replies = list(replies)
        self.recorder(server_round, "train", site_rows(replies))
        return super().aggregate_train(server_round, replies)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        """Record the sites' evaluation replies, then average each metric where present.

        FedAvg's own check wants identical keys from every site; ours do not have
        them (a site scores only the domains it saw events of), so we average here.
        """
        replies = list(replies)
        self.recorder(server_round, "evaluate", site_rows(replies))
        valid = [reply.content for reply in replies if not reply.has_error()]
        return average_present_metrics(valid, self.weighted_by_key) if valid else None
