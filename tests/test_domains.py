import numpy as np
import pandas as pd
import pytest

from domains import DOMAINS, DomainSpec, RiskLevel, get_domain


def test_registry_has_the_four_sectors():
    assert set(DOMAINS) == {"traffic", "safety", "crowd", "disaster"}
    with pytest.raises(KeyError, match="unknown domain 'fire'"):
        get_domain("fire")


def test_levels_rise_and_are_chosen_by_threshold():
    spec = get_domain("traffic")
    assert spec.level_for(0.0).name == "low"
    assert spec.level_for(0.99).name == "very_high"
    probabilities = np.array([0.0, 0.049, 0.05, 0.2, 0.5])
    expected = [spec.level_for(p).name for p in probabilities]
    assert list(spec.level_names(probabilities)) == expected
    with pytest.raises(ValueError, match="levels must rise"):
        DomainSpec("x", "X", ("k",), 6, (RiskLevel("a", "A", 0.5, (0, 0, 0), "w"),), "d")


def test_targets_count_events_in_each_window_horizon():
    spec = get_domain("traffic")
    t0 = pd.Timestamp("2026-06-01", tz="UTC")
    events = pd.DataFrame(
        {
            "district_id": ["A", "A", "B", "B", "Z"],
            "timestamp": [t0 + pd.Timedelta(hours=h) for h in (1, 7, 5, 5)]
            + [t0 + pd.Timedelta(hours=1)],
            "kind": [
                "traffic_accident",
                "traffic_accident",
                "traffic_accident",
                "theft",
                "traffic_accident",
            ],
        }
    )
    starts = pd.date_range(t0, periods=3, freq="3h")  # 0h, 3h, 6h; horizon 6h
    counts = spec.targets(events, ["A", "B"], starts)
    # A@1h in [0,6); A@7h in [3,9) and [6,12); B@5h in [0,6) and [3,9); theft ignored; Z unknown.
    assert counts.tolist() == [[1, 1, 1], [1, 1, 0]]
