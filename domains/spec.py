"""What a sector's risk is: which events count, over which horizon, and how to show it.

A `DomainSpec` is the one place where a sector (traffic, safety, crowd, disaster)
is defined. The model predicts per domain, the pipelines turn events into targets
with `DomainSpec.targets`, and the app takes levels, colours and wording from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RiskLevel:
    """One step on a domain's risk scale.

    Attributes:
        name: Machine name (``"low"``, ``"high"``...), stored in predictions.
        label: Short label shown in the app.
        min_probability: Lowest event probability in the horizon that reaches it.
        color: RGB colour used on maps and legends.
        wording: One plain-language sentence for a planner.
    """

    name: str
    label: str
    min_probability: float
    color: tuple[int, int, int]
    wording: str


@dataclass(frozen=True)
class DomainSpec:
    """A sector whose risk Kizashi predicts per district and window.

    Attributes:
        name: Machine name, used as the key everywhere (``"traffic"``).
        title: Title for the app (``"Traffic accidents"``).
        event_kinds: Event ``kind`` values that count as this domain's events.
        horizon_hours: The target is the events in ``[window_start,
            window_start + horizon_hours)``.
        levels: Risk levels in increasing order of ``min_probability``; the first
            starts at 0.
        description: What the risk means, for the app.
    """

    name: str
    title: str
    event_kinds: tuple[str, ...]
    horizon_hours: int
    levels: tuple[RiskLevel, ...]
    description: str

    def __post_init__(self) -> None:
        """Check that the levels form a scale starting at probability 0."""
        thresholds = [level.min_probability for level in self.levels]
        if not self.levels or thresholds[0] != 0.0 or thresholds != sorted(thresholds):
            raise ValueError(f"domain {self.name!r}: levels must rise from 0")

    def level_for(self, probability: float) -> RiskLevel:
        """The highest level whose threshold the probability reaches."""
        chosen = self.levels[0]
        for level in self.levels:
            if probability >= level.min_probability:
                chosen = level
        return chosen

    def level_names(self, probabilities: np.ndarray) -> np.ndarray:
        """Vectorised `level_for`: the level name for each probability."""
        thresholds = np.array([level.min_probability for level in self.levels])
        index = np.searchsorted(thresholds, np.asarray(probabilities), side="right") - 1
        names = np.array([level.name for level in self.levels], dtype=object)
        return names[np.clip(index, 0, len(self.levels) - 1)]

    def targets(
        self,
        events: pd.DataFrame,
        district_ids: list[str],
        window_starts: pd.DatetimeIndex,
    ) -> np.ndarray:
        """Count this domain's events per district and window.

        Args:
            events: Frame with ``district_id``, ``timestamp`` (UTC) and ``kind``.
            district_ids: Row order of the result.
            window_starts: Column order of the result (UTC).

        Returns:
            Integer array ``(len(district_ids), len(window_starts))``: how many of
            this domain's events fall in ``[start, start + horizon)``.
        """
        counts = np.zeros((len(district_ids), len(window_starts)), dtype=np.int64)
        mine = events[events["kind"].isin(self.event_kinds)]
        if mine.empty or len(window_starts) == 0:
            return counts
        row_of = {district: row for row, district in enumerate(district_ids)}
        rows = mine["district_id"].map(row_of)
        known = rows.notna().to_numpy()
        rows = rows[known].astype(int).to_numpy()
        times = pd.DatetimeIndex(mine["timestamp"][known]).as_unit("ns").asi8
        starts = pd.DatetimeIndex(window_starts).as_unit("ns").asi8
        horizon = pd.Timedelta(hours=self.horizon_hours).value
        order = np.argsort(starts)
        sorted_starts = starts[order]
        # An event at t belongs to every window with start <= t < start + horizon.
        first = np.searchsorted(sorted_starts, times - horizon, side="right")
        last = np.searchsorted(sorted_starts, times, side="right")
        for row, lo, hi in zip(rows, first, last, strict=True):
            counts[row, order[lo:hi]] += 1
        return counts
