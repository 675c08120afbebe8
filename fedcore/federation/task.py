"""The seam both sides of the federation share: site data, model, weights.

A site loads only its own districts' samples (the public graph is shared), once
per process, so every round after the first starts training at once.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from flwr.app import ArrayRecord

from fedcore.federation.settings import FederationSettings
from fedcore.federation.sites import read_site_plan
from fedcore.model import ModelConfig, RiskNet, build_model
from fedcore.site_data import DataSettings, SiteData, load_city_cached, prepare_site_data


def data_settings(settings: FederationSettings) -> DataSettings:
    """How samples are cut, from the federation settings."""
    return DataSettings(
        domains=tuple(settings.domain_list),
        stride_hours=settings.stride_hours,
        lookback_hours=settings.lookback_hours,
    )


@lru_cache(maxsize=8)
def load_site(city_dir: str, sites_file: str, site_index: int, data: DataSettings) -> SiteData:
    """Samples of one site's districts, cached per process."""
    city = load_city_cached(city_dir)
    plan = read_site_plan(sites_file)
    if not 0 <= site_index < len(plan):
        raise IndexError(f"site {site_index} is not in the plan ({len(plan)} sites)")
    row_of = {district: row for row, district in enumerate(city.district_ids)}
    rows = np.array([row_of[district] for district in plan[site_index]["districts"]])
    return prepare_site_data(city, data, rows)


@lru_cache(maxsize=4)
def load_all_districts(city_dir: str, data: DataSettings) -> SiteData:
    """Samples of every district: the pooled data of centralised training and evaluation."""
    return prepare_site_data(load_city_cached(city_dir), data)


def model_config_for(settings: FederationSettings, data: SiteData) -> ModelConfig:
    """The model config a federation's sites and server build from."""
    samples = data.samples
    return ModelConfig.preset_config(
        settings.preset,
        domains=settings.domain_list,
        n_channels=len(samples.channels),
        n_static=data.n_static,
        text_dim=samples.text_dim,
        neighbour_dim=samples.neighbour_dim,
        frame_size=int(samples.frames.shape[1]),
    )


def model_from_arrays(config: ModelConfig, arrays: ArrayRecord) -> RiskNet:
    """A model of ``config`` holding the weights in ``arrays``."""
    model = build_model(config)
    model.load_state_dict(arrays.to_torch_state_dict())
    return model


def arrays_of(model: torch.nn.Module) -> ArrayRecord:
    """The model's weights as a Flower ArrayRecord."""
    return ArrayRecord(model.state_dict())
