"""Benchmark: partition a 400-district, 60-day city into 300 skewed sites and write them.

The target is partition + write in 30 s or less on a 2-core machine, for Dir(0.1)
label skew, 30% of sites without cameras, 10% scarce and 10% coarse::

    python -m pipelines.bench_partition [--city /tmp/city-400x60] [--json out.json]

``--city`` caches the generated city (it takes ~40 s to draw): it is loaded when
the folder exists and saved there otherwise. Prints a table and writes JSON with
the seconds of each stage, the size written and the peak resident memory.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from datasets import City, make_city
from datasets.partition import PartitionSpec, partition_city
from datasets.partition_io import write_federation
from pipelines.bench_report import report_benchmark
from pipelines.defaults import BENCH_DAYS, BENCH_DISTRICTS

BENCH_SPEC = PartitionSpec(
    n_sites=300,
    dirichlet_alpha=0.1,
    share_without_cameras=0.3,
    share_scarce=0.1,
    share_coarse=0.1,
    seed=0,
)
CITY_SIZE = {"n_districts": BENCH_DISTRICTS, "days": BENCH_DAYS, "seed": 0}
TARGET_SECONDS = 30.0


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder``."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def get_city(cache: Path | None) -> tuple[City, str, float]:
    """The benchmark city, how it was obtained, and the seconds that took."""
    began = time.perf_counter()
    if cache is not None and cache.exists():
        return City.load(cache), f"loaded {cache}", time.perf_counter() - began
    city = make_city(**CITY_SIZE)
    if cache is not None:
        city.save(cache)
    return city, "generated", time.perf_counter() - began


def run_benchmark(city: City, spec: PartitionSpec, out_dir: Path) -> dict:
    """Time partitioning and writing ``city`` under ``spec`` into ``out_dir``."""
    began = time.perf_counter()
    federation = partition_city(city, spec)
    partitioned = time.perf_counter()
    write_federation(federation, city, out_dir)
    written = time.perf_counter()
    return {
        "partition_s": partitioned - began,
        "write_s": written - partitioned,
        "total_s": written - began,
        "sites": len(federation.sites),
        "scarce_sites": sum(site.scarce for site in federation.sites),
        "coarse_sites": sum(site.coarse for site in federation.sites),
        "sites_without_cameras": sum(site.no_cameras for site in federation.sites),
        "written_mib": folder_bytes(out_dir) / 2**20,
    }


def main(
    city: Annotated[
        Path | None, typer.Option(help="City folder cache: loaded if present, else saved.")
    ] = None,
    json_path: Annotated[Path, typer.Option("--json", help="Where to write the result.")] = Path(
        "runs/bench/partition.json"
    ),
    keep: Annotated[Path | None, typer.Option(help="Keep the federation in this folder.")] = None,
) -> None:
    """Build (or load) the benchmark city, then time partition + write."""
    loaded, origin, city_seconds = get_city(city)
    scratch = Path(tempfile.mkdtemp(prefix="kizashi-bench-"))
    try:
        result = run_benchmark(loaded, BENCH_SPEC, keep or scratch / "federation")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.update(
        {
            "city": loaded.name,
            "city_origin": origin,
            "city_s": city_seconds,
            "districts": len(loaded.districts),
            "time_steps": int(loaded.sensors.sizes["time"]),
            "frames": len(loaded.frames),
            "peak_rss_mib": peak_memory_mib(),
            "target_s": TARGET_SECONDS,
            "within_target": result["total_s"] <= TARGET_SECONDS,
        }
    )
    report_benchmark(
        "Partition benchmark",
        result,
        json_path,
        caption="300 sites, Dir(0.1), 30% without cameras, 10% scarce, 10% coarse",
    )


if __name__ == "__main__":
    typer.run(main)
