"""The server's round loop: sample, send, wait (with a timeout), aggregate, record, checkpoint.

Flower's `Strategy.start` always runs rounds ``1..num_rounds`` and waits on one
timeout for the whole run (flwr/serverapp/strategy/strategy.py, ``start``), so it
can neither resume at round ``k + 1`` nor say which sites failed. This loop
calls the same strategy methods (`configure_train`, `aggregate_train` as
`SiteAware.aggregate_replies` on replies decoded once, `configure_evaluate`,
`aggregate_evaluate`) one round at a time: a round completes when at least
``min-train-sites`` sites reply without error within ``round-timeout-s``; the
others are recorded as failures with their error. A reply that arrives but
cannot be aggregated (`SiteAware.reply_problem`: a missing or reshaped array, a
NaN, malformed counts, bytes that are no array) is such a failure too.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

from fedcore.federation.aggregation import decode_reply
from fedcore.federation.model_average import ModelAverage
from fedcore.federation.settings import ADAPTIVE_STRATEGIES, FederationSettings
from fedcore.federation.site_order import SiteOrderedGrid, error_text
from fedcore.federation.strategies import SiteAware
from fedcore.run_log import append_metrics

CentralEvaluation = Callable[[int, ArrayRecord], dict | None]
RoundDone = Callable[[int, ArrayRecord, dict], None]


class RoundFailedError(RuntimeError):
    """Too few sites answered a round for it to count."""


def site_record(server_round: int, site: str, node: int, metrics: MetricRecord) -> dict:
    """One ``kind: site`` line of ``metrics.jsonl`` from a training reply's metrics."""
    values = dict(metrics)
    record = {
        "kind": "site",
        "round": server_round,
        "site": site,
        "node": node,
        "num_examples": int(values.pop("num-examples", 0)),
        "loss": values.pop("train-loss", None),
        "auprc": values.get("val-auprc-macro"),
        "compute_seconds": values.pop("compute-seconds", None),
    }
    values.pop("site-index", None)
    record.update({key.replace("-", "_"): value for key, value in values.items()})
    return record


def run_round(
    grid: SiteOrderedGrid,
    strategy: SiteAware,
    settings: FederationSettings,
    server_round: int,
    arrays: ArrayRecord,
    train_config: ConfigRecord,
) -> tuple[ArrayRecord, dict, list[dict]]:
    """One training round; returns the new arrays, the round record and the site records.

    Replies name their sites in ``grid.sites`` for later rounds (their errors,
    their time-outs).

    Raises:
        RoundFailedError: Fewer than ``min-train-sites`` successful replies.
    """
    random.seed(settings.seed * 1_000_003 + server_round)  # Flower samples with `random`
    if settings.strategy in ADAPTIVE_STRATEGIES:
        strategy.eta = settings.server_lr_at(server_round)  # read by its aggregate_train
    began = time.perf_counter()
    messages = list(
        strategy.configure_train(server_round, arrays, ConfigRecord(dict(train_config)), grid)
    )
    sent = [int(message.metadata.dst_node_id) for message in messages]
    replies = list(grid.send_and_receive(messages, timeout=settings.round_timeout_s))
    replied = {int(reply.metadata.src_node_id) for reply in replies}
    received = time.perf_counter()
    site_rows, failures, accepted = [], [], {}
    for reply in replies:
        site = grid.sites.learn(reply)
        node = int(reply.metadata.src_node_id)
        if reply.has_error():
            problem = error_text(str(reply.error.reason))
        else:
            try:
                decoded = decode_reply(reply.content)
            except ValueError as error:
                problem = str(error)
            else:
                problem = strategy.reply_problem(decoded)
            problem = problem and f"reply rejected: {problem}"
        if problem:
            failures.append({"site": site, "node": node, "error": problem})
            continue
        site_rows.append(site_record(server_round, site, node, reply.content["metrics"]))
        accepted[site, node] = decoded
    for node in sorted(set(sent) - replied):
        failures.append(
            {
                "site": grid.sites.name(node),
                "node": node,
                "error": f"no reply within {settings.round_timeout_s:g} s",
            }
        )
    record = {
        "kind": "round",
        "round": server_round,
        "sites": sorted(site for site, _ in accepted),
        "n_asked": len(sent),
        "failures": failures,
    }
    if len(accepted) < settings.min_train_sites:
        raise RoundFailedError(
            f"round {server_round}: {len(accepted)} of {len(sent)} sites replied, "
            f"min-train-sites is {settings.min_train_sites}; failures: {failures[:5]}"
        )
    # in site order, not arrival order: float sums then repeat exactly from run to run
    site_rows.sort(key=lambda row: (row["site"], row["node"]))
    compute = [row["compute_seconds"] or 0.0 for row in site_rows]
    weights = [row["num_examples"] for row in site_rows if row["loss"] is not None]
    losses = [row["loss"] for row in site_rows if row["loss"] is not None]
    record["train_loss"] = (
        sum(w * loss for w, loss in zip(weights, losses, strict=True)) / sum(weights)
        if sum(weights) > 0
        else None
    )
    record["num_examples"] = sum(row["num_examples"] for row in site_rows)
    in_site_order = [accepted[key] for key in sorted(accepted)]
    new_arrays, _ = strategy.aggregate_replies(server_round, in_site_order)
    record["train_wall_seconds"] = time.perf_counter() - began
    record["server_seconds"] = time.perf_counter() - received
    record["compute_seconds"] = sum(compute)
    return (arrays if new_arrays is None else new_arrays), record, site_rows


def run_rounds(
    grid: SiteOrderedGrid,
    strategy: SiteAware,
    settings: FederationSettings,
    arrays: ArrayRecord,
    first_round: int,
    train_config: ConfigRecord,
    central_evaluation: CentralEvaluation | None,
    on_round_done: RoundDone,
    average: ModelAverage,
) -> ArrayRecord:
    """Rounds ``first_round..num_rounds``; each ends in ``metrics.jsonl`` and `on_round_done`.

    Central evaluation scores what ``average`` makes of the round's global model:
    the server's moving average of it, or the model itself when that is off
    (`fedcore.federation.model_average`). Only the rounds `FederationSettings.evaluates`
    names are scored, centrally or by the sites.

    ``on_round_done(round, arrays, record)`` runs after the round's lines are
    appended (it writes the checkpoint), so a checkpoint always has its lines.
    ``grid`` lists its nodes in site order, so a round's seeded sample draws the
    same sites in every run (`fedcore.federation.site_order`).
    """
    run_dir = Path(settings.run_dir)
    for server_round in range(first_round, settings.num_rounds + 1):
        began = time.perf_counter()
        try:
            arrays, record, site_rows = run_round(
                grid, strategy, settings, server_round, arrays, train_config
            )
        except RoundFailedError as error:
            append_metrics(
                run_dir, {"kind": "round-failed", "round": server_round, "error": str(error)}
            )
            raise
        scored = average.update(arrays)
        evaluates = settings.evaluates(server_round)
        if evaluates and settings.fraction_evaluate > 0:
            messages = strategy.configure_evaluate(
                server_round, arrays, ConfigRecord(dict(train_config)), grid
            )
            replies = list(grid.send_and_receive(messages, timeout=settings.round_timeout_s))
            evaluated = strategy.aggregate_evaluate(server_round, replies)
            record["federated_evaluation"] = dict(evaluated) if evaluated else None
        if evaluates and central_evaluation is not None:
            record["central"] = central_evaluation(server_round, scored)
        record["wall_seconds"] = time.perf_counter() - began
        for row in site_rows:
            append_metrics(run_dir, row)
        append_metrics(run_dir, record)
        on_round_done(server_round, arrays, record)
    return arrays
