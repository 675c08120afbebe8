"""The latest update of every site, so that each round's step rests on all of them.

With 300 sites and 90 a round, each round's mean stands for another 30% of the
city, and the cohort's skew pushes the global model to and fro. Larger cohorts
gave better models at every size measured (stops 17–19: 30, 60, 90 sites a
round), while smoothing over rounds did not stand in for them (server momentum,
EMA of the model). With ``update-memory`` the server keeps, per site, the
weighted update of its last round, ``w_i * (x_i - x)`` with ``x`` the model it
started from, and ``w_i`` (per element: the weights `aggregation.weighted_mean`
uses, examples or labels or gradient scales). Each round then steps with
``sum_i w_i (x_i - x) / sum_i w_i`` over every site heard from in the last
``update-memory`` rounds: the cohort's fresh updates and the rest's latest
(MIFA, Gu et al., "Fast Federated Learning in the Presence of Arbitrary Device
Unavailability", 2021). With ``site-sampling=cycle`` and as many rounds as a
cycle takes, that is every site, at most a cycle old. One round of memory is
the cohort's own mean.

Costs and limits:
- memory: two model-sized arrays per site remembered, on the server and in
  every checkpoint (the tiny preset at 300 sites: about 0.4 GB). It is for
  small models; the 150M preset would need 1.2 GB per site.
- an update older than the model it is added to is stale; the memory's length
  bounds how stale, and a site that stops replying drops out after it.
- it needs each site's update, as gradient weighting does, so it does not
  combine with secure aggregation; a bad site's update counts for as many
  rounds as the memory is long.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from fedcore.federation.aggregation import SiteReply, reply_weight


@dataclass
class Remembered:
    """One site's last update: the round it trained in, ``w * (x_i - x)`` and ``w`` per array."""

    round: int
    weighted: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]


class UpdateMemory:
    """Each site's latest weighted update for ``rounds`` rounds (0: off)."""

    def __init__(self, rounds: int) -> None:
        if rounds < 0:
            raise ValueError(f"update-memory must be >= 0 rounds, got {rounds}")
        self.rounds = rounds
        self.sites: dict[str, Remembered] = {}

    def mean(
        self,
        server_round: int,
        replies: list[SiteReply],
        current: dict[str, np.ndarray],
        weights: dict[str, np.ndarray],
        scaled: Collection[str] = (),
    ) -> dict[str, np.ndarray]:
        """Fold in the round's replies; per floating array, ``x + sum w d / sum w`` over memory.

        ``weights`` and ``scaled`` are what `aggregation.weighted_mean` takes;
        an element no remembered site weighs keeps its current value. Integer
        arrays (counters) are left to the cohort's mean and not returned.
        """
        examples = np.array([reply.examples for reply in replies])
        floating = [key for key, now in current.items() if np.issubdtype(now.dtype, np.floating)]
        for row, reply in enumerate(replies):
            weighted, plain = {}, {}
            for key in floating:
                base = weights.get(key, examples)[row]
                weight = np.asarray(reply_weight(reply, base, key, scaled), dtype=np.float32)
                update = reply.records["arrays"][key].astype(np.float32) - current[key]
                weighted[key] = weight * update
                plain[key] = weight
            self.sites[reply.site] = Remembered(server_round, weighted, plain)
        self.forget_before(server_round - self.rounds + 1)
        mean = {}
        for key in floating:
            now = current[key]
            total = np.zeros(now.shape)
            moved = np.zeros(now.shape)
            for site in self.sites.values():
                total += site.weights[key]
                moved += site.weighted[key]
            step = np.divide(moved, total, out=np.zeros(now.shape), where=total > 0)
            mean[key] = (now + step).astype(now.dtype)
        return mean

    def forget_before(self, first_round: int) -> None:
        """Drop the updates of sites last heard from before ``first_round``."""
        self.sites = {name: site for name, site in self.sites.items() if site.round >= first_round}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The memory as named arrays, each site's round, update and weight.

        Names: ``<site>/round``, ``<site>/update/<key>``, ``<site>/weight/<key>``.
        """
        state = {}
        for name, site in self.sites.items():
            state[f"{name}/round"] = np.array([site.round], dtype=np.int64)
            state.update({f"{name}/update/{key}": value for key, value in site.weighted.items()})
            state.update({f"{name}/weight/{key}": value for key, value in site.weights.items()})
        return state

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what `state_arrays` returned.

        Raises:
            ValueError: An array name that is not the memory's.
        """
        sites: dict[str, Remembered] = {}
        for name, value in arrays.items():
            site, _, rest = name.partition("/")
            entry = sites.setdefault(site, Remembered(0, {}, {}))
            kind, _, key = rest.partition("/")
            if kind == "round" and not key:
                entry.round = int(value.reshape(-1)[0])
            elif kind == "update" and key:
                entry.weighted[key] = value
            elif kind == "weight" and key:
                entry.weights[key] = value
            else:
                raise ValueError(f"update memory holds no array {name!r}")
        self.sites = sites
