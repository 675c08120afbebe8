"""The seam both sides of the federation share: site data, model, weights.

A site reads only its own partition folder (plus the public layer every site
has), once per process, so every round after the first starts training at once.
The server builds the model from the public layer alone: it needs no private data.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from datasets import City, static_features
from datasets.partition import SiteInfo
from datasets.partition_io import load_site, read_federation
from fedcore.federation.layers import MODALITY_ENCODERS
from fedcore.federation.settings import FederationSettings
from fedcore.model import ModelConfig, RiskNet, build_model
from fedcore.model.text_embedding import TEXT_DIM
from fedcore.site_data import DataSettings, SiteData, load_city_cached, prepare_site_data

DEFAULT_FRAME_SIZE = 16


def data_settings(settings: FederationSettings) -> DataSettings:
    """How samples are cut, from the federation settings."""
    return DataSettings(
        domains=tuple(settings.domain_list),
        stride_hours=settings.stride_hours,
        lookback_hours=settings.lookback_hours,
    )


@lru_cache(maxsize=8)
def partition_site_ids(partitions_dir: str) -> tuple[str, ...]:
    """Site ids of a federation folder, in ``partition-id`` order."""
    return tuple(site.site_id for site in read_federation(partitions_dir).sites)


def site_folders(node_config: dict, partitions_dir: str) -> tuple[Path, Path]:
    """The site folder and public folder a node reads.

    A deployed SuperNode names its folder with ``site-dir`` (and the public layer
    with ``public-dir``, by default ``<site-dir>/../../public``); a simulated node
    is site ``partition-id`` of ``partitions_dir``.

    Raises:
        ValueError: The node config names neither, or the partition is out of range.
    """
    if "site-dir" in node_config:
        site_dir = Path(str(node_config["site-dir"]))
        public = node_config.get("public-dir") or site_dir.parent.parent / "public"
        return site_dir, Path(str(public))
    if "partition-id" not in node_config:
        raise ValueError("the node config needs 'site-dir' or 'partition-id'")
    index = int(node_config["partition-id"])
    ids = partition_site_ids(str(partitions_dir))
    if not 0 <= index < len(ids):
        raise ValueError(
            f"partition-id {index} is not a site of {partitions_dir} ({len(ids)} sites)"
        )
    root = Path(partitions_dir)
    return root / "sites" / ids[index], root / "public"


def site_threads(node_config: dict) -> int:
    """Torch threads a site trains with: its node config's ``threads``, else 1.

    A simulation packs one site per core, so one thread each; a deployed site
    owns its machine and says how many of its cores the federation may use.

    Raises:
        ValueError: ``threads`` is not a whole number of at least 1.
    """
    value = node_config.get("threads", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"the node config's threads must be a whole number >= 1, got {value!r}")
    return value


def site_number(site_id: str) -> int:
    """The number in ``site-007`` (metrics carry numbers only); -1 if it has none."""
    found = re.search(r"(\d+)$", site_id)
    return int(found.group(1)) if found else -1


@cache
def load_partition_site(
    site_dir: str, public_dir: str, data: DataSettings, unlabelled: tuple[str, ...] = ()
) -> tuple[str, SiteData]:
    """One site's samples from its own folder (`site_samples`), cached per process.

    Returns:
        The site id and its data.
    """
    city, info = load_site(site_dir, load_city_cached(str(public_dir)))
    return info.site_id, site_samples(city, info, data, unlabelled)


def site_samples(
    city: City, info: SiteInfo, data: DataSettings, unlabelled: tuple[str, ...] = ()
) -> SiteData:
    """A site's samples from its view of the city (`datasets.partition_io.load_site`).

    Only windows the site holds data and labels for (`SiteInfo.window_mask`)
    enter its split; ``unlabelled`` domains get no labels at this site (their
    target mask is off), as at a partner that does not record them.

    Raises:
        ValueError: ``unlabelled`` names a domain the run does not predict.
    """
    unknown = set(unlabelled) - set(data.domains)
    if unknown:
        raise ValueError(f"unlabelled-domains names unknown domains {sorted(unknown)}")
    site = prepare_site_data(city, data, info.rows(city))
    held = info.window_mask(site.samples.starts, data.horizon_hours)
    site.split = {
        name: indices[held[site.samples.window[indices]]] for name, indices in site.split.items()
    }
    for column, name in enumerate(data.domains):
        if name in unlabelled:
            site.samples.target_mask[:, column] = False
    return site


def model_config_from_public(settings: FederationSettings, public: City) -> ModelConfig:
    """The model config every site and the server build from, sized by the public layer."""
    frames = public.frames
    frame_size = int(frames.shape[1]) if frames.ndim == 4 else DEFAULT_FRAME_SIZE
    return ModelConfig.preset_config(
        settings.preset,
        domains=settings.domain_list,
        n_channels=len(public.sensors.data_vars),
        n_static=int(static_features(public).shape[1]),
        text_dim=TEXT_DIM,
        frame_size=frame_size,
    )


def load_pooled_data(city_dir: str, data: DataSettings) -> SiteData:
    """Samples of every district of a City folder: pooled data for central evaluation."""
    return _pooled(str(city_dir), data)


@lru_cache(maxsize=4)
def _pooled(city_dir: str, data: DataSettings) -> SiteData:
    return prepare_site_data(load_city_cached(city_dir), data)


def labelled_counts(data: SiteData, indices: np.ndarray) -> list[int]:
    """Samples with a label per domain among ``indices`` (for partial-label aggregation)."""
    return [int(count) for count in data.samples.target_mask[indices].sum(axis=0)]


def modality_counts(data: SiteData, indices: np.ndarray) -> list[int]:
    """Samples among ``indices`` with each modality of `MODALITY_ENCODERS` present.

    Present as RiskNet sees it: a frame (``image``), any report (``text``).
    """
    samples = data.samples
    present = {
        "image": samples.frame_index[indices] >= 0,
        "text": (samples.report_index[indices] >= 0).any(axis=1),
    }
    return [int(present[name].sum()) for name in MODALITY_ENCODERS]


def model_from_arrays(config: ModelConfig, arrays: ArrayRecord) -> RiskNet:
    """A model of ``config`` holding the weights in ``arrays``."""
    model = build_model(config)
    model.load_state_dict(arrays.to_torch_state_dict())
    return model


def arrays_from_numpy(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    """Numpy arrays by state-dict key (a checkpoint's model) as a Flower ArrayRecord."""
    return ArrayRecord({key: Array(value) for key, value in arrays.items()})


def arrays_of(model: torch.nn.Module) -> ArrayRecord:
    """The model's weights as a Flower ArrayRecord."""
    return ArrayRecord(model.state_dict())
