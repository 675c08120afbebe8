"""What a site keeps between rounds: own layers (FedBN, personal heads), SCAFFOLD control, moments.

Everything lives in the node's ``Context.state`` (a RecordDict), which Flower
keeps per node across rounds, in simulation and on a running SuperNode alike.
Keys carry the run folder (``scope``), so federations run one after another on
the same nodes (a benchmark) do not share a site's state; and a node keeps each
kind of state for one run only (`store_for_run`), since an earlier run on the
same nodes is over and never reads it again.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context

LOCAL_LAYERS_KEY = "local-layers"
SITE_CONTROL_KEY = "scaffold-site-control"
SITE_MOMENTS_KEY = "site-moments"
MOMENT_NAMES = ("exp_avg", "exp_avg_sq", "step")


def store_for_run(context: Context, kind: str, scope: str, record: ArrayRecord) -> None:
    """Keep ``record`` as the node's ``kind`` for run ``scope``, dropping other runs' ``kind``.

    Held for every finished run, the neighbour totals alone (0.15 GiB over the
    300 sites of the benchmark partition) would add that much per method a
    benchmark runs on the same nodes.
    """
    stale = [name for name in context.state if name.startswith(f"{kind}@")]
    for name in stale:
        del context.state[name]
    context.state[f"{kind}@{scope}"] = record


def stored_for_run(context: Context, kind: str, scope: str) -> ArrayRecord | None:
    """The node's ``kind`` kept for run ``scope`` (`store_for_run`); None before it is."""
    name = f"{kind}@{scope}"
    return context.state[name] if name in context.state else None


def apply_local_layers(
    model: torch.nn.Module, context: Context, keys: list[str], scope: str = ""
) -> bool:
    """Put the site's own copies of ``keys`` into the model; False on the first round."""
    record = stored_for_run(context, LOCAL_LAYERS_KEY, scope)
    if not keys or record is None:
        return False
    stored = record.to_torch_state_dict()
    missing = set(keys) - set(stored)
    if missing:
        raise ValueError(f"the site's stored layers lack {sorted(missing)[:3]}")
    model.load_state_dict({key: stored[key] for key in keys}, strict=False)
    return True


def store_local_layers(
    model: torch.nn.Module, context: Context, keys: list[str], scope: str = ""
) -> None:
    """Keep the model's ``keys`` at the site for the next round."""
    if keys:
        state = model.state_dict()
        store_for_run(context, LOCAL_LAYERS_KEY, scope, ArrayRecord({k: state[k] for k in keys}))


def site_control(
    context: Context, like: dict[str, torch.Tensor], scope: str = ""
) -> dict[str, torch.Tensor]:
    """The site's SCAFFOLD control ``c_i`` (zeros before its first round)."""
    record = stored_for_run(context, SITE_CONTROL_KEY, scope)
    if record is not None:
        return record.to_torch_state_dict()
    return {key: torch.zeros_like(value) for key, value in like.items()}


def store_site_control(context: Context, control: dict[str, torch.Tensor], scope: str = "") -> None:
    """Keep ``c_i`` for the site's next round."""
    store_for_run(context, SITE_CONTROL_KEY, scope, ArrayRecord(control))


def apply_site_moments(
    optimiser: torch.optim.Optimizer,
    named: list[tuple[str, torch.Tensor]],
    context: Context,
    scope: str = "",
) -> bool:
    """Give a fresh AdamW the site's moments from its last round; False before its first.

    Raises:
        ValueError: The stored moments do not fit the model's weights.
    """
    record = stored_for_run(context, SITE_MOMENTS_KEY, scope)
    if record is None:
        return False
    stored = record.to_torch_state_dict()
    for key, parameter in named:
        moments = {part: stored.get(f"{key}:{part}") for part in MOMENT_NAMES}
        if any(value is None for value in moments.values()):
            continue  # a weight the site never stepped: it starts fresh
        if moments["exp_avg"].shape != parameter.shape:
            raise ValueError(
                f"the site's stored moments of {key} have shape {tuple(moments['exp_avg'].shape)}"
                f", the model's weight {tuple(parameter.shape)}"
            )
        moments["step"] = moments["step"].reshape(())
        optimiser.state[parameter] = moments
    return True


def store_site_moments(
    optimiser: torch.optim.Optimizer,
    named: list[tuple[str, torch.Tensor]],
    context: Context,
    scope: str = "",
) -> None:
    """Keep the AdamW's moments and step counts for the site's next round."""
    record = {}
    for key, parameter in named:
        state = optimiser.state.get(parameter, {})
        if all(part in state for part in MOMENT_NAMES):
            for part in MOMENT_NAMES:
                value = state[part].detach().clone()
                record[f"{key}:{part}"] = value.reshape(1) if part == "step" else value
    store_for_run(context, SITE_MOMENTS_KEY, scope, ArrayRecord(record))
