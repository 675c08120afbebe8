"""The hold-out as sites see it: with the neighbour exchange, it is the pooled data's."""

import numpy as np
import pytest
import torch

from datasets import City
from datasets.partition_io import PrivateDataSlicer, read_federation
from fedcore.federation.neighbour_exchange import exchange_in_process
from fedcore.federation.settings import FederationSettings
from fedcore.federation.task import (
    data_settings,
    load_partition_site,
    model_config_from_public,
)
from fedcore.model import build_model
from fedcore.site_data import prepare_site_data
from fedcore.training import evaluate
from pipelines.site_pool import site_view_scores
from tests.federation_helpers import tiny_partitions, tiny_settings

__all__ = ["tiny_partitions"]


def test_site_view_with_exchanged_neighbours_scores_as_the_pooled_data(
    tiny_partitions, tiny_city, tiny_city_dir, tmp_path
):
    settings = tiny_settings(tiny_partitions, tiny_city_dir, tmp_path)
    data = data_settings(settings)
    federation = read_federation(tiny_partitions)
    site_dirs = [tiny_partitions / "sites" / site.site_id for site in federation.sites]
    alone = [
        load_partition_site(str(path), str(tiny_partitions / "public"), data)[1]
        for path in site_dirs
    ]
    sites = exchange_in_process(alone, federation.sites)
    pooled = prepare_site_data(PrivateDataSlicer(tiny_city).held_city(federation.sites), data)
    n_windows = len(pooled.samples.starts)
    held = np.concatenate(
        [site.samples.district * n_windows + site.samples.window for site in sites]
    )
    tests = np.concatenate(
        [
            site.samples.district[site.split["test"]] * n_windows
            + site.samples.window[site.split["test"]]
            for site in sites
        ]
    )
    assert len(np.unique(held)) == len(held)  # each sample is held by one site
    torch.manual_seed(0)
    config = model_config_from_public(
        FederationSettings(preset="tiny"), City.load(tiny_partitions / "public")
    )
    model = build_model(config)
    by_site = site_view_scores(model, sites)
    on_pooled = evaluate(model, pooled, np.sort(tests))
    assert by_site["auprc-macro"] == pytest.approx(on_pooled["auprc-macro"], abs=1e-5)
    assert site_view_scores(model, alone)["auprc-macro"] != pytest.approx(
        on_pooled["auprc-macro"], abs=1e-5
    )
