"""The synthetic city's clock: when it starts and how UTC maps to local hours."""

from __future__ import annotations

import numpy as np
import pandas as pd

CITY_START = pd.Timestamp("2026-06-01T00:00:00", tz="UTC")
UTC_OFFSET_HOURS = 9  # the default city lies in Tokyo


def local_hour(times: pd.DatetimeIndex) -> np.ndarray:
    """Hour of the day (0-23) in the city's local time for each UTC time."""
    return ((times.hour + UTC_OFFSET_HOURS) % 24).to_numpy()
