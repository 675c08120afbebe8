"""MimeLite: the server's moments (update, checkpoint, checks) and the sites' Adam."""

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedcore.federation.aggregation import SiteReply, decode_reply
from fedcore.federation.server_moments import (
    GRADIENTS_KEY,
    ServerMoments,
    ServerMomentsAdam,
)
from fedcore.federation.strategies import KizashiFedAvg

SHAPES = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


def _reply(examples: float, g: float, g2: float) -> SiteReply:
    return decode_reply(_content(examples, g, g2))


def _content(examples: float, g: float, g2: float) -> RecordDict:
    arrays = {}
    for key, like in SHAPES.items():
        arrays[f"g/{key}"] = Array(np.full_like(like, g))
        arrays[f"g2/{key}"] = Array(np.full_like(like, g2))
    return RecordDict(
        {GRADIENTS_KEY: ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": examples})}
    )


def test_the_moments_move_by_the_example_weighted_reports_and_are_bias_corrected():
    moments = ServerMoments(list(SHAPES), beta1=0.9, beta2=0.99)
    assert moments.record() is None  # round 1: sites run their own Adam
    moments.update([_reply(1, 1.0, 4.0), _reply(3, 5.0, 8.0)])
    record = moments.record()
    # Weighted means 4 and 7; after one round the bias correction undoes (1 - beta).
    np.testing.assert_allclose(record["m/w"].numpy(), 4.0, rtol=1e-6)
    np.testing.assert_allclose(record["v/b"].numpy(), 7.0, rtol=1e-6)
    moments.update([_reply(2, 0.0, 0.0)])
    expected_m = 0.9 * 0.1 * 4.0 / (1 - 0.9**2)
    np.testing.assert_allclose(moments.record()["m/b"].numpy(), expected_m, rtol=1e-5)


def test_the_moments_survive_a_checkpoint():
    moments = ServerMoments(list(SHAPES), beta1=0.9, beta2=0.99)
    moments.update([_reply(1, 2.0, 5.0)])
    again = ServerMoments(list(SHAPES), beta1=0.9, beta2=0.99)
    again.load_state_arrays(moments.state_arrays())
    for key, array in moments.record().items():
        np.testing.assert_array_equal(again.record()[key].numpy(), array.numpy())


def _full(value: float) -> Array:
    return Array(np.full(3, value, np.float32))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda arrays: arrays.pop("g/w"), "missing"),
        (lambda arrays: arrays.__setitem__("g2/b", _full(-1.0)), "negative"),
        (lambda arrays: arrays.__setitem__("g/b", _full(np.nan)), "finite"),
    ],
)
def test_a_report_that_cannot_move_the_moments_is_named(change, reason):
    moments = ServerMoments(list(SHAPES), beta1=0.9, beta2=0.99)
    assert moments.reply_problem(_reply(1, 0.5, 0.5), SHAPES) is None
    reply = _content(1, 0.5, 0.5)
    arrays = dict(reply[GRADIENTS_KEY].items())
    change(arrays)
    reply[GRADIENTS_KEY] = ArrayRecord(arrays)
    assert reason in moments.reply_problem(decode_reply(reply), SHAPES)
    assert "gradient-moments" in moments.reply_problem(decode_reply(RecordDict({})), SHAPES)


def test_a_strategy_without_moments_refuses_their_checkpoint_state():
    strategy = KizashiFedAvg(head_keys=[], n_domains=1)
    with pytest.raises(ValueError, match="moments/rounds"):
        strategy.load_state_arrays({"moments/rounds": np.array(1)})


def _named(seed: int):
    torch.manual_seed(seed)
    layer = torch.nn.Linear(3, 2)
    return layer, list(layer.named_parameters())


def _steps(layer, optimiser, n: int = 3):
    for step in range(n):
        optimiser.zero_grad()
        torch.manual_seed(100 + step)
        layer(torch.randn(8, 3)).pow(2).mean().backward()
        optimiser.step()


def test_without_server_moments_a_site_runs_a_fresh_adamw():
    ours, named = _named(0)
    reference, _ = _named(0)
    _steps(ours, ServerMomentsAdam(named, lr=0.01, moments=None))
    _steps(reference, torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=1e-4))
    for mine, theirs in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)


def test_with_server_moments_a_step_mixes_them_with_the_gradient_and_reports_it():
    layer, named = _named(0)
    moments = {}
    for name, parameter in named:
        moments[f"m/{name}"] = torch.full_like(parameter, 0.5)
        moments[f"v/{name}"] = torch.full_like(parameter, 4.0)
    before = {name: parameter.detach().clone() for name, parameter in named}
    optimiser = ServerMomentsAdam(named, lr=0.1, moments=moments, beta1=0.9, weight_decay=0.0)
    optimiser.zero_grad()
    layer(torch.ones(1, 3)).sum().backward()
    grads = {name: parameter.grad.clone() for name, parameter in named}
    optimiser.step()
    for name, parameter in named:
        expected = before[name] - 0.1 * (0.9 * 0.5 + 0.1 * grads[name]) / (2.0 + 1e-8)
        torch.testing.assert_close(parameter.detach(), expected)
        assert moments[f"m/{name}"].eq(0.5).all()  # held fixed
    report = optimiser.report()
    torch.testing.assert_close(report["g/weight"].numpy(), grads["weight"].numpy())
    torch.testing.assert_close(report["g2/bias"].numpy(), (grads["bias"] ** 2).numpy())


def test_server_moments_must_cover_every_trained_parameter():
    _, named = _named(0)
    with pytest.raises(ValueError, match="lack parameters"):
        ServerMomentsAdam(named, lr=0.1, moments={"m/weight": torch.zeros(2, 3)})
