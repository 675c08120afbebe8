"""The site side, called directly with hand-built Messages: no Ray, no SuperLink."""

import math

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from datasets import City
from datasets.partition_io import read_federation
from fedcore.federation.client_app import app as client_app
from fedcore.federation.layers import head_keys, head_row_domains, local_keys, norm_keys
from fedcore.federation.local_state import (
    LOCAL_LAYERS_KEY,
    SITE_CONTROL_KEY,
    SITE_MOMENTS_KEY,
    apply_site_moments,
)
from fedcore.federation.settings import FederationSettings
from fedcore.federation.site_hooks import ScaffoldCorrection, proximal_penalty
from fedcore.federation.strategies import CONTROL_DELTA_KEY, CONTROL_KEY
from fedcore.federation.task import (
    arrays_of,
    data_settings,
    load_partition_site,
    model_config_from_public,
    site_folders,
)
from fedcore.model import build_model
from pipelines.train import model_config
from tests.federation_helpers import node_context, set_task_identity, tiny_partitions, tiny_settings

__all__ = ["tiny_partitions"]


@pytest.fixture(autouse=True)
def task_identity():
    set_task_identity()
    yield
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


@pytest.fixture(scope="module")
def setup(tiny_partitions, tiny_city_dir, tmp_path_factory):
    settings = tiny_settings(tiny_partitions, tiny_city_dir, tmp_path_factory.mktemp("run"))
    public = City.load(tiny_partitions / "public")
    config = model_config_from_public(settings, public)
    torch.manual_seed(0)
    return settings, config, build_model(config)


def _message(settings, config, model, kind="train", extra=None):
    run_config = {**settings.to_run_config(), "model-config": config.to_json(), "server-round": 1}
    content = RecordDict({"arrays": arrays_of(model), "config": ConfigRecord(run_config)})
    for key, value in (extra or {}).items():
        content[key] = value
    return Message(content=content, dst_node_id=7, message_type=kind)


def test_site_reads_only_its_own_folder_and_held_windows(tiny_partitions, setup):
    settings, _, _ = setup
    federation = read_federation(tiny_partitions)
    district_ids = City.load(tiny_partitions / "public").district_ids
    for index, info in enumerate(federation.sites):
        site_dir, public_dir = site_folders({"partition-id": index}, str(tiny_partitions))
        assert site_dir == tiny_partitions / "sites" / info.site_id
        site_id, data = load_partition_site(str(site_dir), str(public_dir), data_settings(settings))
        assert site_id == info.site_id
        held = info.window_mask(data.samples.starts, data_settings(settings).horizon_hours)
        ids = {district_ids[row] for row in data.samples.district}
        assert ids == set(info.districts)
        for indices in data.split.values():
            assert held[data.samples.window[indices]].all()
        again = load_partition_site(str(site_dir), str(public_dir), data_settings(settings))
        assert again[1] is data  # cached per process


def test_site_dir_in_node_config_wins_and_bad_partition_fails(tiny_partitions):
    folder = tiny_partitions / "sites" / "site-002"
    assert site_folders({"site-dir": str(folder)}, "elsewhere") == (
        folder,
        tiny_partitions / "public",
    )
    with pytest.raises(ValueError, match="partition-id 9 is not a site"):
        site_folders({"partition-id": 9}, str(tiny_partitions))
    with pytest.raises(ValueError, match="'site-dir' or 'partition-id'"):
        site_folders({}, str(tiny_partitions))


def test_public_layer_sizes_the_model_as_pooled_data_does(tiny_city, setup):
    from fedcore.federation.task import load_pooled_data

    settings, config, _ = setup
    pooled = load_pooled_data(settings.eval_city_dir, data_settings(settings))
    assert model_config(settings.preset, pooled, settings.domain_list) == config


def test_client_trains_and_reports_site_metrics(setup):
    settings, config, model = setup
    reply = client_app(_message(settings, config, model), node_context(7, 0))
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] > 0 and math.isfinite(metrics["train-loss"])
    assert metrics["site-index"] == 0 and metrics["compute-seconds"] > 0
    assert list(metrics["domain-labels"]) == [metrics["num-examples"]] * 4
    assert "val-loss" in metrics
    new = reply.content["arrays"].to_torch_state_dict()
    old = model.state_dict()
    assert set(new) == set(old)
    assert any(not torch.equal(new[name], old[name]) for name in old)


def test_site_optimiser_is_the_run_configs(setup):
    """SGD moves the weights by lr x clipped gradient (norm <= lr a step); AdamW by ~lr each."""
    settings, config, model = setup
    old = model.state_dict()

    def update_norm(**changes) -> tuple[float, int]:
        site = settings.with_updates(lr=1e-3, lr_schedule="constant", **changes)
        reply = client_app(_message(site, config, model), node_context(7, 0))
        assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
        new = reply.content["arrays"].to_torch_state_dict()
        moved = [(new[name] - old[name]).double() for name in old if old[name].is_floating_point()]
        examples = int(reply.content["metrics"]["num-examples"])
        steps = site.site_epochs(examples) * math.ceil(examples / site.batch_size)
        return float(torch.sqrt(sum((delta**2).sum() for delta in moved))), steps

    sgd, steps = update_norm(site_optimiser="sgd")
    adamw, _ = update_norm()
    assert 0 < sgd <= 1e-3 * steps * 1.01
    assert adamw > 10 * sgd
    with pytest.raises(ValueError, match="site-optimiser"):
        settings.with_updates(site_optimiser="lion")


def test_site_keeps_its_adamw_moments_between_rounds_when_asked(setup):
    """Kept moments carry the step count on and change the next update; fresh ones do not."""
    settings, config, model = setup
    keep = settings.with_updates(keep_site_moments=True, lr_schedule="constant")
    context = node_context(7, 0)
    name = f"{SITE_MOMENTS_KEY}@{settings.run_dir}"

    def steps_stored() -> float:
        stored = context.state[name].to_torch_state_dict()
        return float(next(v for k, v in stored.items() if k.endswith(":step")))

    first = client_app(_message(keep, config, model), context)
    examples = int(first.content["metrics"]["num-examples"])
    steps = keep.site_epochs(examples) * math.ceil(examples / keep.batch_size)
    assert steps_stored() == steps
    torch.manual_seed(1)
    moved = build_model(config)  # next round's global model: other gradients than the first's
    second = client_app(_message(keep, config, moved), context)
    assert steps_stored() == 2 * steps
    fresh = client_app(_message(keep.with_updates(keep_site_moments=False), config, moved), context)
    assert steps_stored() == 2 * steps  # a fresh round does not write them...
    kept, again = (r.content["arrays"].to_torch_state_dict() for r in (second, fresh))
    assert any(not torch.allclose(kept[key], again[key]) for key in kept)
    unset = keep.with_updates(keep_site_moments=False)  # ...nor read them
    alone = client_app(_message(unset, config, moved), node_context(7, 0))
    bare = alone.content["arrays"].to_torch_state_dict()
    assert all(torch.equal(bare[key], again[key]) for key in bare)
    with pytest.raises(ValueError, match="keep-site-moments"):
        settings.with_updates(keep_site_moments=True, site_optimiser="sgd")


def test_a_site_with_a_sam_radius_steps_otherwise(setup):
    settings, config, model = setup

    def trained(radius: float) -> dict:
        site = settings.with_updates(sam_radius=radius)
        reply = client_app(_message(site, config, model), node_context(7, 0))
        assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
        return reply.content["arrays"].to_torch_state_dict()

    plain, again, sam = trained(0.0), trained(0.0), trained(0.05)
    assert all(torch.equal(plain[key], again[key]) for key in plain)
    assert any(not torch.allclose(plain[key], sam[key]) for key in plain)
    with pytest.raises(ValueError, match="sam-radius"):
        settings.with_updates(sam_radius=-0.1)


def test_stored_moments_that_do_not_fit_the_model_are_refused(setup):
    settings, _, model = setup
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    key, parameter = named[0]
    context = node_context(7, 0)
    wrong = {
        f"{key}:exp_avg": torch.zeros(parameter.numel() + 1),
        f"{key}:exp_avg_sq": torch.zeros(parameter.numel() + 1),
        f"{key}:step": torch.ones(1),
    }
    context.state[f"{SITE_MOMENTS_KEY}@run"] = ArrayRecord(wrong)
    optimiser = torch.optim.AdamW([parameter])
    with pytest.raises(ValueError, match="stored moments"):
        apply_site_moments(optimiser, named, context, "run")
    assert not apply_site_moments(optimiser, named, node_context(7, 0), "run")


def test_unlabelled_domain_counts_no_labels(setup):
    settings, config, model = setup
    context = node_context(7, 1, **{"unlabelled-domains": "crowd"})
    reply = client_app(_message(settings, config, model), context)
    labels = list(reply.content["metrics"]["domain-labels"])
    assert labels[2] == 0 and labels[0] == reply.content["metrics"]["num-examples"] > 0


def test_site_errors_name_the_site(setup):
    settings, config, model = setup
    with pytest.raises(Exception, match=r"\[site=node-7 .*partition-id 42"):
        client_app(_message(settings, config, model), node_context(7, 42))


def test_fedbn_site_keeps_its_own_norm_layers(setup):
    settings, config, model = setup
    fedbn = settings.with_updates(strategy="fedbn")
    context = node_context(7, 0)
    first = client_app(_message(fedbn, config, model), context)
    keys = norm_keys(model)
    assert keys and set(context.state[f"{LOCAL_LAYERS_KEY}@{settings.run_dir}"].keys()) == set(keys)
    mine = context.state[f"{LOCAL_LAYERS_KEY}@{settings.run_dir}"].to_torch_state_dict()
    other = build_model(config)  # a global model whose norm layers differ from the site's
    with torch.no_grad():
        for name, parameter in other.named_parameters():
            if name in keys:
                parameter.fill_(3.0)
    second = client_app(_message(fedbn, config, other), context)
    sent = second.content["arrays"].to_torch_state_dict()
    # trained from the site's own norm layers, not from the global 3.0s
    assert all(not torch.allclose(sent[key], torch.full_like(sent[key], 3.0)) for key in keys)
    assert first.content["metrics"]["num-examples"] == second.content["metrics"]["num-examples"]
    assert any(not torch.equal(mine[key], sent[key]) for key in keys)


def test_local_layer_kinds_per_strategy(setup):
    _, config, model = setup
    assert FederationSettings(strategy="fedper").local_layer_kinds == ("head",)
    assert FederationSettings(strategy="fedbn").local_layer_kinds == ("norm",)
    both = FederationSettings(strategy="fedadam", local_layers="norm,head")
    assert set(local_keys(model, both.local_layer_kinds)) == set(
        norm_keys(model) + head_keys(model)
    )
    assert head_keys(model) == ["heads.weight", "heads.bias"]
    rows = model.state_dict()["heads.weight"].shape[0]
    assert head_row_domains(rows, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="local-layers"):
        FederationSettings(local_layers="everything")


def test_scaffold_site_returns_control_delta_and_keeps_its_control(setup):
    settings, config, model = setup
    scaffold = settings.with_updates(strategy="scaffold")
    control = ArrayRecord(
        {name: torch.zeros_like(p) for name, p in model.named_parameters() if p.requires_grad}
    )
    context = node_context(7, 0)
    reply = client_app(_message(scaffold, config, model, extra={CONTROL_KEY: control}), context)
    delta = reply.content[CONTROL_DELTA_KEY].to_torch_state_dict()
    stored = context.state[f"{SITE_CONTROL_KEY}@{settings.run_dir}"].to_torch_state_dict()
    assert set(delta) == set(control.keys())
    for name in delta:  # first round: c_i was zero, so delta_c_i is the new c_i
        assert torch.allclose(delta[name], stored[name])
    assert any(delta[name].abs().sum() > 0 for name in delta)


def test_scaffold_correction_adds_c_minus_ci_and_averages_raw_gradients():
    model = torch.nn.Linear(2, 1)
    server = {name: torch.full_like(p, 1.0) for name, p in model.named_parameters()}
    site = {name: torch.full_like(p, 0.25) for name, p in model.named_parameters()}
    hook = ScaffoldCorrection(model, server, site)
    raw = []
    for step in range(2):
        model.zero_grad()
        model(torch.tensor([[1.0, float(step)]])).sum().backward()
        raw.append({name: p.grad.clone() for name, p in model.named_parameters()})
        hook(model)
        for name, p in model.named_parameters():
            assert torch.allclose(p.grad, raw[-1][name] + 0.75)
    for name, value in hook.next_site_control().items():
        assert torch.allclose(value, (raw[0][name] + raw[1][name]) / 2)


def test_proximal_penalty_is_zero_at_the_global_weights_then_grows():
    model = torch.nn.Linear(3, 1)
    penalty = proximal_penalty(model, mu=0.5)
    assert float(penalty(model).detach()) == 0.0
    with torch.no_grad():
        model.weight += 2.0
    assert float(penalty(model).detach()) == pytest.approx(0.25 * 3 * 4.0)


def test_settings_round_trip_and_reject_bad_values():
    settings = FederationSettings(num_rounds=7, lr=0.01, strategy="fedyogi", resume=True)
    assert FederationSettings.from_run_config(settings.to_run_config()) == settings
    assert (
        FederationSettings.from_run_config({"resume": "false", "num-rounds": "4"}).num_rounds == 4
    )
    with pytest.raises(ValueError, match="strategy must be one of"):
        FederationSettings(strategy="fedmagic")
    with pytest.raises(ValueError, match="'num-rounds' must be int"):
        FederationSettings.from_run_config({"num-rounds": "many"})
    with pytest.raises(ValueError, match="fraction-train"):
        FederationSettings(fraction_train=0.0)
    assert np.isfinite(FederationSettings().round_timeout_s)


def test_server_learning_rate_is_the_strategys_own_unless_set():
    assert FederationSettings(strategy="fedavgm").server_step == 1.0
    assert FederationSettings(strategy="fedadam").server_step == 0.01
    assert FederationSettings(strategy="fedadam", server_lr=0.2).server_step == 0.2
    with pytest.raises(ValueError, match="server-momentum"):
        FederationSettings(strategy="fedavgm", server_momentum=1.0)
    with pytest.raises(ValueError, match="server-lr"):
        FederationSettings(server_lr=-0.1)


def test_every_setting_is_in_the_flower_run_config_with_its_default():
    """``flwr run .`` reads the run config from pyproject.toml: every knob is there."""
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    run_config = pyproject["tool"]["flwr"]["app"]["config"]
    assert run_config == FederationSettings().to_run_config()
