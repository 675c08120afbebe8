"""The side-by-side evaluation: fused RiskNet against every rival, on one split.

One job trains, on the same temporal split and for several seeds, the fused model,
the same model with one modality only (x4), the model without message passing on
the graph, and gradient boosting on hand-made features; it scores each on the
test windows (macro AUPRC headline, AUROC, Brier, count MAE), as a fraction of the
oracle ceiling when the city is synthetic, and scores the fused model again with
each modality removed at test time.

Seeds are independent, so they run in parallel worker processes (``jobs``), each
single-threaded: on this 2-core machine a seed of the small preset took 12 min on
one torch thread (about 19 min on two, in an earlier run), and two jobs with two
threads each thrash. Results do not depend on ``jobs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from datasets import City
from datasets.oracle import Oracle
from fedcore.model import MODALITIES
from fedcore.site_data import SiteData
from fedcore.training import evaluate
from pipelines.train import TrainOptions, model_config, train_centralised

VARIANTS: dict[str, dict] = {
    "fused": {},
    "image only": {"modalities": ["image"]},
    "text only": {"modalities": ["text"]},
    "sensor only": {"modalities": ["sensor"]},
    "graph only": {"modalities": ["graph"]},
    "fused, no graph": {"graph_layers": 0},
}
GBM = "gradient boosting"


def oracle_scores(city: City, oracle: Oracle, data: SiteData, domains: list[str]) -> dict:
    """The hidden rates scored on exactly the test samples the models are scored on."""
    from domains import get_domain
    from fedcore.metrics import risk_metrics

    test = data.split["test"]
    samples = data.samples
    columns = []
    for name in domains:
        horizon = get_domain(name).horizon_hours
        probability = oracle.event_probability(name, samples.starts, horizon)
        row_of = {district: row for row, district in enumerate(oracle.district_ids)}
        rows = np.array([row_of[city.district_ids[d]] for d in samples.district[test]])
        columns.append(probability[rows, samples.window[test]])
    return risk_metrics(samples.targets[test], np.stack(columns, axis=1), domains)


@dataclass(frozen=True)
class SeedJob:
    """Everything one seed of the evaluation needs (sent whole to a worker process)."""

    city: City
    data: SiteData
    domains: list[str]
    preset: str
    train: TrainOptions
    seed: int


def evaluate_seed(job: SeedJob) -> list[dict]:
    """Train and score every variant (and gradient boosting) for one seed, single-threaded."""
    from fedcore.baselines import score_gbm_baseline

    torch.set_num_threads(1)
    data, test = job.data, job.data.split["test"]
    options = TrainOptions(**{**job.train.__dict__, "seed": job.seed})
    runs: list[dict] = []
    for variant, overrides in VARIANTS.items():
        model, history = train_centralised(
            model_config(job.preset, data, job.domains, **overrides), data, options
        )
        scores = evaluate(model, data, test)
        runs.append({"variant": variant, "seed": job.seed, "epochs": len(history), **scores})
        if variant == "fused":
            for position, name in enumerate(MODALITIES):
                drop = torch.zeros(len(MODALITIES), dtype=torch.bool)
                drop[position] = True
                removed = evaluate(model, data, test, drop=drop)
                runs.append(
                    {"variant": f"fused, {name} removed at test", "seed": job.seed, **removed}
                )
    # One thread: OpenMP boosting on a busy 2-core machine slows down 40x otherwise.
    with threadpool_limits(limits=1):
        scores = score_gbm_baseline(data, job.city, seed=job.seed)
    runs.append({"variant": GBM, "seed": job.seed, **scores})
    return runs


def run_evaluation(
    city: City,
    oracle: Oracle | None,
    data: SiteData,
    domains: list[str],
    preset: str,
    train: TrainOptions,
    seeds: list[int],
    progress: Callable[[str], None] = print,
    jobs: int = 1,
) -> dict:
    """Train and score every variant for every seed (``jobs`` seeds at a time); the summary."""
    seed_jobs = [SeedJob(city, data, domains, preset, train, seed) for seed in seeds]
    by_seed: dict[int, list[dict]] = {}
    if jobs <= 1 or len(seed_jobs) <= 1:
        for job in seed_jobs:
            progress(f"seed {job.seed}: training {len(VARIANTS)} variants and boosting")
            by_seed[job.seed] = evaluate_seed(job)
    else:
        progress(f"seeds {seeds}: {min(jobs, len(seed_jobs))} at a time")
        # spawn: fresh interpreters, no torch thread pools inherited through fork
        context = get_context("spawn")
        with ProcessPoolExecutor(min(jobs, len(seed_jobs)), mp_context=context) as pool:
            futures = {pool.submit(evaluate_seed, job): job.seed for job in seed_jobs}
            for future in as_completed(futures):
                by_seed[futures[future]] = future.result()
                progress(f"seed {futures[future]}: done ({len(by_seed)}/{len(seeds)})")
    runs = [run for seed in seeds for run in by_seed[seed]]
    ceiling = oracle_scores(city, oracle, data, domains) if oracle is not None else None
    return {"runs": runs, "oracle": ceiling, "summary": summarise(runs, ceiling, domains)}


def summarise(runs: list[dict], ceiling: dict | None, domains: list[str]) -> list[dict]:
    """Mean and std over seeds per variant, with the fraction of the oracle ceiling."""
    keys = ["auprc-macro", "auroc-macro", "count-mae"] + [f"auprc-{name}" for name in domains]
    rows = []
    for variant in dict.fromkeys(run["variant"] for run in runs):
        mine = [run for run in runs if run["variant"] == variant]
        row: dict = {"variant": variant, "seeds": len(mine)}
        for key in keys:
            values = [run[key] for run in mine if key in run and math.isfinite(run[key])]
            row[key] = float(np.mean(values)) if values else float("nan")
            row[f"{key}-std"] = float(np.std(values)) if values else float("nan")
        briers = [np.mean([run[k] for k in run if k.startswith("brier-")]) for run in mine]
        row["brier-mean"] = float(np.mean(briers)) if briers else float("nan")
        if ceiling and math.isfinite(ceiling.get("auprc-macro", float("nan"))):
            row["fraction-of-oracle"] = row["auprc-macro"] / ceiling["auprc-macro"]
        rows.append(row)
    return rows
