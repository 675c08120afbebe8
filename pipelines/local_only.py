"""The local-only baseline of the federation benchmark: every site trains alone on its own data.

Each site builds the model from the same seed, trains on its own training
windows for as many epochs as it would run over all rounds of the federation
(same learning rate and batch size as its federated runs), and predicts its own
test windows; all sites' predictions are scored together. Sites share nothing,
so they train in parallel worker processes, one per core, each single-threaded
as a site is in the simulation; results come back in site order, so the score
does not depend on the number of cores.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from fedcore.federation.settings import FederationSettings
from fedcore.federation.task import data_settings, load_partition_site
from fedcore.metrics import risk_metrics
from fedcore.model import ModelConfig, build_model
from fedcore.training import predict, train_epochs


@dataclass(frozen=True)
class LocalSiteJob:
    """One site's local-only training: its folders, its number and how it trains."""

    site_dir: str
    public_dir: str
    number: int
    model_config: str
    settings: FederationSettings


def train_site_alone(job: LocalSiteJob) -> tuple[np.ndarray, np.ndarray]:
    """Train one site on its own data; its test probabilities ``(n, D)`` and event counts."""
    torch.set_num_threads(1)
    settings = job.settings
    _, data = load_partition_site(job.site_dir, job.public_dir, data_settings(settings))
    config = ModelConfig.from_json(job.model_config)
    torch.manual_seed(settings.seed)
    model = build_model(config)
    train = data.split["train"]
    if len(train):
        train_epochs(
            model,
            data,
            train,
            epochs=local_epochs(settings, len(train)),
            lr=settings.lr,
            batch_size=settings.batch_size,
            seed=settings.seed * 1000 + job.number,
        )
    test = data.split["test"]
    n_domains = len(config.domains)
    if not len(test):
        return np.zeros((0, n_domains), np.float32), np.zeros((0, n_domains), np.float32)
    return predict(model, data, test)["probability"], data.samples.targets[test]


def local_epochs(settings: FederationSettings, n_train: int) -> int:
    """Epochs a site trains alone: as many as it trains, on average, over the federation.

    A site trains ``site_epochs`` in each round it is sampled for, a share
    ``fraction-train`` of the rounds.
    """
    rounds = max(round(settings.num_rounds * settings.fraction_train), 1)
    return rounds * settings.site_epochs(n_train)


def local_site_jobs(
    config: ModelConfig, settings: FederationSettings, n_sites: int
) -> list[LocalSiteJob]:
    """The first ``n_sites`` sites of the partitions folder, in site order."""
    partitions = Path(settings.partitions_dir)
    site_ids = sorted(path.name for path in (partitions / "sites").iterdir())[:n_sites]
    return [
        LocalSiteJob(
            str(partitions / "sites" / site_id),
            str(partitions / "public"),
            number,
            config.to_json(),
            settings,
        )
        for number, site_id in enumerate(site_ids)
    ]


def run_local_only(
    config: ModelConfig, settings: FederationSettings, n_sites: int, cores: int = 1
) -> dict:
    """Every site trains alone (``cores`` at a time); their test predictions scored together."""
    began = time.perf_counter()
    jobs = local_site_jobs(config, settings, n_sites)
    if cores <= 1 or len(jobs) <= 1:
        results = [train_site_alone(job) for job in jobs]
    else:
        # spawn: fresh interpreters, no torch thread pools inherited through fork
        with ProcessPoolExecutor(min(cores, len(jobs)), mp_context=get_context("spawn")) as pool:
            results = list(pool.map(train_site_alone, jobs))
    probabilities = np.concatenate([result[0] for result in results])
    counts = np.concatenate([result[1] for result in results])
    scores = risk_metrics(counts, probabilities, config.domains)
    return {
        "method": "local-only",
        "test": {key: value for key, value in scores.items() if math.isfinite(value)},
        "rounds": settings.num_rounds,  # each site: as many epochs as in the federation
        "wall_s": time.perf_counter() - began,
        "sites_with_test": int(sum(len(result[0]) > 0 for result in results)),
    }
