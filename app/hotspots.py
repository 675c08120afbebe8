"""Hotspot-trend labels per district, from its predicted risk over the run's windows.

Adapted from ArcGIS Pro's Emerging Hot Spot Analysis (EHSA). EHSA calls a bin
"hot" when it is a statistically significant hot spot (Getis-Ord Gi*); here a
window is **hot** when the predicted level reaches the domain's ``high`` level
(probability >= its threshold), and **cold** when it is at the lowest level. The
intensity trend is a Mann-Kendall test on the probabilities (two-sided, 5%). "Most
windows" means at least 90% of them, rounded down, so one miss is allowed in a
series of up to 19 windows (EHSA's 90% rule on the short series a run holds).

The rules, checked in this order:

- **no pattern** — never hot, or not hot now and not hot in most windows.
- **new** — hot in the final window and never before.
- **intensifying** — hot in most windows, including the final one, and the
  probability rises significantly.
- **diminishing** — hot in most windows, including the final one, and the
  probability falls significantly.
- **persistent** — hot in most windows, including the final one, with no
  significant trend.
- **consecutive** — a single unbroken run of at least two hot windows at the end,
  never hot before that run, and not hot in most windows.
- **oscillating** — hot in the final window, hot before with gaps, and cold
  (lowest level) in at least one earlier window.
- **sporadic** — hot in the final window, hot before with gaps, never cold.
- **historical** — not hot in the final window, but hot in most windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from domains import DomainSpec, get_domain

HOT_LEVEL = "high"
MOST_SHARE = 0.9
TREND_Z = 1.96
LABELS = (
    "new",
    "consecutive",
    "intensifying",
    "persistent",
    "diminishing",
    "sporadic",
    "oscillating",
    "historical",
    "no pattern",
)
LABEL_WORDING = {
    "new": "High risk now, for the first time in this run.",
    "consecutive": "High risk in the last windows in a row, not before.",
    "intensifying": "High risk most of the time, and rising.",
    "persistent": "High risk most of the time, steady.",
    "diminishing": "High risk most of the time, but falling.",
    "sporadic": "High risk now, on and off before.",
    "oscillating": "High risk now; earlier it was at the lowest level.",
    "historical": "Mostly high risk before, but not now.",
    "no pattern": "No high-risk pattern.",
}


def mann_kendall_z(values: Sequence[float]) -> float:
    """Mann-Kendall trend statistic as a z-score (positive: rising).

    Uses the normal approximation with continuity correction and no tie
    correction; 0 for fewer than 3 values.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 3:
        return 0.0
    signs = np.sign(x[None, :] - x[:, None])
    s = float(np.triu(signs, k=1).sum())
    variance = n * (n - 1) * (2 * n + 5) / 18.0
    if s == 0:
        return 0.0
    return (s - math.copysign(1.0, s)) / math.sqrt(variance)


def hotspot_trend(hot: Sequence[bool], cold: Sequence[bool], probability: Sequence[float]) -> str:
    """The trend label of one district's series, by the rules in the module docstring.

    Args:
        hot: Per window, earliest first: whether the level reached ``high``.
        cold: Per window: whether the level was the lowest one.
        probability: Per window: the predicted probability (for the trend).

    Returns:
        One of `LABELS`.
    """
    hot_array = np.asarray(hot, dtype=bool)
    n = len(hot_array)
    if n == 0 or not hot_array.any():
        return "no pattern"
    mostly_hot = hot_array.sum() >= max(1, math.floor(MOST_SHARE * n))
    if not hot_array[-1]:
        return "historical" if mostly_hot else "no pattern"
    earlier = hot_array[:-1]
    if not earlier.any():
        return "new"
    if mostly_hot:
        z = mann_kendall_z(probability)
        if z > TREND_Z:
            return "intensifying"
        if z < -TREND_Z:
            return "diminishing"
        return "persistent"
    run_start = n - int(np.argmin(hot_array[::-1])) if not hot_array.all() else 0
    if not hot_array[:run_start].any():
        return "consecutive"
    if np.asarray(cold, dtype=bool)[:-1].any():
        return "oscillating"
    return "sporadic"


def district_trends(predictions: pd.DataFrame, domain: DomainSpec | str) -> pd.DataFrame:
    """The trend label of every district for one domain.

    Args:
        predictions: A run's predictions (``district_id``, ``name``, ``domain``,
            ``window_start``, ``probability``).
        domain: The domain (name or spec) whose levels define hot and cold.

    Returns:
        ``district_id``, ``name``, ``trend`` and ``hot_windows`` (how many windows
        were hot), one row per district, sorted by district id.
    """
    spec = get_domain(domain) if isinstance(domain, str) else domain
    high = next(level.min_probability for level in spec.levels if level.name == HOT_LEVEL)
    lowest_top = spec.levels[1].min_probability if len(spec.levels) > 1 else math.inf
    mine = predictions[predictions["domain"] == spec.name].sort_values("window_start")
    rows = []
    for (district_id, name), series in mine.groupby(["district_id", "name"], sort=True):
        probability = series["probability"].to_numpy(dtype=float)
        hot = probability >= high
        rows.append(
            {
                "district_id": district_id,
                "name": name,
                "trend": hotspot_trend(hot, probability < lowest_top, probability),
                "hot_windows": int(hot.sum()),
            }
        )
    return pd.DataFrame(rows, columns=["district_id", "name", "trend", "hot_windows"])
