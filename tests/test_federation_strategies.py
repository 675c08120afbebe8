"""Aggregation rules and strategy state on hand-made arrays: weights, partial labels, SCAFFOLD."""

import json

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedcore.federation.aggregation import SCALES_KEY, decode_reply, label_weights
from fedcore.federation.checkpoints import (
    Checkpoint,
    latest_checkpoint,
    save_checkpoint,
    trim_metrics_after,
)
from fedcore.federation.settings import FederationSettings
from fedcore.federation.site_hooks import adamw_gradient_scales
from fedcore.federation.strategies import (
    CONTROL_DELTA_KEY,
    CONTROL_KEY,
    KizashiFedAdam,
    KizashiFedAvg,
    KizashiFedAvgM,
    KizashiFedProx,
    KizashiFedYogi,
    Scaffold,
    average_present_metrics,
    make_strategy,
)
from tests.federation_helpers import DirectGrid, set_task_identity

HEADS = ["heads.weight", "heads.bias"]
N_DOMAINS = 2  # head rows: [d0 logit, d0 rate, d1 logit, d1 rate]


@pytest.fixture(autouse=True)
def task_identity():
    set_task_identity()


def _arrays(body: float, head: list[float]) -> dict[str, np.ndarray]:
    head = np.asarray(head, np.float32)
    return {
        "body": np.full(3, body, np.float32),
        "heads.weight": np.repeat(head[:, None], 2, axis=1),
        "heads.bias": head.copy(),
    }


def _reply(arrays: dict, examples: int, labels: list[int], node: int, extra=None) -> Message:
    request = Message(RecordDict(), dst_node_id=node, message_type="train")
    metrics = {
        "num-examples": examples,
        "train-loss": 1.0,
        "domain-labels": labels,
        "site-index": node,
        "val-auprc-crowd": 0.5,
    }
    content = RecordDict(
        {
            "arrays": ArrayRecord({key: Array(value) for key, value in arrays.items()}),
            "metrics": MetricRecord(metrics),
        }
    )
    for key, value in (extra or {}).items():
        content[key] = value
    return Message(content=content, reply_to=request)


def _start(strategy, current: dict):
    grid = DirectGrid(lambda message, context: None, n_sites=3)
    record = ArrayRecord({key: Array(value) for key, value in current.items()})
    strategy.configure_train(1, record, ConfigRecord(), grid)
    return grid


CURRENT = _arrays(0.0, [9.0, 9.0, 7.0, 7.0])


def _two_sites():
    # site A: 1 example, labels both domains; site B: 3 examples, no labels of domain 1
    a = _reply(_arrays(1.0, [1.0, 1.0, 1.0, 1.0]), 1, [1, 1], 1000)
    b = _reply(_arrays(5.0, [5.0, 5.0, 5.0, 5.0]), 3, [3, 0], 1001)
    return a, b


def test_fedavg_weights_by_examples_and_heads_by_labels():
    strategy = KizashiFedAvg(
        head_keys=HEADS, n_domains=N_DOMAINS, min_train_nodes=1, min_available_nodes=1
    )
    _start(strategy, CURRENT)
    arrays, metrics = strategy.aggregate_train(1, list(_two_sites()))
    out = {key: array.numpy() for key, array in arrays.items()}
    assert out["body"] == pytest.approx([4.0] * 3)  # (1*1 + 3*5) / 4
    # domain 0: both label it (1 and 3 labels) -> 4.0; domain 1: only A -> 1.0
    assert out["heads.bias"] == pytest.approx([4.0, 4.0, 1.0, 1.0])
    assert out["heads.weight"][:, 1] == pytest.approx([4.0, 4.0, 1.0, 1.0])
    assert metrics["train-loss"] == pytest.approx(1.0)


def test_domain_nobody_labels_keeps_its_head_rows():
    a = _reply(_arrays(1.0, [1.0, 1.0, 1.0, 1.0]), 2, [2, 0], 1000)
    b = _reply(_arrays(3.0, [3.0, 3.0, 3.0, 3.0]), 2, [2, 0], 1001)
    strategy = KizashiFedAvg(
        head_keys=HEADS, n_domains=N_DOMAINS, min_train_nodes=1, min_available_nodes=1
    )
    _start(strategy, CURRENT)
    arrays, _ = strategy.aggregate_train(1, [a, b])
    assert arrays["heads.bias"].numpy() == pytest.approx([2.0, 2.0, 7.0, 7.0])


def test_errors_and_empty_sites_are_left_out():
    a, b = _two_sites()
    empty = _reply(_arrays(100.0, [100.0] * 4), 0, [0, 0], 1002)
    from flwr.app import Error

    failed = Message(Error(code=2, reason="boom"), reply_to=Message(RecordDict(), 1003, "train"))
    strategy = KizashiFedProx(
        head_keys=HEADS,
        n_domains=N_DOMAINS,
        proximal_mu=0.1,
        min_train_nodes=1,
        min_available_nodes=1,
    )
    _start(strategy, CURRENT)
    arrays, _ = strategy.aggregate_train(1, [a, failed, empty, b])
    assert arrays["body"].numpy() == pytest.approx([4.0] * 3)


def test_label_weighting_rejects_replies_without_counts():
    reply = _reply(_arrays(1.0, [1.0] * 4), 1, [1], 1000)
    with pytest.raises(ValueError, match="domain-labels for 2 domains"):
        label_weights([decode_reply(reply.content)], CURRENT, HEADS, N_DOMAINS)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda arrays, metrics: arrays.pop("body"), "missing ['body']"),
        (lambda arrays, metrics: arrays.update(extra=np.zeros(1)), "unexpected ['extra']"),
        (lambda arrays, metrics: arrays.update(body=np.zeros(4)), "shape (4,), not (3,)"),
        (lambda arrays, metrics: arrays.update(body=np.full(3, np.inf)), "non-finite"),
        (lambda arrays, metrics: metrics.update({"num-examples": -1}), "not a count"),
        (lambda arrays, metrics: metrics.update({"domain-labels": [1]}), "hold 2 counts"),
        (lambda arrays, metrics: metrics.update({"domain-labels": [9, 0]}), "between 0 and"),
        (lambda arrays, metrics: metrics.update({"domain-labels": [-1, 0]}), "between 0 and"),
    ],
)
def test_a_reply_that_cannot_be_averaged_is_named(change, problem):
    arrays, metrics = _arrays(1.0, [1.0] * 4), {"num-examples": 2, "domain-labels": [2, 1]}
    strategy = KizashiFedAvg(head_keys=HEADS, n_domains=N_DOMAINS)
    _start(strategy, CURRENT)
    assert strategy.reply_problem(decode_reply(_reply(arrays, 2, [2, 1], 1000).content)) is None
    change(arrays, metrics)
    reply = _reply(arrays, metrics["num-examples"], metrics["domain-labels"], 1000)
    assert problem in strategy.reply_problem(decode_reply(reply.content))


def test_bytes_that_are_no_array_are_named_not_raised_from_the_mean():
    reply, _ = _two_sites()
    reply.content["arrays"]["body"] = Array(
        dtype="float32", shape=(3,), stype="numpy.ndarray", data=b"not an npy file"
    )
    with pytest.raises(ValueError, match="arrays/body cannot be read"):
        decode_reply(reply.content)


def test_a_scaffold_reply_needs_a_control_delta_of_the_control_s_shape():
    strategy, _ = _scaffold_in_round_1(n_sites=2)
    reply, _ = _two_sites()
    assert "no 'scaffold-control-delta'" in strategy.reply_problem(decode_reply(reply.content))
    reply.content[CONTROL_DELTA_KEY] = ArrayRecord({"body": Array(np.zeros(2, np.float32))})
    assert "shape (2,), not (3,)" in strategy.reply_problem(decode_reply(reply.content))
    reply.content[CONTROL_DELTA_KEY] = ArrayRecord({"body": Array(np.zeros(3, np.float32))})
    assert strategy.reply_problem(decode_reply(reply.content)) is None


def _with_encoders(reply: Message, image: float, text: float, present: list[int]) -> Message:
    """The reply with image and text encoder arrays and its modality counts."""
    reply.content["arrays"]["image.w"] = Array(np.full(2, image, np.float32))
    reply.content["arrays"]["text.w"] = Array(np.full(2, text, np.float32))
    reply.content["metrics"]["modality-samples"] = present
    return reply


ENCODERS = {"image": ["image.w"], "text": ["text.w"]}


def test_modality_weighting_averages_an_encoder_over_the_sites_that_had_the_modality():
    a, b = _two_sites()
    # A (1 example) has a camera and moved the image encoder to 2; B (3) has none
    # and returns it unchanged (0). Both have reports.
    replies = [_with_encoders(a, 2.0, 1.0, [1, 1]), _with_encoders(b, 0.0, 5.0, [0, 3])]
    current = {**CURRENT, "image.w": np.zeros(2, np.float32), "text.w": np.zeros(2, np.float32)}
    means = {}
    for weighted in (False, True):
        strategy = make_strategy(
            FederationSettings(
                modality_weighting=weighted, min_train_sites=1, domains="traffic,crowd"
            ),
            HEADS,
            [],
            ENCODERS,
        )
        _start(strategy, current)
        arrays, _ = strategy.aggregate_train(1, [_copy(reply) for reply in replies])
        means[weighted] = {key: arrays[key].numpy()[0] for key in ("image.w", "text.w", "body")}
    assert means[False]["image.w"] == pytest.approx(0.5)  # (1*2 + 3*0) / 4: diluted
    assert means[True]["image.w"] == pytest.approx(2.0)  # only A trained it
    assert means[True]["text.w"] == pytest.approx(means[False]["text.w"]) == pytest.approx(4.0)
    assert means[True]["body"] == pytest.approx(4.0)


def test_an_encoder_no_site_trained_keeps_its_weights():
    a, b = _two_sites()
    replies = [_with_encoders(a, 2.0, 1.0, [0, 1]), _with_encoders(b, 3.0, 5.0, [0, 3])]
    current = {**CURRENT, "image.w": np.full(2, 7.0, np.float32), "text.w": np.zeros(2, np.float32)}
    strategy = KizashiFedAvg(
        head_keys=HEADS,
        n_domains=N_DOMAINS,
        encoder_keys=ENCODERS,
        min_train_nodes=1,
        min_available_nodes=1,
    )
    _start(strategy, current)
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays["image.w"].numpy() == pytest.approx([7.0, 7.0])


def _copy(reply: Message) -> Message:
    """A reply whose records aggregation may rewrite without touching the original."""
    arrays = ArrayRecord(
        {key: Array(a.numpy().copy()) for key, a in reply.content["arrays"].items()}
    )
    content = RecordDict(
        {"arrays": arrays, "metrics": MetricRecord(dict(reply.content["metrics"]))}
    )
    node = int(reply.metadata.src_node_id)
    return Message(content=content, reply_to=Message(RecordDict(), node, "train"))


@pytest.mark.parametrize("kind", [KizashiFedAdam, KizashiFedYogi])
def test_adaptive_strategies_resume_with_their_moments(kind):
    def fresh():
        return kind(
            head_keys=HEADS, n_domains=N_DOMAINS, min_train_nodes=1, min_available_nodes=1, eta=0.1
        )

    first = fresh()
    _start(first, CURRENT)
    after_one, _ = first.aggregate_train(1, list(_two_sites()))
    state = first.state_arrays()
    assert {key.split("/")[0] for key in state} == {"m_t", "v_t"}
    resumed = fresh()
    resumed.load_state_arrays(state)
    current = {key: array.numpy() for key, array in after_one.items()}
    _start(first, current)
    _start(resumed, current)
    expected, _ = first.aggregate_train(2, list(_two_sites()))
    got, _ = resumed.aggregate_train(2, list(_two_sites()))
    for key in expected:
        assert got[key].numpy() == pytest.approx(expected[key].numpy())
    assert not np.allclose(expected["body"].numpy(), current["body"])


def test_fedavgm_steps_on_momentum_of_the_averaged_update_and_resumes():
    def fresh():
        return KizashiFedAvgM(
            head_keys=HEADS,
            n_domains=N_DOMAINS,
            server_lr=0.5,
            server_momentum=0.9,
            min_train_nodes=1,
            min_available_nodes=1,
        )

    first = fresh()
    _start(first, CURRENT)
    after_one, _ = first.aggregate_train(1, list(_two_sites()))
    # round 1: g = 0 - 4 = -4 (FedAvg of the bodies is 4), m = g, w = 0 - 0.5 * -4
    assert after_one["body"].numpy() == pytest.approx([2.0] * 3)
    assert first.state_arrays()["momentum/body"] == pytest.approx([-4.0] * 3)
    resumed = fresh()
    resumed.load_state_arrays(first.state_arrays())
    current = {key: array.numpy() for key, array in after_one.items()}
    for strategy in (first, resumed):
        _start(strategy, current)
        arrays, _ = strategy.aggregate_train(2, list(_two_sites()))
        # round 2: g = 2 - 4 = -2, m = 0.9 * -4 + -2 = -5.6, w = 2 - 0.5 * -5.6
        assert arrays["body"].numpy() == pytest.approx([4.8] * 3)
    # domain 1's rows (only site A labels it: mean 1.0) ride the same momentum:
    # round 1: 7 - 0.5 * 6 = 4; round 2: m = 0.9 * 6 + 3 = 8.4, 4 - 0.5 * 8.4
    assert arrays["heads.bias"].numpy()[2:] == pytest.approx([-0.2, -0.2])


def _scaffold_in_round_1(n_sites: int, server_lr: float = 1.0) -> tuple[Scaffold, list[Message]]:
    """A SCAFFOLD strategy (control on ``body``) that has sent round 1 from ``CURRENT``."""
    strategy = Scaffold(
        control_keys=["body"],
        server_lr=server_lr,
        head_keys=HEADS,
        n_domains=N_DOMAINS,
        min_train_nodes=1,
        min_available_nodes=1,
    )
    grid = DirectGrid(lambda message, context: None, n_sites=n_sites)
    record = ArrayRecord({key: Array(value) for key, value in CURRENT.items()})
    return strategy, list(strategy.configure_train(1, record, ConfigRecord(), grid))


def test_scaffold_sends_control_and_moves_it_by_mean_delta():
    strategy, messages = _scaffold_in_round_1(n_sites=4)
    assert all(CONTROL_KEY in message.content for message in messages)
    assert messages[0].content[CONTROL_KEY]["body"].numpy() == pytest.approx([0.0] * 3)
    a, b = _two_sites()
    for reply, delta in ((a, 1.0), (b, 3.0)):
        reply.content[CONTROL_DELTA_KEY] = ArrayRecord(
            {"body": Array(np.full(3, delta, np.float32))}
        )
    arrays, _ = strategy.aggregate_train(1, [a, b])
    assert arrays["body"].numpy() == pytest.approx([4.0] * 3)
    # c += |S|/N * mean(delta) = 2/4 * 2.0
    assert strategy.control["body"] == pytest.approx([1.0] * 3)
    restored = Scaffold(control_keys=["body"], head_keys=HEADS, n_domains=N_DOMAINS)
    restored.load_state_arrays(strategy.state_arrays())
    assert restored.control["body"] == pytest.approx([1.0] * 3)


def test_scaffold_global_step_scales_the_averaged_update_of_trainable_arrays():
    """eta_g = 2 doubles the move from the round's start; arrays without a control stay averaged."""

    def aggregated(server_lr: float) -> ArrayRecord:
        strategy, _ = _scaffold_in_round_1(n_sites=2, server_lr=server_lr)
        return strategy.aggregate_train(1, list(_two_sites()))[0]

    averaged, moved = aggregated(1.0), aggregated(2.0)
    assert averaged["body"].numpy() == pytest.approx([4.0] * 3)
    assert moved["body"].numpy() == pytest.approx([8.0] * 3)  # 0 + 2 * (4 - 0)
    for key in HEADS:
        assert moved[key].numpy() == pytest.approx(averaged[key].numpy())
    settings = FederationSettings(strategy="scaffold")
    assert make_strategy(settings, HEADS, []).server_lr == 1.0
    assert make_strategy(settings.with_updates(server_lr=1.5), HEADS, []).server_lr == 1.5


def test_make_strategy_uses_flowers_classes_with_the_run_knobs():
    from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, FedYogi

    def make(**changes):
        return make_strategy(FederationSettings(**changes), HEADS, ["body"])

    assert isinstance(make(strategy="fedavg"), FedAvg)
    prox = make(strategy="fedprox", proximal_mu=0.3)
    assert isinstance(prox, FedProx) and prox.proximal_mu == 0.3
    adam = make(strategy="fedadam", server_lr=0.05, server_tau=0.01)
    assert isinstance(adam, FedAdam) and adam.eta == 0.05 and adam.tau == 0.01
    assert isinstance(make(strategy="fedyogi"), FedYogi)
    avgm = make(strategy="fedavgm", server_lr=0.7, server_momentum=0.5)
    assert isinstance(avgm, KizashiFedAvgM)
    assert (avgm.server_lr, avgm.server_momentum) == (0.7, 0.5)
    assert isinstance(make(strategy="scaffold"), Scaffold)
    assert type(make(strategy="fedbn")) is KizashiFedAvg
    assert make(min_train_sites=7).min_train_nodes == 7


def test_evaluation_metrics_are_averaged_where_present():
    contents = [
        RecordDict({"metrics": MetricRecord({"num-examples": 1, "loss": 1.0, "auprc-crowd": 0.2})}),
        RecordDict({"metrics": MetricRecord({"num-examples": 3, "loss": 2.0})}),
    ]
    averaged = average_present_metrics(contents, "num-examples")
    assert averaged["loss"] == pytest.approx(1.75)
    assert averaged["auprc-crowd"] == pytest.approx(0.2)


def test_checkpoints_are_whole_pruned_and_trim_later_metrics(tmp_path):
    for server_round in (1, 2, 3):
        save_checkpoint(
            tmp_path,
            Checkpoint(
                server_round,
                {"w": np.full(2, server_round, np.float32)},
                {"m_t/w": np.zeros(2, np.float32)},
                {"strategy": "fedadam"},
            ),
            keep=2,
        )
    (tmp_path / "checkpoints" / ".round-0004.partial").mkdir()  # a write cut short
    found = latest_checkpoint(tmp_path)
    assert found.round == 3 and found.model["w"] == pytest.approx([3.0, 3.0])
    assert set(found.strategy) == {"m_t/w"} and found.facts["strategy"] == "fedadam"
    assert sorted(
        p.name for p in (tmp_path / "checkpoints").iterdir() if not p.name.startswith(".")
    ) == ["round-0002", "round-0003"]
    lines = [
        {"kind": "site", "round": 3},
        {"kind": "round", "round": 3},
        {"kind": "site", "round": 4},
        {"kind": "round-failed", "round": 4},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"kind": "si'
    (tmp_path / "metrics.jsonl").write_text(text)
    assert trim_metrics_after(tmp_path, 3) == 2
    kept = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert kept == lines[:2] + lines[3:]
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_site_learning_rate_decays_over_the_rounds_unless_constant():
    from fedcore.federation.settings import FederationSettings

    cosine = FederationSettings(lr=0.01, num_rounds=4)
    rates = [cosine.site_lr(r) for r in (1, 2, 3, 4)]
    assert rates[0] == 0.01
    assert all(a > b > 0 for a, b in zip(rates, rates[1:], strict=False))
    constant = cosine.with_updates(lr_schedule="constant")
    assert {constant.site_lr(r) for r in (1, 4)} == {0.01}
    with pytest.raises(ValueError, match="lr-schedule"):
        cosine.with_updates(lr_schedule="step")


def test_small_sites_run_more_epochs_to_reach_the_local_steps():
    from fedcore.federation.settings import FederationSettings

    settings = FederationSettings(batch_size=10, local_epochs=1, local_steps=20)
    assert settings.site_epochs(1000) == 1  # 100 steps an epoch already
    assert settings.site_epochs(50) == 4  # 5 steps an epoch
    assert settings.with_updates(local_steps=0).site_epochs(50) == 1


def _with_scales(reply: Message, scales: dict[str, float | list[float]]) -> Message:
    """The reply with ``gradient-scales``: a constant per array, or one per head row."""
    arrays = {}
    for key, array in reply.content["arrays"].items():
        shape = array.numpy().shape
        value = np.asarray(scales[key], np.float32)
        value = value.reshape((-1,) + (1,) * (len(shape) - 1)) if value.ndim else value
        arrays[key] = Array(np.ascontiguousarray(np.broadcast_to(value, shape)))
    reply.content[SCALES_KEY] = ArrayRecord(arrays)
    return reply


def _gradient_weighted(replies: list[Message]) -> dict[str, np.ndarray]:
    strategy = make_strategy(
        FederationSettings(gradient_weighting=True, min_train_sites=1, domains="traffic,crowd"),
        HEADS,
        list(CURRENT),
    )
    _start(strategy, CURRENT)
    for reply in replies:
        assert strategy.reply_problem(decode_reply(reply.content)) is None
    arrays, _ = strategy.aggregate_train(1, replies)
    return {key: array.numpy() for key, array in arrays.items()}


def test_gradient_weighting_weighs_each_weight_by_examples_times_gradient_scale():
    a, b = _two_sites()
    # A: 1 example, gradient scale 6 on the body; B: 3 examples, scale 1. B never
    # had a gradient on domain 1's head rows (no labels), A had on all rows.
    a = _with_scales(a, {"body": 6.0, "heads.weight": 1.0, "heads.bias": 1.0})
    b = _with_scales(b, {"body": 1.0, **dict.fromkeys(HEADS, [2.0, 2.0, 0.0, 0.0])})
    out = _gradient_weighted([a, b])
    assert out["body"] == pytest.approx([(1 * 6 * 1.0 + 3 * 1 * 5.0) / (6 + 3)] * 3)
    # domain 0: (1*1*1 + 3*2*5) / (1 + 6); domain 1: A alone, as label weighting gives
    assert out["heads.bias"] == pytest.approx([31 / 7, 31 / 7, 1.0, 1.0])
    assert out["heads.weight"][:, 0] == pytest.approx([31 / 7, 31 / 7, 1.0, 1.0])


def test_a_weight_no_site_had_a_gradient_for_keeps_its_value():
    a, b = _two_sites()
    zero_body = {"body": 0.0, "heads.weight": 1.0, "heads.bias": 1.0}
    out = _gradient_weighted([_with_scales(a, zero_body), _with_scales(b, zero_body)])
    assert out["body"] == pytest.approx(CURRENT["body"])


def test_gradient_weighting_needs_every_reply_s_scales():
    a, b = _two_sites()
    strategy = make_strategy(
        FederationSettings(gradient_weighting=True, min_train_sites=1, domains="traffic,crowd"),
        HEADS,
        list(CURRENT),
    )
    _start(strategy, CURRENT)
    assert "gradient-scales" in strategy.reply_problem(decode_reply(a.content))
    negative = {"body": -1.0, "heads.weight": 1.0, "heads.bias": 1.0}
    assert "negative" in strategy.reply_problem(decode_reply(_with_scales(b, negative).content))
    with pytest.raises(ValueError, match="gradient-weighting"):
        FederationSettings(gradient_weighting=True, site_optimiser="sgd")


def test_a_site_reports_the_root_mean_square_of_the_gradients_its_adamw_stepped_on():
    layer = torch.nn.Linear(3, 2)
    optimiser = torch.optim.AdamW(layer.parameters(), lr=0.01)
    squares = [torch.zeros_like(p) for p in layer.parameters()]
    for step in range(2):
        optimiser.zero_grad()
        layer(torch.full((1, 3), float(step + 1))).sum().backward()
        squares = [s + p.grad**2 for s, p in zip(squares, layer.parameters(), strict=True)]
        optimiser.step()
    scales = adamw_gradient_scales(optimiser, list(layer.named_parameters()))
    beta2 = 0.999  # AdamW's; its mean weighs the later step by 1 / beta2
    for (name, _), square in zip(layer.named_parameters(), squares, strict=True):
        assert scales[name] == pytest.approx(np.sqrt(square.numpy() / 2), rel=2 * (1 - beta2))
