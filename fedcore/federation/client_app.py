"""The edge site's side of the federation: train and evaluate on local data only.

Each message carries the global weights and a ConfigRecord with the federation
settings (see `FederationSettings`) and the model config. The site is the
node's ``partition-id`` in the site plan.
"""

from __future__ import annotations

import math
import time

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedcore.federation.settings import FederationSettings
from fedcore.federation.task import arrays_of, data_settings, load_site, model_from_arrays
from fedcore.model import ModelConfig
from fedcore.training import evaluate, train_epochs

app = ClientApp()


def _site(msg: Message, context: Context):
    config: ConfigRecord = msg.content["config"]
    settings = FederationSettings.from_run_config(dict(config))
    site_index = int(context.node_config["partition-id"])
    data = load_site(settings.city_dir, settings.sites_file, site_index, data_settings(settings))
    model = model_from_arrays(
        ModelConfig.from_json(str(config["model-config"])), msg.content["arrays"]
    )
    return settings, site_index, data, model


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the global model on this site's training windows."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    settings, site_index, data, model = _site(msg, context)
    round_number = int(msg.content["config"].get("server-round", 0))
    result = train_epochs(
        model,
        data,
        data.split["train"],
        epochs=settings.local_epochs,
        lr=settings.lr,
        batch_size=settings.batch_size,
        seed=settings.seed * 1000 + round_number * 7 + site_index,
    )
    metrics = MetricRecord(
        {
            "train-loss": result["loss"],
            "num-examples": int(result["num-examples"]),
            "site-index": site_index,
            "compute-seconds": time.perf_counter() - started,
        }
    )
    content = RecordDict({"arrays": arrays_of(model), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_site(msg: Message, context: Context) -> Message:
    """Score the global model on this site's validation windows."""
    torch.set_num_threads(1)
    _, site_index, data, model = _site(msg, context)
    scores = evaluate(model, data, data.split["validation"])
    metrics = {
        key: float(value)
        for key, value in scores.items()
        if key.startswith(("loss", "auprc", "auroc")) and math.isfinite(value)
    }
    metrics["num-examples"] = int(scores["num-examples"])
    metrics["site-index"] = site_index
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
