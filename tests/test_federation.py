"""The Flower apps called directly with hand-built Messages: no Ray, no SuperLink."""

import math

import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

from fedcore.federation.client_app import app as client_app
from fedcore.federation.settings import FederationSettings
from fedcore.federation.sites import group_districts_into_sites, read_site_plan, write_site_plan
from fedcore.federation.strategies import average_present_metrics
from fedcore.federation.task import arrays_of, data_settings, load_site, model_config_for
from fedcore.model import build_model


@pytest.fixture(autouse=True)
def task_identity():
    """Flower's runtimes set who runs a task before calling an app; so do we."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 7
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


@pytest.fixture(scope="module")
def federation(tiny_city, tiny_city_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("federation")
    plan = write_site_plan(group_districts_into_sites(tiny_city, 4), folder / "sites.json")
    settings = FederationSettings(
        city_dir=str(tiny_city_dir), sites_file=str(plan), run_dir=str(folder), preset="tiny"
    )
    site = load_site(settings.city_dir, settings.sites_file, 0, data_settings(settings))
    config = model_config_for(settings, site)
    torch.manual_seed(0)
    return settings, config, build_model(config)


def _message(settings, config, model, kind):
    content = RecordDict(
        {
            "arrays": arrays_of(model),
            "config": ConfigRecord(
                {**settings.to_run_config(), "model-config": config.to_json(), "server-round": 1}
            ),
        }
    )
    return Message(content=content, dst_node_id=7, message_type=kind)


def _context(partition):
    return Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": partition, "num-partitions": 4},
        state=RecordDict(),
        run_config={},
    )


def test_site_plan_covers_every_district_once(tiny_city, federation):
    settings, _, _ = federation
    plan = read_site_plan(settings.sites_file)
    assigned = [district for site in plan for district in site["districts"]]
    assert sorted(assigned) == sorted(tiny_city.district_ids)
    assert len(plan) == 4 and all(site["districts"] for site in plan)


def test_site_holds_only_its_own_districts(tiny_city, federation):
    settings, _, _ = federation
    plan = read_site_plan(settings.sites_file)
    site = load_site(settings.city_dir, settings.sites_file, 1, data_settings(settings))
    ids = {tiny_city.district_ids[row] for row in site.samples.district}
    assert ids == set(plan[1]["districts"])


def test_client_trains_and_returns_new_weights(federation):
    settings, config, model = federation
    reply = client_app(_message(settings, config, model, "train"), _context(0))
    assert not reply.has_error()
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] > 0 and math.isfinite(metrics["train-loss"])
    assert metrics["site-index"] == 0
    new = reply.content["arrays"].to_torch_state_dict()
    old = model.state_dict()
    assert set(new) == set(old)
    assert any(not torch.equal(new[name], old[name]) for name in old)


def test_client_evaluates_on_its_validation_windows(federation):
    settings, config, model = federation
    reply = client_app(_message(settings, config, model, "evaluate"), _context(2))
    assert not reply.has_error()
    assert reply.content["metrics"]["num-examples"] > 0
    assert math.isfinite(reply.content["metrics"]["loss"])


def test_unknown_site_fails_clearly(federation):
    settings, config, model = federation
    with pytest.raises(IndexError, match="site 99 is not in the plan"):
        client_app(_message(settings, config, model, "train"), _context(99))


def test_metrics_are_averaged_where_present():
    contents = [
        RecordDict({"metrics": MetricRecord({"num-examples": 1, "loss": 1.0, "auprc-crowd": 0.2})}),
        RecordDict({"metrics": MetricRecord({"num-examples": 3, "loss": 2.0})}),
    ]
    averaged = average_present_metrics(contents, "num-examples")
    assert averaged["loss"] == pytest.approx(1.75)
    assert averaged["auprc-crowd"] == pytest.approx(0.2)


def test_settings_round_trip_through_run_config():
    settings = FederationSettings(num_rounds=7, lr=0.01, central_eval=False)
    assert FederationSettings.from_run_config(settings.to_run_config()) == settings
