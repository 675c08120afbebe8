"""Aggregation rules Flower's strategies lack, written as rewrites of the sites' replies.

Flower's FedAvg (and FedProx, FedAdam, FedYogi on top of it) average every array
weighted by ``num-examples``. Two things need other weights, and both are done by
rewriting the replies before Flower averages them, so Flower's own classes do
the averaging and their server optimisers see the result:

- **partial labels**: a site without a domain's labels must not pull that
  domain's head. Each reply reports ``domain-labels`` (labelled training samples
  per domain); the head rows of domain ``d`` are rescaled so that the
  ``num-examples``-weighted mean Flower computes equals the mean weighted by
  those counts. A domain nobody labelled keeps its current rows.
- **what Flower checks**: Flower wants identical metric keys in every reply; ours
  differ (a site scores only the domains it has both classes of), so replies
  are reduced to the keys aggregation needs; the full metrics are recorded first.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedcore.federation.layers import head_row_domains

WEIGHT_KEY = "num-examples"
LABELS_KEY = "domain-labels"
AGGREGATED_METRICS = (WEIGHT_KEY, "train-loss")


def reduced_reply(content: RecordDict, arrays_key: str = "arrays") -> RecordDict:
    """The reply with only the model arrays and the metrics every site reports."""
    metrics = content["metrics"]
    kept = {key: metrics[key] for key in AGGREGATED_METRICS if key in metrics}
    return RecordDict({arrays_key: content[arrays_key], "metrics": MetricRecord(kept)})


def label_weighted_heads(
    contents: list[RecordDict],
    current: dict[str, np.ndarray],
    head_keys: list[str],
    n_domains: int,
    arrays_key: str = "arrays",
) -> list[RecordDict]:
    """Rewrite each reply's head rows so Flower's example-weighted mean weighs them by labels.

    For a row of domain ``d`` and site ``i`` with ``n_i`` examples (``N`` in all)
    and ``c_id`` labelled samples of ``d`` (``C_d`` in all), the row becomes
    ``h_i * (c_id / C_d) * (N / n_i)``; then ``sum_i (n_i / N) h'_i`` is
    ``sum_i (c_id / C_d) h_i``. Where ``C_d == 0`` every site's row becomes the
    current global row, so the mean leaves it unchanged.

    Args:
        contents: Training replies, each with ``arrays`` and ``metrics`` that
            hold ``num-examples`` (> 0) and ``domain-labels`` (one count per domain).
        current: The global arrays the round started from (for unlabelled domains).
        head_keys: Keys of the head arrays (first dimension = output rows).
        n_domains: Number of domains.
        arrays_key: Key of the ArrayRecord in each reply.

    Raises:
        ValueError: A reply lacks ``domain-labels`` of length ``n_domains``, or
            reports no examples.
    """
    examples = np.array([float(content["metrics"][WEIGHT_KEY]) for content in contents])
    if (examples <= 0).any():
        raise ValueError("every reply must report num-examples > 0")
    labels = np.zeros((len(contents), n_domains))
    for row, content in enumerate(contents):
        counts = content["metrics"].get(LABELS_KEY)
        if counts is None or len(counts) != n_domains:
            raise ValueError(f"every reply must report {LABELS_KEY} for {n_domains} domains")
        labels[row] = np.asarray(counts, dtype=float)
    totals = labels.sum(axis=0)
    share = np.divide(labels, totals, out=np.zeros_like(labels), where=totals > 0)
    scale = share * (examples.sum() / examples)[:, None]  # (sites, domains)
    rewritten = []
    for row, content in enumerate(contents):
        arrays = dict(content[arrays_key].items())
        for key in head_keys:
            value = arrays[key].numpy()
            domains = head_row_domains(value.shape[0], n_domains)
            factor = scale[row][domains].reshape((-1,) + (1,) * (value.ndim - 1))
            unlabelled = (totals[domains] == 0).reshape(factor.shape)
            new = np.where(unlabelled, current[key], value * factor).astype(value.dtype)
            arrays[key] = Array(np.ascontiguousarray(new))
        rewritten.append(
            RecordDict({arrays_key: ArrayRecord(arrays), "metrics": content["metrics"]})
        )
    return rewritten
