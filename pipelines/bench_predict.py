"""Benchmark: predicting 1,000 districts x 24 windows with the `small` preset on CPU.

Run ``python -m pipelines.bench_predict``. It draws a 1,000-district city, cuts 24
hourly windows, and times separately the sample preparation (sensor windows,
frames, report embeddings with MiniLM) and the prediction itself (RiskNet
forward passes, with and without per-modality contributions). Prints a table and
writes JSON under ``runs/bench/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import typer

from datasets import make_city
from fedcore.model import build_model
from fedcore.site_data import DataSettings, prepare_site_data
from fedcore.training import predict
from pipelines.bench_report import report_benchmark
from pipelines.train import model_config


def bench_predict(n_districts: int = 1000, n_windows: int = 24, preset: str = "small") -> dict:
    """Seconds to prepare and to predict ``n_districts x n_windows`` samples."""
    city = make_city(n_districts=n_districts, days=3, seed=0)
    settings = DataSettings(stride_hours=1)
    started = time.perf_counter()
    data = prepare_site_data(city, settings)
    prepared = time.perf_counter()
    keep = data.samples.window < n_windows
    indices = keep.nonzero()[0]
    torch.manual_seed(0)
    model = build_model(model_config(preset, data, list(settings.domains))).eval()
    predict(model, data, indices[:512])  # warm-up
    begin = time.perf_counter()
    predict(model, data, indices)
    plain = time.perf_counter() - begin
    begin = time.perf_counter()
    predict(model, data, indices, contributions=True)
    explained = time.perf_counter() - begin
    return {
        "preset": preset,
        "samples": int(len(indices)),
        "threads": torch.get_num_threads(),
        "prepare_seconds": round(prepared - started, 2),
        "predict_seconds": round(plain, 2),
        "predict_with_contributions_seconds": round(explained, 2),
    }


def main(out: Path = Path("runs/bench/predict.json")) -> None:
    """Print and save the benchmark."""
    result = bench_predict()
    report_benchmark("Prediction: 1,000 districts x 24 windows", result, out)


if __name__ == "__main__":
    typer.run(main)
