"""Which sites train in a round: Flower's independent draw, or each site once per cycle.

Flower draws every round's sites afresh (``random.sample``), so over a run
some sites train several times more often than others, and under label skew
the run's model leans towards the labels of the sites it happened to draw
most. ``site-sampling cycle`` draws without replacement: a
seeded permutation of the sites, cut into cohorts of the round's size, so
every site trains once per ``ceil(sites / cohort)`` rounds (an epoch over the
sites, as a centralised trainer reshuffles its samples each epoch rather than
drawing them with replacement).

The draw is a function of the seed and the round alone, so a resumed run
draws what the unbroken run would have. Sites are positions in the grid's
site-ordered node list; if sites join or leave mid-cycle, the positions shift
and that cycle's coverage is approximate, never wrong in size.
"""

from __future__ import annotations

import math
import random


def cycle_cohort(nodes: list[int], size: int, server_round: int, seed: int) -> list[int]:
    """The ``size`` nodes (of ``nodes``, in site order) that train in ``server_round``.

    Round ``r`` (from 1) is slot ``(r - 1) mod k`` of cycle ``(r - 1) div k``,
    where ``k = ceil(len(nodes) / size)``; each cycle is its own seeded
    permutation. A last slot short of ``size`` is filled from the start of the
    permutation, so those few sites train twice in that cycle.

    Raises:
        ValueError: ``size`` is not between 1 and ``len(nodes)``.
    """
    if not 1 <= size <= len(nodes):
        raise ValueError(f"a cohort of {size} cannot be drawn from {len(nodes)} sites")
    slots = math.ceil(len(nodes) / size)
    cycle, slot = divmod(server_round - 1, slots)
    order = random.Random(f"{seed}:{cycle}").sample(range(len(nodes)), len(nodes))
    picked = order[slot * size : (slot + 1) * size]
    picked += [index for index in order if index not in picked][: size - len(picked)]
    return [nodes[index] for index in picked]
