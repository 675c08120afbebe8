"""The hotspot-trend labels on hand-made series, one test per rule."""

from __future__ import annotations

import pandas as pd
import pytest

from app.hotspots import LABEL_WORDING, LABELS, district_trends, hotspot_trend, mann_kendall_z
from domains import get_domain

HOT, NOT = True, False


def label(hot: list[bool], cold: list[bool] | None = None, probability=None) -> str:
    cold = cold if cold is not None else [False] * len(hot)
    probability = probability if probability is not None else [0.2] * len(hot)
    return hotspot_trend(hot, cold, probability)


def test_mann_kendall_sign_and_size() -> None:
    assert mann_kendall_z([1, 2, 3, 4, 5, 6]) == pytest.approx(14 / 28.333**0.5, rel=1e-3)
    assert mann_kendall_z([6, 5, 4, 3, 2, 1]) < -1.96
    assert mann_kendall_z([1, 1, 1, 1]) == 0.0
    assert mann_kendall_z([1, 2]) == 0.0


@pytest.mark.parametrize(
    ("hot", "cold", "probability", "expected"),
    [
        ([NOT] * 6, None, None, "no pattern"),
        ([NOT, NOT, HOT, NOT, NOT, NOT], None, None, "no pattern"),
        ([NOT] * 5 + [HOT], None, None, "new"),
        ([HOT], None, None, "new"),
        ([NOT, NOT, NOT, HOT, HOT, HOT], None, None, "consecutive"),
        ([HOT] * 6, None, [0.20, 0.22, 0.25, 0.28, 0.31, 0.35], "intensifying"),
        ([HOT] * 6, None, [0.35, 0.31, 0.28, 0.25, 0.22, 0.20], "diminishing"),
        ([HOT] * 6, None, [0.20, 0.25, 0.21, 0.24, 0.22, 0.23], "persistent"),
        ([HOT, NOT, HOT, HOT, HOT, HOT], None, [0.2] * 6, "persistent"),
        ([HOT, NOT, HOT, NOT, NOT, HOT], [NOT] * 6, None, "sporadic"),
        ([HOT, NOT, HOT, NOT, NOT, HOT], [NOT, NOT, NOT, HOT, NOT, NOT], None, "oscillating"),
        ([HOT, HOT, HOT, HOT, HOT, NOT], None, None, "historical"),
        ([HOT, HOT, NOT, NOT, NOT, NOT], None, None, "no pattern"),
    ],
)
def test_hotspot_rules(hot, cold, probability, expected) -> None:
    assert label(hot, cold, probability) == expected


def test_every_label_is_worded() -> None:
    assert set(LABEL_WORDING) == set(LABELS)


def test_district_trends_use_the_domain_levels() -> None:
    """``hot`` is the domain's ``high`` threshold; ``cold`` its lowest level."""
    spec = get_domain("traffic")
    high = spec.levels[2].min_probability
    windows = pd.date_range("2024-06-01", periods=4, freq="6h", tz="UTC")
    series = {
        "a": [0.0, 0.0, 0.0, high],  # new
        "b": [high, 0.0, high - 0.001, high],  # oscillating: cold in window 1
        "c": [high, 0.10, high - 0.001, high],  # sporadic: never below moderate
    }
    rows = [
        {
            "district_id": d,
            "name": d.upper(),
            "domain": "traffic",
            "window_start": w,
            "probability": p,
        }
        for d, values in series.items()
        for w, p in zip(windows, values, strict=True)
    ]
    rows.append(
        {
            "district_id": "a",
            "name": "A",
            "domain": "safety",
            "window_start": windows[0],
            "probability": 0.9,
        }
    )
    trends = district_trends(pd.DataFrame(rows), "traffic")
    assert trends["trend"].tolist() == ["new", "oscillating", "sporadic"]
    assert trends["hot_windows"].tolist() == [1, 2, 2]
