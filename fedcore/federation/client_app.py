"""The edge site's side of the federation: train and evaluate on its own folder only.

Each message carries the global weights and a ConfigRecord with the federation
settings (see `FederationSettings`) and the model config. The node config says
which folder is the site's (``partition-id`` of the partitions folder, or
``site-dir``); ``unlabelled-domains`` (comma-separated) names domains this
partner does not record. Errors are re-raised tagged ``[site=<id>]`` so the server
can say which site failed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from datasets.partition_io import read_site_info
from fedcore.federation.aggregation import SCALES_KEY
from fedcore.federation.layers import local_keys
from fedcore.federation.local_state import (
    apply_local_layers,
    apply_site_moments,
    site_control,
    store_local_layers,
    store_site_control,
    store_site_moments,
)
from fedcore.federation.neighbour_exchange import (
    site_sums,
    store_totals,
    stored_totals,
    with_neighbour_context,
)
from fedcore.federation.server_moments import GRADIENTS_KEY, MOMENTS_KEY, ServerMomentsAdam
from fedcore.federation.settings import FederationSettings, comma_list
from fedcore.federation.site_hooks import (
    ScaffoldCorrection,
    adamw_gradient_scales,
    proximal_penalty,
)
from fedcore.federation.site_order import ROLL_CALL, SITE_ID_KEY
from fedcore.federation.strategies import CONTROL_DELTA_KEY, CONTROL_KEY
from fedcore.federation.task import (
    arrays_from_numpy,
    arrays_of,
    data_settings,
    labelled_counts,
    load_partition_site,
    modality_counts,
    model_from_arrays,
    site_folders,
    site_number,
    site_threads,
)
from fedcore.model import ModelConfig, RiskNet
from fedcore.site_data import SiteData
from fedcore.training import evaluate, make_optimiser, train_epochs

app = ClientApp()


class SiteTaskError(RuntimeError):
    """A site's task failed; the message starts with ``[site=<id>]``."""


def site_tag(context: Context, partitions_dir: str) -> str:
    """The site's id as best known before its data is read (its folder name)."""
    try:
        site_dir, _ = site_folders(dict(context.node_config), partitions_dir)
        return site_dir.name
    except (ValueError, OSError) as error:
        return f"node-{context.node_id} ({error})"


def _tagged(task: Callable[[Message, Context], Message]) -> Callable[[Message, Context], Message]:
    def run(msg: Message, context: Context) -> Message:
        try:
            return task(msg, context)
        except Exception as error:
            partitions = str(msg.content["config"].get("partitions-dir", ""))
            tag = site_tag(context, partitions)
            raise SiteTaskError(f"[site={tag}] {type(error).__name__}: {error}") from error

    run.__name__ = task.__name__
    run.__doc__ = task.__doc__
    return run


def _site(msg: Message, context: Context):
    """The run's settings, the site's folder, id and data (with pooled neighbour totals)."""
    config: ConfigRecord = msg.content["config"]
    settings = FederationSettings.from_run_config(dict(config))
    site_dir, public_dir = site_folders(dict(context.node_config), settings.partitions_dir)
    unlabelled = comma_list(str(context.node_config.get("unlabelled-domains", "")))
    site_id, data = load_partition_site(
        str(site_dir), str(public_dir), data_settings(settings), unlabelled
    )
    totals = stored_totals(context, settings.run_dir)
    if totals is not None:
        data = with_neighbour_context(data, totals)
    return settings, site_dir, site_id, data


def _open(msg: Message, context: Context):
    config: ConfigRecord = msg.content["config"]
    settings, _, site_id, data = _site(msg, context)
    model = model_from_arrays(
        ModelConfig.from_json(str(config["model-config"])), msg.content["arrays"]
    )
    keys = local_keys(model, settings.local_layer_kinds)
    apply_local_layers(model, context, keys, settings.run_dir)
    return settings, site_id, data, model, keys


def validation_metrics(model: RiskNet, data: SiteData) -> dict[str, float]:
    """The model's loss and AUPRC on the site's validation windows (domains it can score)."""
    indices = data.split["validation"]
    if len(indices) == 0:
        return {"val-num-examples": 0}
    scores = evaluate(model, data, indices)
    out = {
        f"val-{key}": float(value)
        for key, value in scores.items()
        if key.startswith(("loss", "auprc", "auroc")) and math.isfinite(value)
    }
    out["val-num-examples"] = int(scores["num-examples"])
    return out


def site_optimiser(
    model: RiskNet, lr: float, settings: FederationSettings, content: RecordDict
) -> torch.optim.Optimizer:
    """The round's optimiser: fresh (``adamw``, ``sgd``) or stepping with the server's moments."""
    if settings.site_optimiser != "mimelite":
        return make_optimiser(model, lr, settings.site_optimiser, settings.site_momentum)
    moments = content[MOMENTS_KEY].to_torch_state_dict() if MOMENTS_KEY in content else None
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return ServerMomentsAdam(named, lr, moments, beta1=settings.server_beta1)


@app.train()
@_tagged
def train(msg: Message, context: Context) -> Message:
    """Score the received model on the site's validation windows, then train on its own."""
    torch.set_num_threads(site_threads(dict(context.node_config)))
    started = time.process_time()
    settings, site_id, data, model, keys = _open(msg, context)
    round_number = int(msg.content["config"].get("server-round", 0))
    metrics: dict = {"site-index": site_number(site_id)}
    if settings.site_eval:
        metrics.update(validation_metrics(model, data))
    indices = data.split["train"]
    penalty = (
        proximal_penalty(model, settings.proximal_mu) if settings.strategy == "fedprox" else None
    )
    correction = None
    if CONTROL_KEY in msg.content:
        server = msg.content[CONTROL_KEY].to_torch_state_dict()
        correction = ScaffoldCorrection(
            model, server, site_control(context, server, settings.run_dir)
        )
    lr = settings.site_lr(round_number)
    optimiser = site_optimiser(model, lr, settings, msg.content)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if settings.keep_site_moments:
        apply_site_moments(optimiser, named, context, settings.run_dir)
    if len(indices):
        result = train_epochs(
            model,
            data,
            indices,
            epochs=settings.site_epochs(len(indices)),
            lr=lr,
            optimiser=optimiser,
            batch_size=settings.batch_size,
            seed=settings.seed * 1000 + round_number * 7 + max(site_number(site_id), 0),
            penalty=penalty,
            after_backward=correction,
            sharpness=settings.sam_radius,
        )
        metrics["train-loss"] = float(result["loss"])
    store_local_layers(model, context, keys, settings.run_dir)
    if settings.keep_site_moments:
        store_site_moments(optimiser, named, context, settings.run_dir)
    metrics["num-examples"] = int(len(indices))
    metrics["domain-labels"] = labelled_counts(data, indices)
    metrics["modality-samples"] = modality_counts(data, indices)
    content = RecordDict({"arrays": arrays_of(model)})
    if isinstance(optimiser, ServerMomentsAdam):
        content[GRADIENTS_KEY] = optimiser.report()
    if settings.gradient_weighting:
        content[SCALES_KEY] = arrays_from_numpy(adamw_gradient_scales(optimiser, named))
    if correction is not None:
        new_control = correction.next_site_control()
        old_control = site_control(context, new_control, settings.run_dir)
        delta = {name: new_control[name] - old_control[name] for name in new_control}
        store_site_control(context, new_control, settings.run_dir)
        content[CONTROL_DELTA_KEY] = ArrayRecord(delta)
    # CPU seconds, not wall: a site slowed by a busy server would otherwise
    # count the server's work as its own, and the simulation's overhead would hide.
    metrics["compute-seconds"] = time.process_time() - started
    content["metrics"] = MetricRecord(metrics)
    return Message(content=content, reply_to=msg)


@app.evaluate()
@_tagged
def evaluate_site(msg: Message, context: Context) -> Message:
    """Score the global model (with the site's own layers) on the site's validation windows."""
    torch.set_num_threads(site_threads(dict(context.node_config)))
    _, site_id, data, model, _ = _open(msg, context)
    metrics = validation_metrics(model, data)
    metrics["num-examples"] = metrics.pop("val-num-examples")
    metrics["site-index"] = site_number(site_id)
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


@app.query(ROLL_CALL)
@_tagged
def roll_call_answer(msg: Message, context: Context) -> Message:
    """Which site this node is, from its folder's ``site.json`` (no data is read)."""
    partitions = str(msg.content["config"].get("partitions-dir", ""))
    site_dir, _ = site_folders(dict(context.node_config), partitions)
    site = ConfigRecord({SITE_ID_KEY: read_site_info(site_dir).site_id})
    return Message(content=RecordDict({"site": site}), reply_to=msg)


@app.query("neighbour_sums")
@_tagged
def neighbour_sums_query(msg: Message, context: Context) -> Message:
    """What the site's districts tell the districts next door (the exchange's first step)."""
    settings, site_dir, site_id, data = _site(msg, context)
    arrays = arrays_from_numpy(site_sums(data, read_site_info(site_dir)))
    metrics = MetricRecord({"site-index": site_number(site_id)})
    return Message(content=RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.query("neighbour_totals")
@_tagged
def neighbour_totals_store(msg: Message, context: Context) -> Message:
    """Keep the pooled totals of the site's districts for the rest of the run."""
    settings, _, site_id, data = _site(msg, context)
    totals = {key: array.numpy() for key, array in msg.content["arrays"].items()}
    with_neighbour_context(data, totals)  # totals for other districts fail here, not in round 1
    store_totals(context, totals, settings.run_dir)
    metrics = MetricRecord({"site-index": site_number(site_id)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
