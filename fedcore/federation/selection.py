"""Which round's global model a federated run keeps: the best on validation windows.

The centralised trainer keeps its best epoch on the temporal validation split;
a federation keeps its best round by the same rule, so the two are compared on
equal terms. The score is the macro AUPRC on validation windows: the server's
central evaluation where it scores the validation split (simulation,
benchmarks), else the sites' federated evaluation (a deployment, where the
server holds no data; ``fraction-evaluate`` > 0). Central evaluation on the
*test* split never selects: that would tune on the hold-out. Without a score
(``select-round last``, or nothing scored) the run keeps its last round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedcore.federation.settings import FederationSettings

SCORE_KEY = "auprc-macro"
FEDERATED_SCORE_KEY = "val-auprc-macro"


@dataclass(frozen=True)
class Selection:
    """The round a run keeps so far and its validation score (None: kept as the last)."""

    round: int
    score: float | None
    by: str

    def to_facts(self) -> dict:
        """The selection as checkpoint facts (``state.json``)."""
        return {"round": self.round, "score": self.score, "by": self.by}

    @classmethod
    def from_facts(cls, facts: dict | None) -> Selection | None:
        """A selection from `to_facts` (None for a checkpoint written before selection)."""
        if not facts:
            return None
        return cls(int(facts["round"]), facts["score"], str(facts["by"]))


def selection_source(settings: FederationSettings) -> str:
    """What picks the round: ``central validation``, ``federated validation``, ``last round``."""
    if settings.select_round == "last":
        return "last round"
    if settings.eval_city_dir and settings.central_eval_split == "validation":
        return "central validation"
    if settings.fraction_evaluate > 0:
        return "federated validation"
    return "last round"


def round_score(record: dict, source: str) -> float | None:
    """A round record's validation macro AUPRC from ``source`` (None: not scored)."""
    if source == "central validation":
        value = (record.get("central") or {}).get(SCORE_KEY)
    elif source == "federated validation":
        value = (record.get("federated_evaluation") or {}).get(FEDERATED_SCORE_KEY)
    else:
        return None
    return float(value) if value is not None and math.isfinite(float(value)) else None


def update_selection(
    current: Selection | None, server_round: int, record: dict, source: str
) -> Selection:
    """The selection after ``server_round``: this round if it scores higher, else unchanged.

    Ties keep the earlier round (as early stopping keeps its first best epoch). A
    run whose rounds carry no score follows its last round.
    """
    score = round_score(record, source)
    if score is None:
        if current is None or current.score is None:
            return Selection(server_round, None, "last round")
        return current
    if current is None or current.score is None or score > current.score:
        return Selection(server_round, score, source)
    return current
