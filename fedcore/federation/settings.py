"""Every knob of a federated run, read from Flower's run config (hyphenated keys).

The server reads the run config and forwards what sites need in each message's
ConfigRecord, so a site needs nothing but its own partition folder and its node
config. Unknown keys and bad values fail with an error naming the key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

ROUND_SELECTIONS = ("best", "last")
SITE_SAMPLINGS = ("random", "cycle")
UPDATE_MEMORY_RULES = ("average", "correct")  # see update_memory_rule below
STRATEGIES = ("fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "scaffold", "fedbn", "fedper")
ADAPTIVE_STRATEGIES = ("fedadam", "fedyogi")  # Flower's server optimisers with a step ``eta``
LOCAL_LAYER_KINDS = ("norm", "head")
SITE_OPTIMISERS = ("adamw", "sgd", "mimelite")  # see site_optimiser below
# Layers a strategy keeps at the site unless ``local-layers`` says otherwise.
DEFAULT_LOCAL_LAYERS = {"fedbn": "norm", "fedper": "head"}
# Server learning rate a strategy takes unless ``server-lr`` says otherwise: a
# momentum step scales the averaged update (1: FedAvg's own size), an adaptive
# one moves each weight by about eta a round, so they live on different scales.
DEFAULT_SERVER_LR = {"fedavgm": 1.0, "fedadam": 0.01, "fedyogi": 0.01}


@dataclass(frozen=True)
class FederationSettings:
    """A federated run's configuration; field ``a_b`` is run-config key ``a-b``.

    Attributes:
        partitions_dir: A federation folder written by `datasets.partition_io.write_federation`
            (``public/`` + ``sites/site-XXX``); site ``k`` is the node with
            ``partition-id`` ``k``. A deployed SuperNode may instead name its own
            folder with ``site-dir`` (and ``public-dir``) in its node config.
        eval_city_dir: A City folder (pooled data) whose temporal hold-out the
            server scores the global model on every round; empty: no central
            evaluation (a deployment, where the server holds no data).
        central_eval_split: Which part of the temporal split central evaluation uses.
        run_dir: Where the server writes checkpoints, ``metrics.jsonl`` and the model.
        resume: Continue from the last checkpoint in ``run_dir`` instead of starting.
        keep_checkpoints: Checkpoints kept in ``run_dir`` (the newest, plus the
            selected round's); 0 keeps all.
        select_round: Which round's global model becomes the run's ``model/``:
            ``best`` on validation windows (as the centralised trainer keeps its
            best epoch; see `fedcore.federation.selection`) or ``last``.
        preset: RiskNet preset name.
        num_rounds: Federated rounds (in total, counting rounds before a resume).
        local_epochs: Epochs each site trains per round.
        local_steps: At least this many optimiser steps per site and round (more
            epochs where a site's data are few); 0 = just ``local_epochs``. A
            small site with a fresh AdamW would otherwise move the model only a
            few steps a round, and a federation of small sites would crawl.
        lr: Site learning rate in the first round.
        site_optimiser: ``adamw`` or ``sgd``, fresh at a site every round
            (`fedcore.training.make_optimiser` says why SGD; SGD takes a larger
            ``lr`` than AdamW), or ``mimelite``: Adam steps with moments the
            server holds and moves from the sites' gradients
            (`fedcore.federation.server_moments`), so no site starts from a
            fresh optimiser or follows its own slice's moments.
        site_momentum: Momentum of the ``sgd`` site optimiser.
        keep_site_moments: An ``adamw`` site keeps its moments (and step count)
            from its last round instead of starting fresh, so its first steps
            of a round follow its gradients' size rather than their sign alone
            (a fresh AdamW's first step is ``lr`` times the sign). Costs two
            model-sized arrays per site in its node state (0.57 MB at the tiny
            preset, 1.2 GB at the 150M one). Measured in the README: no better.
        sam_radius: Sites step with the gradients at the worst weights this far
            away (sharpness-aware minimisation: FedSAM,
            `fedcore.training.sharpness_aware_gradients`), seeking flat site
            minima, whose average should generalise better; 0 (off) steps as
            usual. Doubles a site's compute. Measured in the README: at 0.05 no
            better with ten local AdamW steps, but with one-step FedSGD sites
            it closes the test gap of a large batch.
        lr_schedule: ``cosine`` decays the site learning rate over the rounds to
            0, as the central trainer does over its epochs (`site_lr`);
            ``constant`` keeps ``lr``.
        batch_size: Site batch size.
        fraction_train: Share of sites asked to train each round.
        fraction_evaluate: Share of sites asked to score the model each round (0: none).
        evaluate_every: Central and federated evaluation score every this many
            rounds, and the last; the rounds between are neither scored nor
            selectable (`fedcore.federation.selection`). 1: every round. A
            FedSGD round of one step a site costs little next to scoring the
            hold-out, so a long run of them need not score each.
        site_sampling: How a round's training sites are drawn: ``random``, afresh
            each round as Flower does; ``cycle``, without replacement, so each
            site trains once per ``ceil(1 / fraction-train)`` rounds
            (`fedcore.federation.cohorts`).
        min_train_sites: Fewest successful training replies a round needs to count.
        min_available_sites: Sites that must be connected before a round starts
            (0: ``min-train-sites``).
        round_timeout_s: Seconds the server waits for replies in a round; the
            sites that have not answered by then are recorded as timed out.
        site_eval: Sites score the model they receive on their validation windows
            before training and report it with their training reply (per-site
            loss and AUPRC, no extra round trip).
        neighbour_exchange: Before the first round, sites pool what their
            districts tell the districts next door, and each gets the totals for
            its own (`fedcore.federation.neighbour_exchange`, which says what
            that discloses to whom); off, a site knows only the neighbours it
            holds itself, which at hundreds of sites is almost none.
        strategy: One of `STRATEGIES`.
        local_layers: Comma-separated kinds of layers a site keeps to itself
            (``norm``: FedBN, ``head``: personalised heads); ``default`` takes the
            strategy's own (fedbn: norm, fedper: head, others: none).
        proximal_mu: FedProx's proximal weight.
        server_lr: Server learning rate: FedAvgM's step on its momentum, FedAdam's
            and FedYogi's eta, SCAFFOLD's global step ``eta_g``; 0 takes the
            strategy's own (`DEFAULT_SERVER_LR`).
        server_momentum: FedAvgM's server momentum (heavy ball on the averaged update).
        server_beta1: FedAdam/FedYogi first-moment decay per round; with
            ``mimelite`` sites, also the decay of the moments they step with
            and the share of those moments in each of their steps.
        server_beta2: FedAdam/FedYogi (and ``mimelite``) second-moment decay per round.
        server_tau: FedAdam/FedYogi adaptivity (added to the root of the second moment).
        server_lr_schedule: ``cosine`` decays FedAdam's and FedYogi's ``eta`` over
            the rounds to 0 (`server_lr_at`); ``constant`` keeps it. With ``sgd``
            sites, the server's Adam takes out the scale of their updates, and
            with it the sites' own ``lr-schedule``: the decay has to be the server's.
        server_ema: Decay per round of the server's moving average of the global
            model, which is then what is evaluated, selected and saved; sites
            still train from the raw model (`fedcore.federation.model_average`).
            0: off, the raw global model is kept.
        modality_weighting: Average each modality encoder (image, text) over the
            sites that trained it, weighted by their samples with the modality,
            instead of over all sites by examples, where sites without cameras
            or reports dilute its update (`fedcore.federation.aggregation`).
            False: every array weighted by examples, as Flower does.
        gradient_weighting: Average each weight over the sites weighted by
            examples times the root mean square of the gradients each site's
            AdamW stepped on there (`fedcore.federation.aggregation.weighted_mean`),
            so that a site whose data barely move a weight does not pull it as
            hard as one whose data drive it; it replaces the label and modality
            weighting of the trainable arrays. Needs ``adamw`` sites.
        update_memory: Rounds each site's last update keeps counting in the
            round's mean, so that each step rests on every site heard from
            lately, not on the round's cohort alone
            (`fedcore.federation.update_memory`, which says what it costs);
            0 or 1: the round's replies only.
        update_memory_rule: What the memory does (`fedcore.federation.update_memory`):
            ``average`` steps with the mean of every remembered update (MIFA);
            ``correct`` steps with the round's own mean plus the remembered
            mean of all sites minus that of the round's sites (FedVARP).
        stride_hours: Hours between window starts.
        lookback_hours: Context before each window.
        domains: Comma-separated domain names.
        seed: Seed of model initialisation, site sampling and shuffling.
    """

    partitions_dir: str = "runs/partitions"
    eval_city_dir: str = ""
    central_eval_split: str = "test"
    run_dir: str = "runs/federation"
    resume: bool = False
    keep_checkpoints: int = 3
    select_round: str = "best"
    preset: str = "small"
    num_rounds: int = 3
    local_epochs: int = 1
    local_steps: int = 0
    lr: float = 3e-3
    site_optimiser: str = "adamw"
    site_momentum: float = 0.0
    keep_site_moments: bool = False
    sam_radius: float = 0.0
    lr_schedule: str = "cosine"
    batch_size: int = 64
    fraction_train: float = 1.0
    fraction_evaluate: float = 0.0
    evaluate_every: int = 1
    site_sampling: str = "random"
    min_train_sites: int = 2
    min_available_sites: int = 0
    round_timeout_s: float = 3600.0
    site_eval: bool = True
    neighbour_exchange: bool = False
    strategy: str = "fedavg"
    local_layers: str = "default"
    proximal_mu: float = 0.01
    server_lr: float = 0.0
    server_momentum: float = 0.9
    server_beta1: float = 0.9
    server_beta2: float = 0.99
    server_tau: float = 1e-3
    server_lr_schedule: str = "constant"
    server_ema: float = 0.0
    modality_weighting: bool = True
    gradient_weighting: bool = False
    update_memory: int = 0
    update_memory_rule: str = "average"
    stride_hours: int = 6
    lookback_hours: int = 24
    domains: str = "traffic,safety,crowd,disaster"
    seed: int = 0

    def __post_init__(self) -> None:
        """Reject settings no run could use, naming the run-config key."""
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}"
            )
        if self.local_layers != "default":
            unknown = set(self.local_layer_kinds) - set(LOCAL_LAYER_KINDS)
            if unknown:
                raise ValueError(
                    f"local-layers takes {', '.join(LOCAL_LAYER_KINDS)} (comma-separated), "
                    f"'default' or ''; got {self.local_layers!r}"
                )
        checks = {
            "num-rounds": self.num_rounds >= 1,
            "local-epochs": self.local_epochs >= 1,
            "local-steps": self.local_steps >= 0,
            "batch-size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "fraction-train": 0 < self.fraction_train <= 1,
            "fraction-evaluate": 0 <= self.fraction_evaluate <= 1,
            "evaluate-every": self.evaluate_every >= 1,
            "min-train-sites": self.min_train_sites >= 1,
            "min-available-sites": self.min_available_sites >= 0,
            "round-timeout-s": self.round_timeout_s > 0,
            "keep-checkpoints": self.keep_checkpoints >= 0,
            "proximal-mu": self.proximal_mu >= 0,
            "server-lr": self.server_lr >= 0,
            "server-momentum": 0 <= self.server_momentum < 1,
            "server-ema": 0 <= self.server_ema < 1,
            "central-eval-split": self.central_eval_split in ("train", "validation", "test"),
            "lr-schedule": self.lr_schedule in ("cosine", "constant"),
            "server-lr-schedule": self.server_lr_schedule == "constant"
            or (self.server_lr_schedule == "cosine" and self.strategy in ADAPTIVE_STRATEGIES),
            "site-optimiser": self.site_optimiser in SITE_OPTIMISERS,
            "site-momentum": 0 <= self.site_momentum < 1,
            "sam-radius": self.sam_radius >= 0,
            "select-round": self.select_round in ROUND_SELECTIONS,
            "site-sampling": self.site_sampling in SITE_SAMPLINGS,
            "gradient-weighting": not self.gradient_weighting or self.site_optimiser == "adamw",
            "keep-site-moments": not self.keep_site_moments or self.site_optimiser == "adamw",
            "update-memory": self.update_memory >= 0,
            "update-memory-rule": self.update_memory_rule in UPDATE_MEMORY_RULES,
        }
        bad = [key for key, ok in checks.items() if not ok]
        if bad:
            values = {key: self.to_run_config()[key] for key in bad}
            raise ValueError(f"bad federation settings: {values}")
        if not self.domain_list:
            raise ValueError("domains must name at least one domain")

    @classmethod
    def from_run_config(cls, run_config: dict) -> FederationSettings:
        """Settings from a run config; missing keys keep their defaults.

        Raises:
            ValueError: A key that is not a setting, or a value of the wrong type.
        """
        known = {spec.name.replace("_", "-"): spec for spec in fields(cls)}
        values = {}
        for key, value in run_config.items():
            if key not in known:
                continue  # Flower adds its own keys to a message's config
            spec = known[key]
            default = getattr(cls, spec.name)
            values[spec.name] = _coerce(key, value, type(default))
        return cls(**values)

    def to_run_config(self) -> dict:
        """The settings as hyphenated run-config keys."""
        return {key.replace("_", "-"): value for key, value in asdict(self).items()}

    def with_updates(self, **changes) -> FederationSettings:
        """A copy with some fields changed (checked again)."""
        return type(self)(**{**asdict(self), **changes})

    def site_epochs(self, n_train: int) -> int:
        """Epochs a site with ``n_train`` training samples runs in a round (see ``local_steps``)."""
        steps_per_epoch = max(math.ceil(n_train / self.batch_size), 1)
        return max(self.local_epochs, math.ceil(self.local_steps / steps_per_epoch))

    def evaluates(self, server_round: int) -> bool:
        """Whether round ``server_round`` is scored (see ``evaluate_every``)."""
        return server_round % self.evaluate_every == 0 or server_round == self.num_rounds

    def site_lr(self, server_round: int) -> float:
        """The sites' learning rate in round ``server_round`` (1-based)."""
        return self.lr * self._decay(self.lr_schedule, server_round)

    def server_lr_at(self, server_round: int) -> float:
        """FedAdam's or FedYogi's ``eta`` in round ``server_round`` (see ``server_lr_schedule``)."""
        return self.server_step * self._decay(self.server_lr_schedule, server_round)

    def _decay(self, schedule: str, server_round: int) -> float:
        if schedule == "constant":
            return 1.0
        done = min(max(server_round - 1, 0), self.num_rounds) / self.num_rounds
        return 0.5 * (1 + math.cos(math.pi * done))

    @property
    def server_step(self) -> float:
        """The server learning rate this run uses (see ``server_lr``)."""
        return self.server_lr or DEFAULT_SERVER_LR.get(self.strategy, 1.0)

    @property
    def domain_list(self) -> list[str]:
        """Domains as a list, in head order."""
        return list(comma_list(self.domains))

    @property
    def local_layer_kinds(self) -> tuple[str, ...]:
        """Kinds of layers each site keeps to itself (see ``local_layers``)."""
        text = DEFAULT_LOCAL_LAYERS.get(self.strategy, "")
        text = text if self.local_layers == "default" else self.local_layers
        return tuple(sorted(set(comma_list(text))))


def comma_list(text: str) -> tuple[str, ...]:
    """The names in a comma-separated setting, in order, without blanks."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _coerce(key: str, value, kind: type):
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"run-config key {key!r} must be true or false, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"run-config key {key!r} must be {kind.__name__}, got {value!r}") from None
