"""MimeLite: sites step with Adam moments the server holds (Karimireddy et al., "Mime", 2020).

A site that starts a fresh AdamW every round moves every weight by about ``lr``
on its first steps, whatever the gradient, and each site's moments see only its
own skewed slice; averaged over sites, that noise and drift leave the global
model short of what centralised Adam reaches on the pooled data. Here the
server keeps one pair of Adam moments for the whole federation and sends them
(bias-corrected) with every training message; a site steps with them held
fixed, mixing in its own gradient as Adam's first moment would
(``beta1 * m + (1 - beta1) * g``, scaled by ``sqrt(v)``), and reports the mean
and mean square of the (clipped) gradients it took. The server then moves the
moments once a round from the example-weighted means of those reports, so the
moments follow the pooled objective rather than any one site's.

In round 1, before any report, sites run their own fresh Adam and report
their gradients as in every round. The moments are server state: a checkpoint
holds them, and a resumed run continues with them.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from fedcore.federation.aggregation import SiteReply, record_problem

MOMENTS_KEY = "server-moments"
GRADIENTS_KEY = "gradient-moments"
EPS = 1e-8


class ServerMoments:
    """The federation's Adam moments, moved once a round from the sites' gradient reports.

    Args:
        keys: Names of the trainable parameters.
        beta1: Decay of the first moment per round.
        beta2: Decay of the second moment per round.
    """

    def __init__(self, keys: list[str], beta1: float, beta2: float) -> None:
        self.keys = list(keys)
        self.beta1, self.beta2 = beta1, beta2
        self.first: dict[str, np.ndarray] = {}
        self.second: dict[str, np.ndarray] = {}
        self.rounds = 0

    def record(self) -> ArrayRecord | None:
        """Bias-corrected moments for the sites, ``m/<key>`` and ``v/<key>``; None before any."""
        if self.rounds == 0:
            return None
        m_scale = 1 / (1 - self.beta1**self.rounds)
        v_scale = 1 / (1 - self.beta2**self.rounds)
        arrays = {}
        for key in self.keys:
            arrays[f"m/{key}"] = Array((self.first[key] * m_scale).astype(np.float32))
            arrays[f"v/{key}"] = Array((self.second[key] * v_scale).astype(np.float32))
        return ArrayRecord(arrays)

    def expected_report(self, shapes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What a site's gradient report must look like, from the round's arrays."""
        return {f"{part}/{key}": shapes[key] for key in self.keys for part in ("g", "g2")}

    def reply_problem(self, reply: SiteReply, shapes: dict[str, np.ndarray]) -> str | None:
        """Why a reply's gradient report cannot be used, or None."""
        expected = self.expected_report(shapes)
        squares = {key for key in expected if key.startswith("g2/")}
        return record_problem(reply, GRADIENTS_KEY, expected, non_negative=squares)

    def update(self, replies: list[SiteReply]) -> None:
        """Move the moments by the example-weighted mean of the reports the replies carry."""
        replies = [reply for reply in replies if GRADIENTS_KEY in reply.records]
        weights = np.array([reply.examples for reply in replies])
        if not len(replies) or weights.sum() <= 0:
            return
        weights = weights / weights.sum()
        reports = [reply.records[GRADIENTS_KEY] for reply in replies]
        for key in self.keys:
            mean = sum(w * r[f"g/{key}"] for w, r in zip(weights, reports, strict=True))
            square = sum(w * r[f"g2/{key}"] for w, r in zip(weights, reports, strict=True))
            first = self.first.get(key, np.zeros_like(mean))
            second = self.second.get(key, np.zeros_like(square))
            self.first[key] = (self.beta1 * first + (1 - self.beta1) * mean).astype(np.float32)
            self.second[key] = (self.beta2 * second + (1 - self.beta2) * square).astype(np.float32)
        self.rounds += 1

    def state_arrays(self) -> dict[str, np.ndarray]:
        """``m/<key>``, ``v/<key>`` and ``rounds`` for a checkpoint (empty before any report)."""
        if self.rounds == 0:
            return {}
        out = {"rounds": np.array(self.rounds)}
        for key in self.keys:
            out[f"m/{key}"] = self.first[key]
            out[f"v/{key}"] = self.second[key]
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what `state_arrays` wrote (nothing: no round has reported yet)."""
        if not arrays:
            return
        self.rounds = int(np.asarray(arrays["rounds"]).ravel()[0])
        self.first = {key: arrays[f"m/{key}"] for key in self.keys}
        self.second = {key: arrays[f"v/{key}"] for key in self.keys}


class ServerMomentsAdam(torch.optim.Optimizer):
    """A site's Adam that steps with the server's moments, held fixed, and notes its gradients.

    With ``moments`` (from `ServerMoments.record`) each step is
    ``lr * (beta1 * m + (1 - beta1) * g) / (sqrt(v) + eps)`` plus AdamW's
    decoupled weight decay; without (round 1) it is a fresh Adam. Either way
    `report` gives the mean and mean square of the gradients it stepped on.

    Args:
        named: ``(name, parameter)`` of the trainable parameters.
        lr: Learning rate.
        moments: Bias-corrected server moments by ``m/<name>``, ``v/<name>``, or None.
        beta1: First-moment mixing (and the fresh Adam's decay).
        beta2: The fresh Adam's second-moment decay.
        weight_decay: Decoupled weight decay, as the sites' AdamW.
    """

    def __init__(
        self,
        named: list[tuple[str, torch.nn.Parameter]],
        lr: float,
        moments: dict[str, torch.Tensor] | None,
        beta1: float = 0.9,
        beta2: float = 0.999,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__([p for _, p in named], {"lr": lr, "weight_decay": weight_decay})
        self.names = [name for name, _ in named]
        if moments is not None:
            missing = [n for n in self.names if f"m/{n}" not in moments or f"v/{n}" not in moments]
            if missing:
                raise ValueError(f"the server moments lack parameters {missing[:3]}")
        self.moments = moments
        self.beta1, self.beta2 = beta1, beta2
        self.sums = {name: torch.zeros_like(p) for name, p in named}
        self.squares = {name: torch.zeros_like(p) for name, p in named}
        self.steps = 0

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer.step
        self.steps += 1
        group = self.param_groups[0]
        lr, decay = group["lr"], group["weight_decay"]
        for name, parameter in zip(self.names, group["params"], strict=True):
            if parameter.grad is None:
                continue
            grad = parameter.grad
            self.sums[name] += grad
            self.squares[name] += grad * grad
            if self.moments is not None:
                first = self.beta1 * self.moments[f"m/{name}"] + (1 - self.beta1) * grad
                second = self.moments[f"v/{name}"]
            else:
                state = self.state[parameter]
                if not state:
                    state["m"], state["v"] = torch.zeros_like(grad), torch.zeros_like(grad)
                state["m"].mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
                state["v"].mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
                first = state["m"] / (1 - self.beta1**self.steps)
                second = state["v"] / (1 - self.beta2**self.steps)
            parameter.mul_(1 - lr * decay)
            parameter.sub_(lr * first / (second.sqrt() + EPS))

    def report(self) -> ArrayRecord:
        """Mean (``g/<name>``) and mean square (``g2/<name>``) of the gradients stepped on."""
        steps = max(self.steps, 1)
        arrays = {}
        for name in self.names:
            arrays[f"g/{name}"] = Array((self.sums[name] / steps).numpy())
            arrays[f"g2/{name}"] = Array((self.squares[name] / steps).numpy())
        return ArrayRecord(arrays)
