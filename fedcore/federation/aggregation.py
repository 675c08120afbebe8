"""Aggregation rules Flower's strategies lack: each array's mean over sites, weighted for skew.

Flower's FedAvg weighs every array of a reply by its ``num-examples``. Three
things need other weights; `weighted_mean` takes them per array (per element
where needed), and hands Flower the result as the round's one reply, so
Flower's own classes still take the server step (FedAdam's, FedYogi's):

- **partial labels**: a site without a domain's labels must not pull that
  domain's head. Each reply reports ``domain-labels`` (labelled training samples
  per domain); the head rows of domain ``d`` are averaged weighted by those
  counts (`label_weights`). A domain nobody labelled keeps its current rows.
- **missing modalities** (``modality-weighting``): a site without cameras never
  trains the image encoder, yet its unchanged copy would count in the
  example-weighted mean and shrink the image encoder's update by its share of
  the examples. Each reply reports ``modality-samples`` (training samples with
  each modality present); a modality encoder's arrays are averaged weighted by
  those counts (`modality_weights`); a modality no site had keeps its arrays.
- **gradient scale** (``gradient-weighting``): each weight is averaged over the
  sites weighted by examples times the size of the gradients each site's
  optimiser stepped on there (``gradient-scales``), which subsumes both rules
  above (see `weighted_mean`).
- **what Flower does not check**: a reply whose arrays or counts cannot be
  averaged (a missing or reshaped array, a NaN, a count list of the wrong
  length, bytes that are no array) would make the mean raise or poison the
  global model. `reply_problem` names what is wrong, and the round records
  that reply as a failure instead.

Each reply's arrays are decoded once (`decode_reply`, in place where
`array_bytes` can): the checks and the mean read the same numpy arrays.
Decoding was most of the server's work in a round, and that work is the
simulation's overhead.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from fedcore.federation.array_bytes import array_values
from fedcore.federation.layers import head_row_domains

WEIGHT_KEY = "num-examples"
LOSS_KEY = "train-loss"
LABELS_KEY = "domain-labels"
MODALITY_KEY = "modality-samples"
SCALES_KEY = "gradient-scales"
SITE_INDEX_KEY = "site-index"


@dataclass(frozen=True)
class SiteReply:
    """A training reply with its arrays decoded: ``records[record_key][array_key]``.

    ``metrics`` is the reply's ``metrics`` record as a dict, or None without one;
    ``node`` the Flower node that sent it (-1 where unknown).
    """

    records: dict[str, dict[str, np.ndarray]]
    metrics: dict | None
    node: int = -1

    @property
    def examples(self) -> float:
        """The reply's ``num-examples`` (0 when it has none)."""
        return float((self.metrics or {}).get(WEIGHT_KEY, 0))

    @property
    def site(self) -> str:
        """Which site sent it: its ``site-index`` (stable across runs), else its node."""
        index = (self.metrics or {}).get(SITE_INDEX_KEY)
        if isinstance(index, int) and index >= 0:
            return f"site-{index:03d}"
        return f"node-{self.node}"


def decode_reply(content: RecordDict) -> SiteReply:
    """Every ArrayRecord of a reply as numpy arrays, decoded once.

    Raises:
        ValueError: An array's bytes are not an array (named in the message).
    """
    records = {}
    for record_key, record in content.array_records.items():
        arrays = {}
        for key, array in record.items():
            try:
                arrays[key] = array_values(array)
            except Exception as error:  # a site's bytes: anything numpy can raise
                raise ValueError(f"array {record_key}/{key} cannot be read: {error}") from error
        records[record_key] = arrays
    metrics = content.metric_records.get("metrics")
    return SiteReply(records, None if metrics is None else dict(metrics))


def reply_problem(
    reply: SiteReply,
    current: dict[str, np.ndarray],
    counts: dict[str, int],
    arrays_key: str = "arrays",
) -> str | None:
    """Why a training reply cannot be aggregated, or None when it can.

    A reply must hold the round's arrays (same keys, same shapes, finite values)
    and metrics with a finite ``num-examples`` >= 0 and, for each of ``counts``
    (``{key: length}``), that many finite counts between 0 and ``num-examples``.
    This checks form, not honesty: a site that lies within these bounds passes.
    """
    if arrays_key not in reply.records or reply.metrics is None:
        return f"no {arrays_key!r} arrays or no metrics"
    problem = arrays_problem(reply.records[arrays_key], current)
    if problem:
        return problem
    examples = reply.metrics.get(WEIGHT_KEY)
    if not isinstance(examples, int | float) or not math.isfinite(examples) or examples < 0:
        return f"{WEIGHT_KEY} is {examples!r}, not a count"
    for key, length in counts.items():
        values = reply.metrics.get(key)
        if not isinstance(values, list) or len(values) != length:
            return f"{key} must hold {length} counts; got {values!r}"
        if not all(math.isfinite(value) and 0 <= value <= examples for value in values):
            return f"{key} {values} must lie between 0 and {WEIGHT_KEY} ({examples:g})"
    return None


def arrays_problem(
    arrays: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    non_negative: Collection[str] = (),
) -> str | None:
    """Why ``arrays`` cannot stand in for ``expected`` (keys, shapes, finite values), or None.

    ``non_negative``: keys whose arrays must hold no negative value (scales, squares).
    """
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        return f"arrays differ from the round's: missing {missing[:3]}, unexpected {extra[:3]}"
    for key, value in arrays.items():
        if value.shape != expected[key].shape:
            return f"array {key} has shape {value.shape}, not {expected[key].shape}"
        if not np.isfinite(value).all():
            return f"array {key} holds non-finite values"
        if key in non_negative and (value < 0).any():
            return f"array {key} holds negative values"
    return None


def record_problem(
    reply: SiteReply,
    key: str,
    expected: dict[str, np.ndarray],
    non_negative: Collection[str] = (),
) -> str | None:
    """Why a reply's ArrayRecord ``key`` (beside its model) is missing or unusable, or None."""
    if key not in reply.records:
        return f"no {key!r} arrays"
    problem = arrays_problem(reply.records[key], expected, non_negative)
    return problem and f"{key}: {problem}"


def label_weights(
    replies: list[SiteReply],
    current: dict[str, np.ndarray],
    head_keys: list[str],
    n_domains: int,
) -> dict[str, np.ndarray]:
    """Per head array, each reply's weight per row: its labelled samples of the row's domain.

    Returns ``{key: (replies, rows, 1, ...)}`` weights for `weighted_mean`; a
    domain nobody labelled has zero weight, so its rows keep their value.

    Raises:
        ValueError: A reply lacks ``domain-labels`` of length ``n_domains``.
    """
    counts = _counts(replies, LABELS_KEY, n_domains, "domains")
    weights = {}
    for key in head_keys:
        shape = current[key].shape
        per_row = counts[:, head_row_domains(shape[0], n_domains)]
        weights[key] = per_row.reshape(per_row.shape + (1,) * (len(shape) - 1))
    return weights


def modality_weights(
    replies: list[SiteReply], encoder_keys: dict[str, list[str]]
) -> dict[str, np.ndarray]:
    """Per modality encoder array, each reply's weight: its training samples with the modality.

    Raises:
        ValueError: A reply lacks ``modality-samples`` for each of ``encoder_keys``.
    """
    counts = _counts(replies, MODALITY_KEY, len(encoder_keys), "modalities")
    return {
        key: counts[:, column] for column, keys in enumerate(encoder_keys.values()) for key in keys
    }


def weighted_mean(
    replies: list[SiteReply],
    current: dict[str, np.ndarray],
    weights: dict[str, np.ndarray] | None = None,
    scaled: Collection[str] = (),
    arrays_key: str = "arrays",
) -> dict[str, np.ndarray]:
    """Each array's mean over the replies, ``sum_i w_i x_i / sum_i w_i``, per element.

    ``w_i`` is reply ``i``'s ``num-examples``, or ``weights[key][i]`` where given
    (`label_weights`, `modality_weights`). For the ``scaled`` keys it is further
    multiplied, per element, by the reply's ``gradient-scales``: the root mean
    square of the gradients its optimiser stepped on. A fresh AdamW moves each
    weight by about its learning rate whatever the size of the gradient, so in
    a plain mean a site whose data barely touch a weight pulls it as hard as a
    site whose data drive it (a quiet district outvotes a flooded one on the
    flood head); weighted by scale, ``update x scale`` follows the gradient
    again. Sites without a domain's labels or a modality have no gradient
    there, so this also does what the label and modality weights do.

    Where ``sum_i w_i`` is 0 (nobody labelled the domain, had the modality, or
    had a gradient there) the array keeps its current value. The sum is taken in
    float64 and returned in the current array's dtype.

    Raises:
        ValueError: No replies, or a reply with ``num-examples`` <= 0.
    """
    examples = np.array([reply.examples for reply in replies])
    if not len(replies) or (examples <= 0).any():
        raise ValueError("a mean needs replies, each with num-examples > 0")
    weights = weights or {}
    mean = {}
    for key, now in current.items():
        per_reply = weights.get(key, examples)
        total = np.zeros(now.shape)
        weighted = np.zeros(now.shape)
        for row, reply in enumerate(replies):
            weight = reply_weight(reply, per_reply[row], key, scaled)
            weighted += weight * reply.records[arrays_key][key]
            total += weight
        value = np.divide(weighted, total, out=now.astype(np.float64), where=total > 0)
        mean[key] = value.astype(now.dtype)
    return mean


def reply_weight(reply: SiteReply, base, key: str, scaled: Collection[str]):
    """A reply's weight on ``key`` in `weighted_mean`: ``base``, times its scales if scaled."""
    return base * reply.records[SCALES_KEY][key] if key in scaled else base


def mean_reply(mean: dict[str, np.ndarray], replies: list[SiteReply]) -> Message:
    """The round's mean as the one reply a Flower strategy aggregates and steps from.

    It carries the replies' total ``num-examples`` and their example-weighted
    ``train-loss``, so Flower's average of it is the mean itself.
    """
    examples = sum(reply.examples for reply in replies)
    metrics: dict = {WEIGHT_KEY: examples}
    losses = [
        (reply.examples, float(reply.metrics[LOSS_KEY]))
        for reply in replies
        if isinstance((reply.metrics or {}).get(LOSS_KEY), int | float)
        and math.isfinite(reply.metrics[LOSS_KEY])
    ]
    if losses:
        metrics[LOSS_KEY] = sum(w * loss for w, loss in losses) / sum(w for w, _ in losses)
    arrays = ArrayRecord({key: Array(np.ascontiguousarray(value)) for key, value in mean.items()})
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics)})
    return Message(content, dst_node_id=0, message_type="train")


def _counts(replies: list[SiteReply], key: str, n_groups: int, groups: str) -> np.ndarray:
    """The ``(replies, groups)`` counts each reply reports under ``key``."""
    counts = np.zeros((len(replies), n_groups))
    for row, reply in enumerate(replies):
        reported = (reply.metrics or {}).get(key)
        if reported is None or len(reported) != n_groups:
            raise ValueError(f"every reply must report {key} for {n_groups} {groups}")
        counts[row] = np.asarray(reported, dtype=float)
    return counts
