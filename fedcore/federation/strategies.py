"""Flower strategies as Kizashi uses them, plus SCAFFOLD, which Flower lacks.

FedAvg, FedProx, FedAdam and FedYogi are Flower's own classes; `SiteAware` sits in
front of each to (1) check each reply and take the round's mean with the
weights skewed sites need (heads by each site's per-domain label counts,
modality encoders by the samples that had the modality, or every weight by
gradient scale; see `aggregation`), handing the Flower class that mean as the
round's one reply to step from, (2) average evaluation metrics over the
sites that report each one, and (3) expose the state a checkpoint must hold to
continue the run (FedAdam/FedYogi's moments, SCAFFOLD's server control). FedBN
and personalised heads need no server rule of their own: the sites keep those
layers (see `local_state`), and the server averages them only as the starting
point for new sites and central evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, FedYogi

from fedcore.federation.aggregation import (
    LABELS_KEY,
    MODALITY_KEY,
    SCALES_KEY,
    WEIGHT_KEY,
    SiteReply,
    decode_reply,
    label_weights,
    mean_reply,
    modality_weights,
    record_problem,
    reply_problem,
    weighted_mean,
)
from fedcore.federation.array_bytes import array_values
from fedcore.federation.cohorts import cycle_cohort
from fedcore.federation.server_moments import MOMENTS_KEY, ServerMoments
from fedcore.federation.settings import FederationSettings
from fedcore.federation.update_memory import UpdateMemory

CONTROL_KEY = "scaffold-control"
CONTROL_DELTA_KEY = "scaffold-control-delta"


def average_present_metrics(contents: list[RecordDict], weight_key: str) -> MetricRecord:
    """Example-weighted mean of each scalar metric over the replies that carry it."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for content in contents:
        metrics = content["metrics"]
        weight = float(metrics.get(weight_key, 1.0))
        for key, value in metrics.items():
            if key in (weight_key, "site-index") or not isinstance(value, int | float):
                continue
            if math.isfinite(float(value)):
                sums[key] = sums.get(key, 0.0) + weight * float(value)
                weights[key] = weights.get(key, 0.0) + weight
    return MetricRecord({key: sums[key] / weights[key] for key in sums if weights[key] > 0})


def split_state(
    arrays: dict[str, np.ndarray], prefix: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The arrays under ``prefix`` (the prefix removed), and the rest as they were."""
    own = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
    rest = {key: value for key, value in arrays.items() if not key.startswith(prefix)}
    return own, rest


class SiteAware:
    """Mixin in front of a Flower FedAvg-family strategy (see the module docstring).

    Args:
        head_keys: State-dict keys of the per-domain heads.
        n_domains: Number of domains.
        encoder_keys: State-dict keys of each modality encoder to average over
            the sites that had the modality (``modality-weighting``); None: off.
        moments: The Adam moments sites step with (``site-optimiser`` ``mimelite``,
            `fedcore.federation.server_moments`); None: sites keep their own.
        gradient_keys: Keys to average weighted by the sites' gradient scales
            (``gradient-weighting``, `aggregation.weighted_mean`),
            instead of by labels and modalities; None: off.
        sampling: ``random`` (Flower's draw) or ``cycle`` (`cohorts.cycle_cohort`).
        seed: Seed of the ``cycle`` draw.
        memory_rounds: Rounds a site's last update keeps counting in the mean
            (``update-memory``, `update_memory`); 0: only the round's replies.
        **kwargs: Passed to the Flower strategy.
    """

    def __init__(
        self,
        *,
        head_keys: list[str],
        n_domains: int,
        encoder_keys: dict[str, list[str]] | None = None,
        moments: ServerMoments | None = None,
        gradient_keys: list[str] | None = None,
        sampling: str = "random",
        seed: int = 0,
        memory_rounds: int = 0,
        memory_rule: str = "average",
        **kwargs,
    ) -> None:
        kwargs.setdefault("evaluate_metrics_aggr_fn", average_present_metrics)
        super().__init__(**kwargs)
        self.head_keys = list(head_keys)
        self.n_domains = n_domains
        self.encoder_keys = dict(encoder_keys or {})
        self.moments = moments
        self.gradient_keys = list(gradient_keys or [])
        self.sampling = sampling
        self.seed = seed
        self.memory = UpdateMemory(memory_rounds, memory_rule) if memory_rounds else None
        self.round_arrays: dict[str, np.ndarray] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the round's starting arrays, sample sites, attach the moments.

        Flower's class builds the round's message and draws its sites; with
        ``cycle`` sampling the same message goes, as many times, to the
        round's slot of the cycle instead.
        """
        self.round_arrays = {key: array_values(array) for key, array in arrays.items()}
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if self.sampling == "cycle" and messages:
            nodes = list(grid.get_node_ids())
            cohort = cycle_cohort(nodes, min(len(messages), len(nodes)), server_round, self.seed)
            content, kind = messages[0].content, messages[0].metadata.message_type
            messages = [Message(content, dst_node_id=node, message_type=kind) for node in cohort]
        record = self.moments.record() if self.moments is not None else None
        if record is None:
            return messages
        for message in messages:
            message.content[MOMENTS_KEY] = record
        return messages

    def reply_problem(self, reply: SiteReply) -> str | None:
        """Why a training reply of this round cannot be aggregated, or None (`aggregation`)."""
        counts = {LABELS_KEY: self.n_domains}
        if self.encoder_keys:
            counts[MODALITY_KEY] = len(self.encoder_keys)
        problem = reply_problem(reply, self.round_arrays, counts)
        if problem is None and self.gradient_keys:
            expected = {key: self.round_arrays[key] for key in self.gradient_keys}
            problem = record_problem(reply, SCALES_KEY, expected, non_negative=set(expected))
        if problem is None and self.moments is not None:
            problem = self.moments.reply_problem(reply, self.round_arrays)
        return problem

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        """Flower's entry point: decode the successful replies and `aggregate_replies` them."""
        decoded = [
            replace(decode_reply(reply.content), node=int(reply.metadata.src_node_id))
            for reply in replies
            if not reply.has_error()
        ]
        return self.aggregate_replies(server_round, decoded)

    def aggregate_replies(self, server_round: int, replies: list[SiteReply]):
        """The new global arrays and the round's metrics from replies that passed `reply_problem`.

        Replies without examples are left out. The mean is `aggregation.weighted_mean`
        (heads by labels, encoders by modality, or every weight by gradient
        scale); the Flower strategy then aggregates that mean as the round's one
        reply and takes its server step from it.
        """
        useful = [reply for reply in replies if reply.examples > 0]
        if not useful:
            return None, None
        if self.moments is not None:
            self.moments.update(useful)
        weights: dict[str, np.ndarray] = {}
        if not self.gradient_keys:
            weights = label_weights(useful, self.round_arrays, self.head_keys, self.n_domains)
            if self.encoder_keys:
                weights.update(modality_weights(useful, self.encoder_keys))
        scaled = set(self.gradient_keys)
        mean = weighted_mean(useful, self.round_arrays, weights, scaled=scaled)
        if self.memory is not None:
            mean = self.memory.step(server_round, useful, self.round_arrays, mean, weights, scaled)
        return super().aggregate_train(server_round, [mean_reply(mean, useful)])

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        """Average each evaluation metric over the sites that report it.

        Flower's check wants identical keys from every site; ours do not have them
        (a site scores only the domains it has both classes of).
        """
        valid = [reply.content for reply in replies if not reply.has_error()]
        return average_present_metrics(valid, WEIGHT_KEY) if valid else None

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Server state beyond the model that a checkpoint must hold: moments, update memory."""
        state = {}
        if self.moments is not None:
            state.update({f"moments/{k}": v for k, v in self.moments.state_arrays().items()})
        if self.memory is not None:
            state.update({f"memory/{k}": v for k, v in self.memory.state_arrays().items()})
        return state

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what `state_arrays` returned; state this strategy does not keep is an error."""
        if self.moments is not None:
            own, arrays = split_state(arrays, "moments/")
            self.moments.load_state_arrays(own)
        if self.memory is not None:
            own, arrays = split_state(arrays, "memory/")
            self.memory.load_state_arrays(own)
        if arrays:
            raise ValueError(f"{type(self).__name__} keeps no such state: {sorted(arrays)[:3]}")


class KizashiFedAvg(SiteAware, FedAvg):
    """Flower's FedAvg with `SiteAware` aggregation."""


class KizashiFedProx(SiteAware, FedProx):
    """Flower's FedProx (sites add ``proximal-mu / 2 * ||w - w_global||^2``)."""


class KizashiFedAvgM(SiteAware, FedAvg):
    """FedAvg with server momentum (FedAvgM, Hsu et al., 2019), resumable.

    The pseudo-gradient ``g = w - mean(w_i)`` feeds a heavy-ball momentum
    ``m = beta * m + g`` (``m = g`` in the first round, as PyTorch's SGD and
    Flower's ``FedAvgM`` do) and the model moves by ``-server_lr * m``. Flower's
    ``FedAvgM`` keeps its momentum as an unnamed list; this one names it by array
    key so a checkpoint can hold it.

    Args:
        server_lr: Step size on the momentum.
        server_momentum: Momentum decay ``beta``.
        **kwargs: Passed to `SiteAware` and FedAvg.
    """

    def __init__(self, *, server_lr: float, server_momentum: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.server_lr = server_lr
        self.server_momentum = server_momentum
        self.momentum: dict[str, np.ndarray] = {}

    def aggregate_replies(self, server_round: int, replies: list[SiteReply]):
        """Average as FedAvg, then take a momentum step from the round's starting arrays."""
        averaged, metrics = super().aggregate_replies(server_round, replies)
        if averaged is None:
            return averaged, metrics
        moved = {}
        for key, array in averaged.items():
            start = self.round_arrays[key]
            step = start - array.numpy()
            if key in self.momentum:
                step = self.server_momentum * self.momentum[key] + step
            self.momentum[key] = step.astype(start.dtype)
            moved[key] = Array(np.asarray(start - self.server_lr * step, dtype=start.dtype))
        return ArrayRecord(moved), metrics

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The server momentum, ``momentum/<key>`` (and `SiteAware`'s state)."""
        own = {f"momentum/{key}": value for key, value in self.momentum.items()}
        return {**super().state_arrays(), **own}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the server momentum."""
        self.momentum, rest = split_state(arrays, "momentum/")
        super().load_state_arrays(rest)


class AdaptiveState:
    """Checkpoint state of Flower's FedOpt family: first and second moments."""

    def state_arrays(self) -> dict[str, np.ndarray]:
        """``m_t/<key>`` and ``v_t/<key>`` of every array, once the moments exist."""
        out = super().state_arrays()
        for name in ("m_t", "v_t"):
            for key, value in (getattr(self, name) or {}).items():
                out[f"{name}/{key}"] = value
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the moments written by `state_arrays`."""
        for name in ("m_t", "v_t"):
            moments, arrays = split_state(arrays, f"{name}/")
            setattr(self, name, moments or None)
        super().load_state_arrays(arrays)


class KizashiFedAdam(AdaptiveState, SiteAware, FedAdam):
    """Flower's FedAdam (server Adam over the averaged update) with resumable moments."""


class KizashiFedYogi(AdaptiveState, SiteAware, FedYogi):
    """Flower's FedYogi with resumable moments."""


class Scaffold(SiteAware, FedAvg):
    """SCAFFOLD (Karimireddy et al., 2020): control variates against client drift.

    The server keeps a control ``c`` (one array per trainable parameter) and sends
    it with every training message; a site corrects each gradient by
    ``c - c_i`` and returns, beside its weights, ``delta_c_i``, the change of its
    own control (its mean raw gradient along the local trajectory minus the old
    ``c_i``; with SGD this is the paper's option II). The model moves from the
    round's start ``x`` by the paper's global step ``eta_g`` times the averaged
    update, ``x + eta_g * (mean(y_i) - x)`` (``eta_g = 1``: FedAvg's average);
    the control moves by ``|S| / N`` times the mean delta.

    Args:
        control_keys: Keys of the trainable parameters.
        server_lr: The global step ``eta_g``.
        **kwargs: Passed to `SiteAware` and FedAvg.
    """

    def __init__(self, *, control_keys: list[str], server_lr: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.server_lr = server_lr
        self.control_keys = list(control_keys)
        self.control: dict[str, np.ndarray] = {}
        self.n_nodes = 0

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample sites as FedAvg does and attach the server control to each message."""
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.n_nodes = len(list(grid.get_node_ids()))
        if not self.control:
            self.control = {key: np.zeros_like(self.round_arrays[key]) for key in self.control_keys}
        record = ArrayRecord({key: Array(value) for key, value in self.control.items()})
        for message in messages:
            message.content[CONTROL_KEY] = record
        return messages

    def reply_problem(self, reply: SiteReply) -> str | None:
        """`SiteAware.reply_problem`, and the control delta must fit the server control."""
        problem = super().reply_problem(reply)
        if problem or not self.control:
            return problem
        return record_problem(reply, CONTROL_DELTA_KEY, self.control)

    def aggregate_replies(self, server_round: int, replies: list[SiteReply]):
        """Average the model as FedAvg, then move the server control."""
        deltas = [
            reply.records[CONTROL_DELTA_KEY]
            for reply in replies
            if CONTROL_DELTA_KEY in reply.records
        ]
        result = super().aggregate_replies(server_round, replies)
        if result[0] is not None and self.server_lr != 1.0:
            result = (self._global_step(result[0]), result[1])
        if deltas:
            share = len(deltas) / max(self.n_nodes, len(deltas))
            for key in self.control:
                mean = np.mean([delta[key] for delta in deltas], axis=0)
                self.control[key] = (self.control[key] + share * mean).astype(np.float32)
        return result

    def _global_step(self, averaged: ArrayRecord) -> ArrayRecord:
        """``x + eta_g * (mean - x)`` for the trainable arrays; the rest as averaged."""
        moved = {}
        for key, array in averaged.items():
            mean = array.numpy()
            if key in self.control_keys:
                start = self.round_arrays[key]
                mean = np.asarray(start + self.server_lr * (mean - start), dtype=start.dtype)
            moved[key] = Array(mean)
        return ArrayRecord(moved)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The server control, ``control/<key>`` (and `SiteAware`'s state)."""
        own = {f"control/{key}": value for key, value in self.control.items()}
        return {**super().state_arrays(), **own}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the server control."""
        self.control, rest = split_state(arrays, "control/")
        super().load_state_arrays(rest)


def make_strategy(
    settings: FederationSettings,
    head_keys: list[str],
    control_keys: list[str],
    encoder_keys: dict[str, list[str]] | None = None,
) -> SiteAware:
    """The strategy ``settings.strategy`` names, with the run's knobs.

    ``control_keys`` name the trainable parameters (SCAFFOLD's controls, the
    moments that ``mimelite`` sites step with, the arrays ``gradient-weighting``
    weighs).
    ``fedbn`` and ``fedper`` aggregate as FedAvg; what makes them differ is
    the layers their sites keep (``settings.local_layer_kinds``). ``encoder_keys``
    are averaged by modality only with ``modality-weighting``.
    """
    moments = (
        ServerMoments(control_keys, settings.server_beta1, settings.server_beta2)
        if settings.site_optimiser == "mimelite"
        else None
    )
    common = {
        "moments": moments,
        "gradient_keys": control_keys if settings.gradient_weighting else None,
        "head_keys": head_keys,
        "encoder_keys": encoder_keys if settings.modality_weighting else None,
        "n_domains": len(settings.domain_list),
        "sampling": settings.site_sampling,
        "seed": settings.seed,
        "memory_rounds": settings.update_memory,
        "memory_rule": settings.update_memory_rule,
        "fraction_train": settings.fraction_train,
        "fraction_evaluate": settings.fraction_evaluate,
        "min_train_nodes": settings.min_train_sites,
        "min_evaluate_nodes": 1 if settings.fraction_evaluate > 0 else 0,
        "min_available_nodes": settings.min_available_sites or settings.min_train_sites,
    }
    adaptive = {
        "eta": settings.server_step,
        "eta_l": settings.lr,
        "beta_1": settings.server_beta1,
        "beta_2": settings.server_beta2,
        "tau": settings.server_tau,
    }
    name = settings.strategy
    if name == "fedprox":
        return KizashiFedProx(proximal_mu=settings.proximal_mu, **common)
    if name == "fedadam":
        return KizashiFedAdam(**common, **adaptive)
    if name == "fedyogi":
        return KizashiFedYogi(**common, **adaptive)
    if name == "fedavgm":
        return KizashiFedAvgM(
            server_lr=settings.server_step, server_momentum=settings.server_momentum, **common
        )
    if name == "scaffold":
        return Scaffold(control_keys=control_keys, server_lr=settings.server_step, **common)
    return KizashiFedAvg(**common)
