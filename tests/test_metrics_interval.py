"""The paired block bootstrap of a macro AUPRC ratio, on windows made up here."""

import numpy as np
import pytest

from fedcore.metrics import macro_auprc_ratio_interval, risk_metrics


def windows(days: int = 12, per_day: int = 200, domains: int = 2, seed: int = 0):
    """Counts, a day label per window, and scores that rank events well."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    counts = (rng.random((n, domains)) < 0.05).astype(float)
    good = np.clip(0.6 * counts + 0.5 * rng.random((n, domains)), 0, 1)
    return counts, good, np.repeat(np.arange(days), per_day), rng


def test_a_model_against_itself_is_one_on_every_redraw():
    counts, good, days, _ = windows()
    assert macro_auprc_ratio_interval(counts, good, good, days) == pytest.approx((1.0, 1.0))


def test_a_clearly_worse_model_lies_below_one_and_the_interval_holds_the_ratio():
    counts, good, days, rng = windows()
    noise = rng.random(good.shape)
    low, high = macro_auprc_ratio_interval(counts, good, noise, days)
    ratio = macro(counts, noise) / macro(counts, good)
    assert low <= ratio <= high < 0.5


def test_a_day_effect_widens_the_interval_over_one_that_draws_windows_alone():
    counts, good, days, rng = windows()
    off_days = np.isin(days, rng.choice(12, 4, replace=False))
    other = np.where(off_days[:, None], rng.random(good.shape), good)  # blind on 4 days
    day_low, day_high = macro_auprc_ratio_interval(counts, good, other, days)
    one_low, one_high = macro_auprc_ratio_interval(counts, good, other, np.arange(len(days)))
    assert day_high - day_low > 1.5 * (one_high - one_low)
    assert macro_auprc_ratio_interval(counts, good, other, days) == (day_low, day_high)


def test_arrays_of_other_windows_or_a_bad_level_are_refused():
    counts, good, days, _ = windows()
    with pytest.raises(ValueError, match="same windows"):
        macro_auprc_ratio_interval(counts, good[:-1], good[:-1], days)
    with pytest.raises(ValueError, match="same windows"):
        macro_auprc_ratio_interval(counts, good, good, days[:-1])
    with pytest.raises(ValueError, match="level"):
        macro_auprc_ratio_interval(counts, good, good, days, level=1.0)


def test_windows_without_events_give_no_interval():
    counts, good, days, _ = windows()
    none = np.zeros_like(counts)
    low, high = macro_auprc_ratio_interval(none, good, good, days, resamples=20)
    assert np.isnan(low) and np.isnan(high)


def macro(counts, scores):
    return risk_metrics(counts, scores, [f"d{i}" for i in range(counts.shape[1])])["auprc-macro"]
