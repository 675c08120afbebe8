"""Predicting risk per district, window and domain into ``predictions.parquet``."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from datasets import City
from domains import get_domain
from fedcore.model import MODALITIES, RiskNet
from fedcore.site_data import SiteData
from fedcore.training import predict


def prediction_frame(
    model: RiskNet, city: City, data: SiteData, indices: np.ndarray
) -> gpd.GeoDataFrame:
    """One row per (district, window, domain) of ``indices``, with level and why.

    Columns: ``district_id``, ``name``, ``window_start``, ``domain``,
    ``probability``, ``expected_count``, ``level``, ``contribution_<modality>``
    (probability lost when that modality is hidden) and ``geometry``.
    """
    predicted = predict(model, data, indices, contributions=True)
    samples = data.samples
    districts = city.districts.iloc[samples.district[indices]].reset_index(drop=True)
    frames = []
    for column, domain in enumerate(model.config.domains):
        probability = predicted["probability"][:, column]
        frame = pd.DataFrame(
            {
                "district_id": districts["district_id"].to_numpy(),
                "name": districts["name"].to_numpy(),
                "window_start": samples.starts[samples.window[indices]],
                "domain": domain,
                "probability": probability.astype(float),
                "expected_count": predicted["expected_count"][:, column].astype(float),
                "level": get_domain(domain).level_names(probability),
            }
        )
        for name in MODALITIES:
            frame[f"contribution_{name}"] = predicted[f"contribution_{name}"][:, column]
        frame["observed_events"] = samples.targets[indices, column]
        frame["geometry"] = districts.geometry.to_numpy()
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table["level"] = table["level"].astype(str)
    return gpd.GeoDataFrame(table, geometry="geometry", crs="EPSG:4326")


def write_predictions(frame: gpd.GeoDataFrame, run_dir: Path) -> Path:
    """Write predictions as GeoParquet into the run folder."""
    path = Path(run_dir) / "predictions.parquet"
    frame.to_parquet(path)
    return path
