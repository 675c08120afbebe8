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
- **missing modalities** (``modality-weighting``): a site without cameras never
  trains the image encoder, yet its unchanged copy counts in the example-weighted
  mean and shrinks the image encoder's update by its share of the examples.
  Each reply reports ``modality-samples`` (training samples with each
  modality present); a modality encoder's arrays are rescaled the same way, so
  the mean is over the sites that trained it, weighted by those counts.
- **gradient scale** (``gradient-weighting``): each weight is averaged over the
  sites weighted by examples times the size of the gradients each site's
  optimiser stepped on there (`gradient_weighted_arrays`), which subsumes both
  rules above.
- **what Flower checks**: Flower wants identical metric keys in every reply; ours
  differ (a site scores only the domains it has both classes of), so replies
  are reduced to the keys aggregation needs; the full metrics are recorded first.
- **what Flower does not check**: a reply whose arrays or counts cannot be
  averaged (a missing or reshaped array, a NaN, a count list of the wrong
  length) would make the mean raise or poison the global model. `reply_problem`
  names what is wrong, and the round records that reply as a failure instead.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedcore.federation.layers import head_row_domains

WEIGHT_KEY = "num-examples"
LABELS_KEY = "domain-labels"
MODALITY_KEY = "modality-samples"
SCALES_KEY = "gradient-scales"
AGGREGATED_METRICS = (WEIGHT_KEY, "train-loss")


def reduced_reply(content: RecordDict, arrays_key: str = "arrays") -> RecordDict:
    """The reply with only the model arrays and the metrics every site reports."""
    metrics = content["metrics"]
    kept = {key: metrics[key] for key in AGGREGATED_METRICS if key in metrics}
    return RecordDict({arrays_key: content[arrays_key], "metrics": MetricRecord(kept)})


def reply_problem(
    content: RecordDict,
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
    if arrays_key not in content.array_records or "metrics" not in content.metric_records:
        return f"no {arrays_key!r} arrays or no metrics"
    problem = arrays_problem(content[arrays_key], current)
    if problem:
        return problem
    metrics = content["metrics"]
    examples = metrics.get(WEIGHT_KEY)
    if not isinstance(examples, int | float) or not math.isfinite(examples) or examples < 0:
        return f"{WEIGHT_KEY} is {examples!r}, not a count"
    for key, length in counts.items():
        values = metrics.get(key)
        if not isinstance(values, list) or len(values) != length:
            return f"{key} must hold {length} counts; got {values!r}"
        if not all(math.isfinite(value) and 0 <= value <= examples for value in values):
            return f"{key} {values} must lie between 0 and {WEIGHT_KEY} ({examples:g})"
    return None


def arrays_problem(
    arrays: ArrayRecord, expected: dict[str, np.ndarray], non_negative: Collection[str] = ()
) -> str | None:
    """Why ``arrays`` cannot stand in for ``expected`` (keys, shapes, finite values), or None.

    ``non_negative``: keys whose arrays must hold no negative value (scales, squares).
    """
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        return f"arrays differ from the round's: missing {missing[:3]}, unexpected {extra[:3]}"
    for key, array in arrays.items():
        value = array.numpy()
        if value.shape != expected[key].shape:
            return f"array {key} has shape {value.shape}, not {expected[key].shape}"
        if not np.isfinite(value).all():
            return f"array {key} holds non-finite values"
        if key in non_negative and (value < 0).any():
            return f"array {key} holds negative values"
    return None


def record_problem(
    content: RecordDict,
    key: str,
    expected: dict[str, np.ndarray],
    non_negative: Collection[str] = (),
) -> str | None:
    """Why a reply's ArrayRecord ``key`` (beside its model) is missing or unusable, or None."""
    if key not in content.array_records:
        return f"no {key!r} arrays"
    problem = arrays_problem(content[key], expected, non_negative)
    return problem and f"{key}: {problem}"


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
    scale, totals = _count_scales(contents, LABELS_KEY, n_domains, "domains")
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


def modality_weighted_encoders(
    contents: list[RecordDict],
    current: dict[str, np.ndarray],
    encoder_keys: dict[str, list[str]],
    arrays_key: str = "arrays",
) -> list[RecordDict]:
    """Rewrite each reply's modality encoders so Flower's mean weighs them by present samples.

    The rule of `label_weighted_heads`, per modality instead of per head row:
    site ``i``'s arrays of modality ``m`` become ``w_i * (c_im / C_m) * (N / n_i)``
    with ``c_im`` its training samples where ``m`` is present; a modality no site
    had keeps the current arrays.

    Args:
        contents: Training replies whose ``metrics`` hold ``num-examples`` (> 0)
            and ``modality-samples`` (one count per modality of ``encoder_keys``,
            in its order).
        current: The global arrays the round started from.
        encoder_keys: State-dict keys of each modality's encoder.
        arrays_key: Key of the ArrayRecord in each reply.

    Raises:
        ValueError: A reply lacks the counts, or reports no examples.
    """
    scale, totals = _count_scales(contents, MODALITY_KEY, len(encoder_keys), "modalities")
    rewritten = []
    for row, content in enumerate(contents):
        arrays = dict(content[arrays_key].items())
        for column, keys in enumerate(encoder_keys.values()):
            for key in keys:
                if totals[column] == 0:
                    arrays[key] = Array(np.ascontiguousarray(current[key]))
                    continue
                value = arrays[key].numpy()
                new = (value * scale[row, column]).astype(value.dtype)
                arrays[key] = Array(np.ascontiguousarray(new))
        rewritten.append(
            RecordDict({arrays_key: ArrayRecord(arrays), "metrics": content["metrics"]})
        )
    return rewritten


def gradient_weighted_arrays(
    contents: list[RecordDict],
    current: dict[str, np.ndarray],
    keys: list[str],
    arrays_key: str = "arrays",
) -> list[RecordDict]:
    """Rewrite each reply's ``keys`` so Flower's mean weighs each weight by sites' gradient scale.

    A fresh AdamW moves each weight by about its learning rate whatever the
    size of the gradient, so in a plain mean a site whose data barely touch a
    weight pulls it as hard as a site whose data drive it (a quiet district
    outvotes a flooded one on the flood head). Each reply carries
    ``gradient-scales``, the root mean square of the gradients its optimiser
    stepped on, per weight; site ``i``'s value ``w_i`` becomes
    ``w_i * s_i * N / sum_j n_j s_j``, so Flower's ``num-examples``-weighted mean
    is ``sum_i n_i s_i w_i / sum_j n_j s_j``: per weight, a mean weighted by
    examples times gradient scale. A weight no site had a gradient for keeps its
    current value. Sites without a domain's labels or a modality have no
    gradient there, so this also does what `label_weighted_heads` and
    `modality_weighted_encoders` do.

    Args:
        contents: Training replies whose ``metrics`` hold ``num-examples`` (> 0),
            each with a ``gradient-scales`` ArrayRecord holding ``keys``.
        current: The global arrays the round started from.
        keys: Keys of the arrays to weigh (the trainable ones).
        arrays_key: Key of the model's ArrayRecord in each reply.
    """
    examples = np.array([float(content["metrics"][WEIGHT_KEY]) for content in contents])
    if (examples <= 0).any():
        raise ValueError("every reply must report num-examples > 0")
    arrays = [dict(content[arrays_key].items()) for content in contents]
    for key in keys:
        scales = np.stack([content[SCALES_KEY][key].numpy() for content in contents])
        shape = (-1,) + (1,) * (scales.ndim - 1)
        total = (examples.reshape(shape) * scales).sum(axis=0)
        factor = np.divide(
            scales * examples.sum(), total, out=np.zeros_like(scales), where=total > 0
        )
        for row, reply_arrays in enumerate(arrays):
            value = reply_arrays[key].numpy()
            new = np.where(total > 0, value * factor[row], current[key]).astype(value.dtype)
            reply_arrays[key] = Array(np.ascontiguousarray(new))
    return [
        RecordDict({arrays_key: ArrayRecord(new), "metrics": content["metrics"]})
        for new, content in zip(arrays, contents, strict=True)
    ]


def _count_scales(
    contents: list[RecordDict], counts_key: str, n_groups: int, groups: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per (reply, group) factors that turn Flower's example weights into count weights.

    Returns ``(c_ig / C_g) * (N / n_i)`` as a ``(replies, groups)`` array, and the
    totals ``C_g``.
    """
    examples = np.array([float(content["metrics"][WEIGHT_KEY]) for content in contents])
    if (examples <= 0).any():
        raise ValueError("every reply must report num-examples > 0")
    counts = np.zeros((len(contents), n_groups))
    for row, content in enumerate(contents):
        reported = content["metrics"].get(counts_key)
        if reported is None or len(reported) != n_groups:
            raise ValueError(f"every reply must report {counts_key} for {n_groups} {groups}")
        counts[row] = np.asarray(reported, dtype=float)
    totals = counts.sum(axis=0)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return share * (examples.sum() / examples)[:, None], totals
