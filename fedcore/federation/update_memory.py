"""Each site's latest update, so that a round's step need not rest on its cohort alone.

With 300 sites and 90 a round, each round's mean stands for another 30% of the
city. Larger cohorts gave better models at every size measured (stops 17–19:
30, 60, 90 sites a round), while smoothing over rounds did not stand in for them
(server momentum, EMA of the model). With ``update-memory`` the server keeps, per
site, the weighted update of its last round, ``w_i * (x_i - x)`` with ``x`` the
model it started from, and ``w_i`` (per element: the weights
`aggregation.weighted_mean` uses, examples or labels or gradient scales), for
``update-memory`` rounds. Two rules use it (``update-memory-rule``):

- ``average`` (MIFA, Gu et al., 2021) steps with ``sum_i w_i d_i / sum_i w_i``
  over every remembered site: the cohort's fresh updates and the others' latest.
  With ``site-sampling=cycle`` and as many rounds as a cycle takes, every step
  rests on every site, at most a cycle old; one round of memory is the
  cohort's own mean. Each update is applied again every round it is
  remembered, from a model that has moved on since.
- ``correct`` (FedVARP, Jhunjhunwala et al., 2022) steps with the cohort's own
  mean plus the remembered mean of all sites minus the remembered mean of the
  cohort's sites: zero on average over random cohorts, it only makes up for
  who is in the cohort.

Measured on the 300-site benchmark partition (tiny preset, FedAvgM at server-lr
2, gradient weighting, 90 sites a round), neither helped. ``average`` with a
4-round cycle learned far more slowly (validation AUPRC 0.089 at round 17
against 0.177 without memory, seed 0; stopped there). ``correct`` ended 72
rounds at validation 0.182 and 0.179, test 0.133 and 0.133 (seeds 0 and 1),
against 0.185 and 0.185, test 0.143 and 0.136, without memory. The
round-to-round swings of the validation curve stayed as large, so they come
from the sites' own noisy updates more than from who is in the cohort. Both
stay as options, off by default, for federations where sites come and go.

Costs and limits:
- memory: two model-sized arrays per site remembered, on the server and in
  every checkpoint (the tiny preset at 300 sites: 0.17 GB). It is for
  small models; the 150M preset would need 1.2 GB per site.
- time: each round sums the memory of every site anew; at 300 sites (tiny
  preset) the server's median time per round went from 0.29 s to 0.56–0.65 s,
  against about 20 s of site training.
- an update older than the model it is added to is stale; the memory's length
  bounds how stale, and a site that stops replying drops out after it.
- it needs each site's update, as gradient weighting does, so it does not
  combine with secure aggregation; a bad site's update counts for as many
  rounds as the memory is long.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np

from fedcore.federation.aggregation import SiteReply, reply_weight
from fedcore.federation.settings import UPDATE_MEMORY_RULES


@dataclass
class Remembered:
    """One site's last update: the round it trained in, ``w * (x_i - x)`` and ``w`` per array."""

    round: int
    weighted: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]


class UpdateMemory:
    """Each site's latest weighted update for ``rounds`` rounds (0: off), used by ``rule``."""

    def __init__(self, rounds: int, rule: str = "average") -> None:
        if rounds < 0:
            raise ValueError(f"update-memory must be >= 0 rounds, got {rounds}")
        if rule not in UPDATE_MEMORY_RULES:
            raise ValueError(f"update-memory-rule takes {UPDATE_MEMORY_RULES}, got {rule!r}")
        self.rounds = rounds
        self.rule = rule
        self.sites: dict[str, Remembered] = {}

    def step(
        self,
        server_round: int,
        replies: list[SiteReply],
        current: dict[str, np.ndarray],
        cohort_mean: dict[str, np.ndarray],
        weights: dict[str, np.ndarray],
        scaled: Collection[str] = (),
    ) -> dict[str, np.ndarray]:
        """The round's mean by the memory's rule, from the cohort's; the replies then remembered.

        ``average``: ``x + sum w d / sum w`` over every remembered site, the
        replies' fresh updates included. ``correct``: the cohort's mean plus the
        remembered mean of all sites minus that of the cohort's sites, both from
        what the memory held before this round (none for a cohort it has never
        heard from). ``weights`` and ``scaled`` are what `aggregation.weighted_mean`
        took; an element no remembered site weighs gets no step from memory.
        Integer arrays (counters) keep the cohort's mean.
        """
        floating = [key for key, now in current.items() if np.issubdtype(now.dtype, np.floating)]
        self.forget_before(server_round - self.rounds + 1)
        if self.rule == "correct":
            before = list(self.sites.values())
            cohort = [self.sites[reply.site] for reply in replies if reply.site in self.sites]
            self.remember(server_round, replies, current, weights, scaled, floating)
            if not cohort:
                return cohort_mean
            moved = {
                key: cohort_mean[key]
                + _mean(before, key, current[key].shape)
                - _mean(cohort, key, current[key].shape)
                for key in floating
            }
        else:
            self.remember(server_round, replies, current, weights, scaled, floating)
            remembered = list(self.sites.values())
            moved = {
                key: current[key] + _mean(remembered, key, current[key].shape) for key in floating
            }
        return {**cohort_mean, **{key: moved[key].astype(current[key].dtype) for key in moved}}

    def remember(
        self,
        server_round: int,
        replies: list[SiteReply],
        current: dict[str, np.ndarray],
        weights: dict[str, np.ndarray],
        scaled: Collection[str],
        keys: list[str],
    ) -> None:
        """Each reply's ``w * (x_i - x)`` and ``w`` on ``keys`` replace what its site had."""
        examples = np.array([reply.examples for reply in replies])
        for row, reply in enumerate(replies):
            weighted, plain = {}, {}
            for key in keys:
                base = weights.get(key, examples)[row]
                weight = np.asarray(reply_weight(reply, base, key, scaled), dtype=np.float32)
                update = reply.records["arrays"][key].astype(np.float32) - current[key]
                weighted[key] = weight * update
                plain[key] = weight
            self.sites[reply.site] = Remembered(server_round, weighted, plain)

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


def _mean(sites: Iterable[Remembered], key: str, shape: tuple) -> np.ndarray:
    """``sum w d / sum w`` over ``sites``, 0 where no site weighs an element."""
    total = np.zeros(shape)
    moved = np.zeros(shape)
    for site in sites:
        total += site.weights[key]
        moved += site.weighted[key]
    return np.divide(moved, total, out=np.zeros(shape), where=total > 0)
