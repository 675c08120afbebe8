"""The rival an analyst would pick: gradient-boosted trees on hand-made features.

RiskNet has to beat more than a constant. An analyst with the same data would
aggregate each sensor over the look-back, count reports and telling words, glance
at the latest camera frame, add district attributes and the local hour, and fit a
``HistGradientBoostingClassifier`` per domain. This module is that analyst, on the
very `RiskSamples` RiskNet sees, tuned on the same temporal validation split and
scored with the same `risk_metrics` on the test split.
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, log_loss

from datasets import City, RiskSamples
from datasets.samples import STATIC_EXCLUDE
from fedcore.metrics import risk_metrics

if TYPE_CHECKING:  # site_data pulls in the text encoder; the baseline itself needs none
    from fedcore.site_data import SiteData

# Words an analyst skimming the reports would count: gatherings, incidents, water, heat, crowding.
KEYWORDS = (
    "festival", "concert", "parade", "match", "fireworks", "crowd", "crowds", "thousands",
    "collision", "accident", "fight", "theft", "snatching", "vandalism",
    "flood", "flooded", "water", "pumping", "heat", "heat-stroke", "ambulance",
    "overcrowding", "congestion", "closed",
)  # fmt: skip
BRIGHT_LEVEL = 0.8  # grey level (0..1) above which a pixel counts as bright: people, headlights
FRAME_CHUNK = 4096  # frames summarised at once, to bound memory on big cities
# Tuning grid, searched per domain; the number of trees is early-stopped on validation.
GRID = {"learning_rate": (0.05, 0.1), "max_leaf_nodes": (15, 31), "l2_regularization": (0.0, 1.0)}
MAX_ITER = 300
PATIENCE = 20  # rounds without validation log-loss gain before stopping


def hand_features(samples: RiskSamples, city: City) -> tuple[np.ndarray, list[str]]:
    """Hand-made features of every sample, NaN where a value was not observed.

    Per sample, in this column order:

    * per sensor channel, over the look-back: ``mean``, ``max``, ``min``,
      ``last`` (latest observed value), ``trend`` (mean of the last quarter minus
      mean of the first quarter) and ``observed`` (share of steps observed);
      NaN when the channel (or, for the trend, a quarter) has no reading;
    * ``reports_total`` (all reports in the look-back, `RiskSamples.text_count`),
      ``reports_<source>`` per report source of the city, and ``kw_<word>`` per
      word of `KEYWORDS` (reports containing it as a whole word, case-insensitive).
      Sources and keywords are counted over the sample's indexed reports, i.e. its
      latest ``max_reports`` (`RiskSamples.report_index`), not the whole look-back:
      the same reports RiskNet reads, and in busy contexts the latest matter most;
    * ``frame_present``, ``frame_brightness`` (mean grey level, 0..1) and
      ``frame_bright_share`` (share of pixels above `BRIGHT_LEVEL`) of the latest
      camera frame, NaN without one;
    * ``static_<column>`` for each numeric (or boolean) column of ``city.districts``;
    * ``local_hour`` and ``local_weekday`` (Monday 0) of the window start in
      ``city.timezone``: risk follows the local clock, not UTC.

    Trees split on raw values and treat NaN as its own branch, so nothing is
    scaled or imputed.

    Args:
        samples: Samples of ``city`` (any subset of districts).
        city: The city the samples were cut from (reports, frames, districts).

    Returns:
        ``(X, names)``: float32 ``(n_samples, n_features)`` and one name per column.
    """
    blocks = [
        _sensor_features(samples),
        _report_features(samples, city),
        _frame_features(samples),
        _static_features(samples, city),
        _clock_features(samples, city),
    ]
    matrix = np.concatenate([values for values, _ in blocks], axis=1).astype(np.float32)
    return matrix, [name for _, names in blocks for name in names]


def _sensor_features(samples: RiskSamples) -> tuple[np.ndarray, list[str]]:
    mask = samples.series_mask
    values = np.where(mask, samples.series, np.nan)  # (n, L, C)
    length = values.shape[1]
    quarter = max(length // 4, 1)
    latest = length - 1 - np.argmax(mask[:, ::-1], axis=1)  # last observed step, (n, C)
    last = np.take_along_axis(values, latest[:, None, :], axis=1)[:, 0]
    with warnings.catch_warnings():  # all-NaN slices give NaN, which is what we want
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = {
            "mean": np.nanmean(values, axis=1),
            "max": np.nanmax(values, axis=1),
            "min": np.nanmin(values, axis=1),
            "last": last,
            "trend": np.nanmean(values[:, -quarter:], axis=1)
            - np.nanmean(values[:, :quarter], axis=1),
            "observed": mask.mean(axis=1),
        }
    columns = [stats[stat][:, c] for c in range(len(samples.channels)) for stat in stats]
    names = [f"{channel}_{stat}" for channel in samples.channels for stat in stats]
    return np.stack(columns, axis=1), names


def _report_features(samples: RiskSamples, city: City) -> tuple[np.ndarray, list[str]]:
    """Counts per source and keyword, summed over each sample's indexed reports."""
    reports = city.reports
    sources = sorted(str(source) for source in reports["source"].unique())
    text = reports["text"].astype(str).str.lower()
    per_report = [(reports["source"].astype(str) == source).to_numpy() for source in sources]
    per_report += [
        text.str.contains(rf"(?<![\w-]){re.escape(word)}(?![\w-])", regex=True).to_numpy()
        for word in KEYWORDS
    ]
    # One zero row at the end, so index -1 (no report) adds nothing.
    table = np.zeros((len(reports) + 1, len(per_report)), dtype=np.float32)
    if len(reports):
        table[:-1] = np.stack(per_report, axis=1)
    counts = np.zeros((len(samples.report_index), table.shape[1]), dtype=np.float32)
    for slot in range(samples.report_index.shape[1]):
        counts += table[samples.report_index[:, slot]]
    total = samples.text_count.astype(np.float32)[:, None]
    names = ["reports_total"] + [f"reports_{s}" for s in sources] + [f"kw_{w}" for w in KEYWORDS]
    return np.concatenate([total, counts], axis=1), names


def _frame_features(samples: RiskSamples) -> tuple[np.ndarray, list[str]]:
    """Brightness of the latest frame; only frames some sample uses are summarised."""
    index = samples.frame_index
    used = np.unique(index[index >= 0])
    brightness = np.zeros(len(used), dtype=np.float32)
    bright_share = np.zeros(len(used), dtype=np.float32)
    for begin in range(0, len(used), FRAME_CHUNK):
        chunk = slice(begin, begin + FRAME_CHUNK)
        grey = samples.frames[used[chunk]].mean(axis=-1, dtype=np.float32) / 255.0  # (n, H, W)
        brightness[chunk] = grey.mean(axis=(1, 2))
        bright_share[chunk] = (grey > BRIGHT_LEVEL).mean(axis=(1, 2))
    present = index >= 0
    columns = np.full((len(index), 3), np.nan, dtype=np.float32)
    columns[:, 0] = present
    where = np.searchsorted(used, index[present])
    columns[present, 1], columns[present, 2] = brightness[where], bright_share[where]
    return columns, ["frame_present", "frame_brightness", "frame_bright_share"]


def _static_features(samples: RiskSamples, city: City) -> tuple[np.ndarray, list[str]]:
    table = pd.DataFrame(city.districts.drop(columns=list(STATIC_EXCLUDE & set(city.districts))))
    table = table.select_dtypes(include=["number", "bool"]).astype(float)
    values = table.to_numpy()[samples.district]
    return values, [f"static_{column}" for column in table.columns]


def _clock_features(samples: RiskSamples, city: City) -> tuple[np.ndarray, list[str]]:
    local = samples.starts.tz_convert(city.timezone)
    clock = np.stack([local.hour, local.day_of_week], axis=1).astype(np.float32)
    return clock[samples.window], ["local_hour", "local_weekday"]


@dataclass
class GbmBaseline:
    """One tuned gradient-boosted classifier per domain.

    Attributes:
        domains: Domain names, in column order.
        models: Per domain, the fitted classifier, or None where training had a
            single class and the domain predicts its base rate.
        base_rates: Per domain, the share of training samples with an event.
        params: Per domain, the chosen hyperparameters and number of trees.
        validation_scores: Per domain, the selection score of the chosen model
            (validation AUPRC, or minus the validation log-loss when validation
            lacks a class); NaN for constant domains.
    """

    domains: list[str]
    models: list[HistGradientBoostingClassifier | None]
    base_rates: np.ndarray
    params: list[dict] = field(default_factory=list)
    validation_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Event probabilities ``(n, D)`` for features ``X`` from `hand_features`."""
        out = np.empty((len(X), len(self.domains)), dtype=np.float64)
        for column, (model, rate) in enumerate(zip(self.models, self.base_rates, strict=True)):
            out[:, column] = rate if model is None else model.predict_proba(X)[:, 1]
        return out


def fit_gbm_baseline(
    X: np.ndarray,
    counts: np.ndarray,
    split: dict[str, np.ndarray],
    domains: list[str],
    seed: int = 0,
    refit_with_validation: bool = False,
) -> GbmBaseline:
    """Tune and fit one classifier per domain (label: at least one event).

    Protocol, the same for every domain; the test split is never looked at:

    1. Each `GRID` point is fitted on the train split with up to `MAX_ITER`
       trees, early-stopped on the validation split's log-loss (`PATIENCE`
       rounds); its number of trees is rolled back to the validation log-loss
       minimum (log-loss is smooth, so it picks the size more stably than AUPRC
       on a few dozen positives).
    2. At that size, the point is scored by validation AUPRC, the headline
       metric; the best point wins (ties: first in grid order).
    3. The chosen point and size are refitted without early stopping on the
       train split (default: RiskNet trains on it too, and the validation score
       stays an honest check of the final model) or, with
       ``refit_with_validation``, on train + validation (the most recent labels,
       at the price of nothing held out).

    A domain with one class in train predicts the train base rate. Trees use every
    OpenMP thread; on busy shared cores wrap the call in
    ``threadpoolctl.threadpool_limits(1)`` (measured 45x faster on 2 busy cores).

    Args:
        X: Features ``(n, F)`` from `hand_features`.
        counts: Event counts ``(n, D)`` (e.g. ``samples.targets``).
        split: Sample indices of ``"train"`` and ``"validation"``.
        domains: Names of the ``D`` columns.
        seed: Random state of every classifier (fits are deterministic given it).
        refit_with_validation: Refit the chosen model on train + validation.

    Returns:
        The fitted `GbmBaseline`.

    Raises:
        ValueError: The validation split is empty (there is nothing to tune on).
    """
    train, validation = np.asarray(split["train"]), np.asarray(split["validation"])
    if len(validation) == 0:
        raise ValueError("the validation split is empty; the GBM baseline is tuned on it")
    labels = np.asarray(counts) > 0
    rows = np.concatenate([train, validation]) if refit_with_validation else train
    models, params, scores = [], [], []
    base_rates = labels[train].mean(axis=0) if len(train) else np.zeros(len(domains))
    for column in range(len(domains)):
        y_train, y_val = labels[train, column], labels[validation, column]
        model, chosen, score = None, {}, np.nan
        if len(np.unique(y_train)) == 2:
            chosen, score = _tune(X[train], y_train, X[validation], y_val, seed)
            model = _classifier(chosen, seed, max_iter=chosen["max_iter"], early_stopping=False)
            model.fit(X[rows], labels[rows, column])
        models.append(model)
        params.append(chosen)
        scores.append(score)
    return GbmBaseline(list(domains), models, base_rates, params, np.asarray(scores))


def _classifier(point: dict, seed: int, **options) -> HistGradientBoostingClassifier:
    grid = {key: point[key] for key in GRID}
    return HistGradientBoostingClassifier(**grid, random_state=seed, **options)


def _tune(X_train, y_train, X_val, y_val, seed: int) -> tuple[dict, float]:
    """The best grid point with its number of trees (``max_iter``), and its score."""
    best: tuple[dict, float] | None = None
    for values in itertools.product(*GRID.values()):
        point = dict(zip(GRID, values, strict=True))
        model = _classifier(
            point, seed, max_iter=MAX_ITER, early_stopping=True, n_iter_no_change=PATIENCE
        )
        model.fit(X_train, y_train, X_val=X_val, y_val=y_val)
        # validation_score_[k] is minus the log-loss after k trees (entry 0: no tree yet).
        trees = max(int(np.argmax(model.validation_score_)), 1)
        staged = itertools.islice(model.staged_predict_proba(X_val), trees - 1, None)
        score = _selection_score(y_val, next(staged)[:, 1])
        if best is None or score > best[1]:
            best = ({**point, "max_iter": trees}, score)
    return best


def _selection_score(truth: np.ndarray, score: np.ndarray) -> float:
    """Validation AUPRC; minus the log-loss when validation has a single class."""
    if truth.all() or not truth.any():
        return -float(log_loss(truth, score, labels=[False, True]))
    return float(average_precision_score(truth, score))


def score_gbm_baseline(site_data: SiteData, city: City, seed: int = 0) -> dict:
    """Features, tuned fit and test-split `risk_metrics` of the GBM baseline.

    Args:
        site_data: A `fedcore.site_data.SiteData` of ``city``.
        city: The city its samples were cut from.
        seed: Random state of the classifiers.

    Returns:
        `risk_metrics` of the test split, plus ``num-examples`` (test samples).
    """
    samples = site_data.samples
    X, _ = hand_features(samples, city)
    baseline = fit_gbm_baseline(X, samples.targets, site_data.split, samples.domains, seed=seed)
    test = site_data.split["test"]
    metrics = risk_metrics(samples.targets[test], baseline.predict_proba(X[test]), samples.domains)
    return {**metrics, "num-examples": int(len(test))}
