"""The hidden truth of a synthetic city: the event rates its events were drawn from.

No model reads it. It exists to measure the ceiling: scoring the true rates on
the test windows gives the best AUPRC any model could expect, and every model's
score is reported as a fraction of it. It is stored apart from the City bundle's
own files, as ``oracle.npz`` in the city folder, which `City.load` never opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from datasets.errors import CityNotFoundError

ORACLE_FILE = "oracle.npz"


@dataclass
class Oracle:
    """Hourly hidden rates and factors of a synthetic city.

    Attributes:
        district_ids: Row order of every array.
        times: Hourly UTC time steps, the column order of every array.
        rates: Per domain, expected events per hour ``(n_districts, n_hours)``.
        factors: Hidden factors (rain, temperature, crowd, festival, traffic)
            ``(n_districts, n_hours)``, for probes that check what each modality sees.
    """

    district_ids: list[str]
    times: pd.DatetimeIndex
    rates: dict[str, np.ndarray]
    factors: dict[str, np.ndarray]

    def expected_events(
        self, domain: str, starts: pd.DatetimeIndex, horizon_hours: int
    ) -> np.ndarray:
        """Expected event count in ``[start, start + horizon)``: ``(n_districts, n_windows)``."""
        rate = self.rates[domain]
        cumulative = np.concatenate([np.zeros((rate.shape[0], 1)), np.cumsum(rate, axis=1)], 1)
        first = self.times.get_indexer(pd.DatetimeIndex(starts))
        if (first < 0).any():
            raise ValueError("window starts must lie on the oracle's hourly grid")
        last = np.minimum(first + horizon_hours, rate.shape[1])
        return cumulative[:, last] - cumulative[:, first]

    def event_probability(
        self, domain: str, starts: pd.DatetimeIndex, horizon_hours: int
    ) -> np.ndarray:
        """Chance of at least one event in each window (Poisson): ``(n_districts, n_windows)``."""
        return 1.0 - np.exp(-self.expected_events(domain, starts, horizon_hours))

    def save(self, city_dir: str | Path) -> Path:
        """Write ``oracle.npz`` into the (already saved) city folder."""
        path = Path(city_dir) / ORACLE_FILE
        arrays = {f"rate_{name}": value for name, value in self.rates.items()}
        arrays.update({f"factor_{name}": value for name, value in self.factors.items()})
        np.savez_compressed(
            path,
            district_ids=np.array(self.district_ids),
            times=self.times.tz_convert(None).to_numpy(),
            **arrays,
        )
        return path

    @classmethod
    def load(cls, city_dir: str | Path) -> Oracle:
        """Read the oracle of a synthetic city folder."""
        path = Path(city_dir) / ORACLE_FILE
        if not path.exists():
            raise CityNotFoundError(path, "no oracle: only synthetic cities have hidden rates")
        with np.load(path) as archive:
            rates = {k[5:]: archive[k] for k in archive.files if k.startswith("rate_")}
            factors = {k[7:]: archive[k] for k in archive.files if k.startswith("factor_")}
            return cls(
                district_ids=[str(v) for v in archive["district_ids"]],
                times=pd.DatetimeIndex(archive["times"]).tz_localize("UTC"),
                rates=rates,
                factors=factors,
            )
