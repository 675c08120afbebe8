"""Where a job's city comes from: an existing City folder, or a synthetic draw."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets import City, read_districts_file
from datasets.oracle import Oracle
from datasets.synthetic import make_city_and_oracle
from pipelines.defaults import DEFAULT_DAYS, DEFAULT_DISTRICTS


@dataclass(frozen=True)
class CitySource:
    """A City folder to load, or the parameters of a synthetic city.

    Attributes:
        city_dir: An existing City folder; when set, the rest is ignored.
        districts_file: Real district polygons to draw a synthetic city on.
        n_districts: Districts of the synthetic city.
        days: Days of the synthetic record.
        seed: Seed of the synthetic city.
    """

    city_dir: Path | None = None
    districts_file: Path | None = None
    n_districts: int = DEFAULT_DISTRICTS
    days: int = DEFAULT_DAYS
    seed: int = 0


def obtain_city(source: CitySource) -> tuple[City, Oracle | None]:
    """Load the City folder, or draw the synthetic city (with its oracle)."""
    if source.city_dir is not None:
        city_dir = Path(source.city_dir)
        oracle = Oracle.load(city_dir) if (city_dir / "oracle.npz").exists() else None
        return City.load(city_dir), oracle
    districts = None
    if source.districts_file is not None:
        districts = read_districts_file(source.districts_file)
    return make_city_and_oracle(
        n_districts=source.n_districts, days=source.days, seed=source.seed, districts=districts
    )


def save_city_into_run(city: City, oracle: Oracle | None, run_dir: Path) -> Path:
    """Keep the city a run used inside the run folder (with its oracle, if synthetic)."""
    city_dir = city.save(Path(run_dir) / "city")
    if oracle is not None:
        oracle.save(city_dir)
    return city_dir
