"""The data layer: City bundles, the synthetic city, the district graph, samples."""

from datasets.city import City, read_districts_file
from datasets.errors import (
    CityDataError,
    CityNotFoundError,
    DistrictsFileError,
    RecordsFileError,
    SensorsFileError,
)
from datasets.graph import build_district_graph
from datasets.samples import (
    SAMPLE_KEYS,
    RiskSamples,
    collate_samples,
    static_features,
    temporal_split,
    window_starts,
)
from datasets.synthetic import make_city

__all__ = [
    "SAMPLE_KEYS",
    "City",
    "CityDataError",
    "CityNotFoundError",
    "DistrictsFileError",
    "RecordsFileError",
    "RiskSamples",
    "SensorsFileError",
    "build_district_graph",
    "collate_samples",
    "make_city",
    "read_districts_file",
    "static_features",
    "temporal_split",
    "window_starts",
]
