"""Benchmark: build and save the 400-district, 60-day synthetic city.

Run ``python -m pipelines.bench_city [--out runs/bench/city.json]``. It prints a table
(build seconds, save seconds, peak memory, sizes) and writes the same as JSON.
The issue's bound: build + save within 60 s and 4 GB on a 2-core machine.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from datasets.synthetic import make_city_and_oracle
from pipelines.bench_report import report_benchmark
from pipelines.defaults import BENCH_DAYS, BENCH_DISTRICTS


def bench_city(n_districts: int = BENCH_DISTRICTS, days: int = BENCH_DAYS, seed: int = 0) -> dict:
    """Time building and saving one synthetic city; peak memory of this process."""
    started = time.perf_counter()
    city, oracle = make_city_and_oracle(n_districts=n_districts, days=days, seed=seed)
    built = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        oracle.save(city.save(Path(folder) / "city"))
        saved = time.perf_counter()
        size = sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())
    return {
        "n_districts": n_districts,
        "days": days,
        "build_seconds": round(built - started, 2),
        "save_seconds": round(saved - built, 2),
        "total_seconds": round(saved - started, 2),
        "peak_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
        "disk_mb": round(size / 1e6, 1),
        "sensor_steps": int(city.sensors.sizes["time"]),
        "frames": len(city.frames),
        "reports": len(city.reports),
        "events": len(city.events),
    }


def main(
    districts: int = BENCH_DISTRICTS,
    days: int = BENCH_DAYS,
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("runs/bench/city.json"),
) -> None:
    """Print and save the benchmark."""
    result = bench_city(districts, days)
    report_benchmark("Synthetic city: build and save", result, out)


if __name__ == "__main__":
    typer.run(main)
