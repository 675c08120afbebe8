import copy
import re

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from datasets import make_city
from fedcore.baselines import KEYWORDS, fit_gbm_baseline, hand_features, score_gbm_baseline
from fedcore.metrics import risk_metrics
from fedcore.site_data import DataSettings, prepare_site_data

GATHERING = ("festival", "concert", "parade", "match", "fireworks")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Trees fit on one thread: tiny data gains nothing from more, and shared CI cores stall."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def city():
    return make_city(n_districts=20, days=10, seed=1)


@pytest.fixture(scope="module")
def site(city):
    return prepare_site_data(city, DataSettings())


@pytest.fixture(scope="module")
def features(site, city):
    return hand_features(site.samples, city)


@pytest.fixture(scope="module")
def baseline(site, features):
    samples = site.samples
    return fit_gbm_baseline(features[0], samples.targets, site.split, samples.domains, seed=0)


def column(features, name):
    matrix, names = features
    return matrix[:, names.index(name)]


def test_one_named_float_column_per_feature(site, city, features):
    matrix, names = features
    samples = site.samples
    n_static = 11  # area .. nightlife, has_camera, has_pedestrian_counter, has_water_gauge
    n_sources = city.reports["source"].nunique()
    expected = 6 * len(samples.channels) + 1 + n_sources + len(KEYWORDS) + 3 + n_static + 2
    assert matrix.shape == (len(samples), expected) == (len(samples), len(names))
    assert matrix.dtype == np.float32
    assert len(set(names)) == len(names)
    for name in ("rainfall_trend", "reports_police", "kw_flooded", "static_elevation_m"):
        assert name in names
    assert "static_district_id" not in names and "static_geometry" not in names


def test_sensor_aggregates_ignore_missing_steps(site, features):
    samples = site.samples
    channel = samples.channels.index("temperature")
    mask = samples.series_mask[:, :, channel]
    partial = np.flatnonzero(mask.any(axis=1) & ~mask.all(axis=1) & mask[:, 0])
    assert len(partial), "the synthetic city has sensors reporting every 2-3 hours"
    row = partial[0]
    seen = np.flatnonzero(mask[row])
    values = samples.series[row, seen, channel].astype(np.float64)
    assert column(features, "temperature_mean")[row] == pytest.approx(values.mean(), rel=1e-5)
    assert column(features, "temperature_max")[row] == pytest.approx(values.max())
    assert column(features, "temperature_min")[row] == pytest.approx(values.min())
    assert column(features, "temperature_last")[row] == pytest.approx(values[-1])
    assert column(features, "temperature_observed")[row] == pytest.approx(len(seen) / 24)
    first = values[seen < 6].mean()
    last = values[seen >= 18].mean() if (seen >= 18).any() else np.nan
    trend = column(features, "temperature_trend")[row]
    assert trend == pytest.approx(last - first, rel=1e-4, nan_ok=True)


def test_missing_sensor_gives_nan_not_zero(site, city, features):
    samples = site.samples
    channel = samples.channels.index("pedestrian_count")
    missing = ~samples.series_mask[:, :, channel].any(axis=1)
    assert missing.any() and not missing.all()
    for stat in ("mean", "max", "min", "last", "trend"):
        values = column(features, f"pedestrian_count_{stat}")
        assert np.isnan(values[missing]).all(), stat
        assert not np.isnan(values[~missing]).any() or stat == "trend", stat
    assert (column(features, "pedestrian_count_observed")[missing] == 0).all()
    # A channel blanked in one sample turns NaN there and nowhere else.
    blanked = copy.copy(samples)
    blanked.series_mask = samples.series_mask.copy()
    blanked.series_mask[0, :, 0] = False
    matrix, names = hand_features(blanked, city)
    changed = np.flatnonzero(~np.isclose(matrix, features[0], equal_nan=True).all(axis=0))
    first = f"{samples.channels[0]}_"
    assert changed.size and all(names[i].startswith(first) for i in changed)
    assert np.isnan(matrix[0, names.index(f"{first}mean")])


def test_keyword_and_source_counts_match_a_hand_count(site, city, features):
    samples = site.samples
    gathering = sum(column(features, f"kw_{word}") for word in GATHERING)
    row = int(np.argmax(gathering + (samples.report_index >= 0).sum(axis=1) / 100))
    texts = city.reports.iloc[samples.report_index[row][samples.report_index[row] >= 0]]
    assert len(texts) >= 2
    for word in KEYWORDS:
        hand = sum(word in re.findall(r"[\w-]+", text.lower()) for text in texts["text"])
        assert column(features, f"kw_{word}")[row] == hand, word
    for source, count in texts["source"].value_counts().items():
        assert column(features, f"reports_{source}")[row] == count
    assert column(features, "reports_total")[row] == samples.text_count[row]


def test_gathering_words_come_before_crowd_events(site, features):
    samples = site.samples
    crowd = samples.targets[:, samples.domains.index("crowd")] > 0
    gathering = sum(column(features, f"kw_{word}") for word in GATHERING)
    assert crowd.sum() >= 10
    assert gathering[crowd].mean() > 3 * gathering.mean() > 0


def test_frame_clock_and_static_features_line_up(site, city, features):
    samples = site.samples
    has_frame = samples.frame_index >= 0
    assert (column(features, "frame_present") == has_frame).all()
    assert np.isnan(column(features, "frame_brightness")[~has_frame]).all()
    row = int(np.flatnonzero(has_frame)[0])
    grey = samples.frames[samples.frame_index[row]].mean(axis=-1) / 255.0
    assert column(features, "frame_brightness")[row] == pytest.approx(grey.mean(), rel=1e-5)
    assert column(features, "frame_bright_share")[row] == pytest.approx((grey > 0.8).mean())
    local = pd.DatetimeIndex(samples.starts[samples.window]).tz_convert("Asia/Tokyo")
    assert (column(features, "local_hour") == local.hour).all()
    assert (column(features, "local_weekday") == local.day_of_week).all()
    assert set(np.unique(column(features, "local_hour"))) == {3, 9, 15, 21}  # UTC 18, 0, 6, 12
    population = city.districts["population"].to_numpy()[samples.district]
    assert (column(features, "static_population") == population).all()


def test_gbm_beats_a_constant_predictor_on_test(site, features, baseline):
    samples, test = site.samples, site.split["test"]
    probabilities = baseline.predict_proba(features[0][test])
    assert probabilities.shape == (len(test), len(samples.domains))
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    metrics = risk_metrics(samples.targets[test], probabilities, samples.domains)
    labels = samples.targets[test] > 0
    scorable = labels.any(axis=0) & ~labels.all(axis=0)
    constant = labels.mean(axis=0)[scorable].mean()  # a constant's AUPRC is the prevalence
    assert metrics["auprc-macro"] > 2 * constant


def test_validation_score_is_the_kept_models_validation_auprc(site, features, baseline):
    samples, validation = site.samples, site.split["validation"]
    probabilities = baseline.predict_proba(features[0][validation])
    metrics = risk_metrics(samples.targets[validation], probabilities, samples.domains)
    for column, name in enumerate(samples.domains):
        if f"auprc-{name}" in metrics:  # domains without validation events cannot be scored
            assert baseline.validation_scores[column] == pytest.approx(metrics[f"auprc-{name}"])
        point = baseline.params[column]
        assert baseline.models[column].n_iter_ == point["max_iter"] <= 300
        assert point["max_leaf_nodes"] in (15, 31) and point["learning_rate"] in (0.05, 0.1)


def test_scoring_is_deterministic(site, city, features, baseline):
    matrix, _ = hand_features(site.samples, city)
    np.testing.assert_array_equal(matrix, features[0])
    samples, test = site.samples, site.split["test"]
    expected = risk_metrics(
        samples.targets[test], baseline.predict_proba(matrix[test]), samples.domains
    )
    assert score_gbm_baseline(site, city, seed=0) == {**expected, "num-examples": len(test)}


def test_domain_without_training_positives_predicts_base_rate(site, features):
    samples, split = site.samples, site.split
    counts = samples.targets[:, :2].copy()
    counts[split["train"], 1] = 0
    assert counts[split["test"], 1].any()
    fitted = fit_gbm_baseline(features[0], counts, split, ["traffic", "never"], seed=0)
    assert fitted.models[1] is None and fitted.models[0] is not None
    probabilities = fitted.predict_proba(features[0])
    assert (probabilities[:, 1] == 0).all()
    assert probabilities[:, 0].std() > 0
    assert fitted.base_rates[0] == pytest.approx((counts[split["train"], 0] > 0).mean())


def test_refit_with_validation_keeps_the_chosen_size(site, features):
    samples, split = site.samples, site.split
    counts = samples.targets[:, :1]
    kept = fit_gbm_baseline(features[0], counts, split, ["traffic"], seed=0)
    refit = fit_gbm_baseline(
        features[0], counts, split, ["traffic"], seed=0, refit_with_validation=True
    )
    assert refit.params == kept.params
    assert refit.models[0].n_iter_ == kept.params[0]["max_iter"]
    assert not np.allclose(refit.predict_proba(features[0]), kept.predict_proba(features[0]))


def test_empty_validation_split_is_refused(site, features):
    split = {"train": site.split["train"], "validation": np.array([], dtype=int)}
    with pytest.raises(ValueError, match="validation split is empty"):
        fit_gbm_baseline(features[0], site.samples.targets, split, site.samples.domains)
