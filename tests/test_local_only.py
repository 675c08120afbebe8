"""The benchmark's local-only baseline: each site alone, the same result on any number of cores."""

import pytest

from datasets import City
from fedcore.federation.settings import FederationSettings
from fedcore.federation.task import model_config_from_public
from pipelines.local_only import local_epochs, run_local_only
from tests.federation_helpers import N_SITES, tiny_partitions, tiny_settings

__all__ = ["tiny_partitions"]


@pytest.fixture(scope="module")
def setup(tiny_partitions, tiny_city_dir, tmp_path_factory):
    settings = tiny_settings(
        tiny_partitions, tiny_city_dir, tmp_path_factory.mktemp("local"), num_rounds=1
    )
    config = model_config_from_public(settings, City.load(tiny_partitions / "public"))
    return settings, config


def test_sites_in_parallel_processes_score_as_one_after_another(setup):
    settings, config = setup
    alone = run_local_only(config, settings, N_SITES - 2, cores=1)
    parallel = run_local_only(config, settings, N_SITES - 2, cores=2)
    assert alone["test"] == pytest.approx(parallel["test"])
    assert 0 < alone["test"]["auprc-macro"] <= 1
    assert alone["rounds"] == settings.num_rounds


def test_a_site_alone_trains_as_many_epochs_as_it_would_in_the_federation():
    settings = FederationSettings(num_rounds=20, local_steps=20, batch_size=64)
    assert local_epochs(settings, n_train=64) == 20 * 20  # one step an epoch
    assert local_epochs(settings, n_train=640) == 20 * 2
    sampled = settings.with_updates(fraction_train=0.25)
    assert local_epochs(sampled, n_train=640) == 5 * 2  # sampled in a quarter of the rounds
    assert local_epochs(settings.with_updates(fraction_train=0.01), n_train=640) == 2
