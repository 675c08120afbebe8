"""The hold-out as sites see it, and the sites' own samples pooled (federation benchmark)."""

import numpy as np
import pytest
import torch

from datasets import City
from fedcore.federation.settings import FederationSettings
from fedcore.federation.task import (
    data_settings,
    load_partition_site,
    load_pooled_data,
    model_config_from_public,
)
from fedcore.model import build_model
from fedcore.training import evaluate
from pipelines.site_pool import pool_site_data, site_view_scores
from tests.federation_helpers import tiny_partitions, tiny_settings

__all__ = ["tiny_partitions"]


@pytest.fixture(scope="module")
def views(tiny_partitions, tiny_city_dir, tmp_path_factory):
    settings = tiny_settings(tiny_partitions, tiny_city_dir, tmp_path_factory.mktemp("pool"))
    data = data_settings(settings)
    pooled = load_pooled_data(str(tiny_city_dir), data)
    site_dirs = sorted((tiny_partitions / "sites").iterdir())
    sites = [
        load_partition_site(str(path), str(tiny_partitions / "public"), data)[1]
        for path in site_dirs
    ]
    return pooled, sites


def test_pooled_site_data_is_each_sample_as_its_site_holds_it(views):
    pooled, sites = views
    neighbours_before = pooled.samples.neighbours.copy()
    union = pool_site_data(pooled, sites)
    n_windows = len(pooled.samples.starts)
    for name in ("train", "validation", "test"):
        assert len(union.split[name]) == sum(len(site.split[name]) for site in sites)
    for site in sites:
        indices = site.split["train"]
        if not len(indices):
            continue
        where = site.samples.district[indices] * n_windows + site.samples.window[indices]
        own, pooled_view = site.samples.batch(indices), union.samples.batch(where)
        for key in own:
            if key == "image":  # a missing frame's placeholder differs; present frames agree
                shown = own["image_mask"]
                assert torch.equal(own[key][shown], pooled_view[key][shown])
            else:
                assert torch.equal(own[key], pooled_view[key]), key
    # sites see fewer neighbours than the pooled city; the pooled city is left as it was
    assert union.samples.neighbours[union.split["train"], -1].mean() < 1.0
    assert np.array_equal(pooled.samples.neighbours, neighbours_before)


def test_site_view_scores_every_sites_test_windows_together(views, tiny_partitions):
    pooled, sites = views
    union = pool_site_data(pooled, sites)
    torch.manual_seed(0)
    config = model_config_from_public(
        FederationSettings(preset="tiny"), City.load(tiny_partitions / "public")
    )
    model = build_model(config)
    by_site = site_view_scores(model, sites)
    pooled_sites = evaluate(model, union, union.split["test"])
    assert by_site["auprc-macro"] == pytest.approx(pooled_sites["auprc-macro"], abs=1e-5)
