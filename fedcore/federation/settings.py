"""Every knob of a federated run, read from Flower's run config (hyphenated keys).

The server reads the run config and forwards what sites need in each message's
ConfigRecord, so a site needs nothing but its own data and its node config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class FederationSettings:
    """A federated run's configuration; field ``a_b`` is run-config key ``a-b``.

    Attributes:
        city_dir: The City folder sites read their districts' data from.
        sites_file: JSON listing each site's district ids (see `sites.py`).
        run_dir: Where the server writes the model, checkpoints and metrics.
        preset: RiskNet preset name.
        num_rounds: Federated rounds.
        local_epochs: Epochs each site trains per round.
        lr: Site learning rate (AdamW).
        batch_size: Site batch size.
        fraction_train: Share of sites asked to train each round.
        min_train_sites: Fewest sites a training round needs.
        stride_hours: Hours between window starts.
        lookback_hours: Context before each window.
        domains: Comma-separated domain names.
        central_eval: Whether the server scores the global model on the hold-out.
        seed: Seed of model initialisation and site shuffling.
    """

    city_dir: str = "runs/city"
    sites_file: str = "runs/sites.json"
    run_dir: str = "runs/federation"
    preset: str = "small"
    num_rounds: int = 3
    local_epochs: int = 1
    lr: float = 3e-3
    batch_size: int = 64
    fraction_train: float = 1.0
    min_train_sites: int = 2
    stride_hours: int = 6
    lookback_hours: int = 24
    domains: str = "traffic,safety,crowd,disaster"
    central_eval: bool = True
    seed: int = 0

    @classmethod
    def from_run_config(cls, run_config: dict) -> FederationSettings:
        """Settings from a run config; missing keys keep their defaults."""
        values = {}
        for spec in fields(cls):
            key = spec.name.replace("_", "-")
            if key in run_config:
                default = getattr(cls, spec.name)
                values[spec.name] = type(default)(run_config[key])
        return cls(**values)

    def to_run_config(self) -> dict:
        """The settings as hyphenated run-config keys."""
        return {key.replace("_", "-"): value for key, value in asdict(self).items()}

    @property
    def domain_list(self) -> list[str]:
        """Domains as a list, in head order."""
        return [name.strip() for name in self.domains.split(",") if name.strip()]
