"""Running a federation in Flower's simulation engine: many virtual sites on one machine."""

from __future__ import annotations

import logging
import os

from flwr.clientapp import ClientApp
from flwr.simulation import run_simulation

from fedcore.federation.client_app import app as default_client_app
from fedcore.federation.server_app import Progress, make_server_app
from fedcore.federation.settings import FederationSettings
from fedcore.federation.simulation_polling import use_one_pass_polling


def simulate_federation(
    settings: FederationSettings | list[FederationSettings],
    n_sites: int,
    cores: int | None = None,
    progress: Progress | None = None,
    client_app: ClientApp | None = None,
) -> None:
    """Run the federation over ``n_sites`` virtual sites (Ray backend, one CPU per site task).

    Site ``k`` is the node with ``partition-id`` ``k``; results land in
    ``settings.run_dir``. A list of settings runs those federations one after
    another in the same simulation. ``client_app`` replaces the sites' app
    (tests inject faults).
    """
    cores = cores or os.cpu_count() or 1
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    use_one_pass_polling()
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": cores,
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        },
    }
    run_simulation(
        server_app=make_server_app(settings, progress),
        client_app=client_app or default_client_app,
        num_supernodes=n_sites,
        backend_config=backend_config,
    )
