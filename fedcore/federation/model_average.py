"""A moving average of the global model over rounds, kept by the server.

The centralised trainer validates and keeps a moving average of its weights
(`pipelines.train.TrainOptions.ema_decay`), because its raw weights swing from
epoch to epoch. A federation's global model swings from round to round the same
way: each round another sample of skewed sites moves it. With ``server-ema`` the
server keeps ``a_r = d * a_(r-1) + (1 - d) * x_r`` (``a_1 = x_1``, so the random
initial model does not linger); the average is what central evaluation scores,
what selection picks and what the run saves. Sites still train from the raw
global model ``x_r``, so the federation's dynamics do not change.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord

from fedcore.federation.task import arrays_from_numpy


class ModelAverage:
    """The server's moving average of the global model (off when ``decay`` is 0).

    Floating-point arrays (weights and normalisation statistics) are averaged;
    integer arrays (counters) take the latest round's value.
    """

    def __init__(self, decay: float, state: dict[str, np.ndarray] | None = None) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"server-ema must be in [0, 1), got {decay}")
        self.decay = decay
        self.state: dict[str, np.ndarray] = dict(state or {}) if decay > 0 else {}

    def update(self, arrays: ArrayRecord) -> ArrayRecord:
        """Fold in a round's global model; the model to score (the average, or ``arrays``)."""
        if self.decay == 0:
            return arrays
        latest = {key: array.numpy() for key, array in arrays.items()}
        if not self.state:
            self.state = {key: value.copy() for key, value in latest.items()}
        else:
            self.state = {key: self._blend(self.state[key], value) for key, value in latest.items()}
        return arrays_from_numpy(self.state)

    def of(self, arrays: ArrayRecord) -> ArrayRecord:
        """The model the run keeps for ``arrays``, the last global model: the average when on."""
        return arrays_from_numpy(self.state) if self.state else arrays

    def _blend(self, average: np.ndarray, latest: np.ndarray) -> np.ndarray:
        if not np.issubdtype(latest.dtype, np.floating):
            return latest.copy()
        return (self.decay * average + (1.0 - self.decay) * latest).astype(latest.dtype)
