import numpy as np
import pytest

from fedcore.shortfall import logit_parts, shortfall_by_part


def grid(n_districts=30, n_windows=40):
    district, window = np.meshgrid(np.arange(n_districts), np.arange(n_windows), indexing="ij")
    return district.ravel(), window.ravel()


def double_centred(values):
    """A (district, window) table with zero mean in every row and column."""
    return values - values.mean(1, keepdims=True) - values.mean(0, keepdims=True) + values.mean()


def sigmoid(logits):
    return 1 / (1 + np.exp(-logits))


def test_parts_add_up_to_the_logits_even_with_missing_cells():
    district, window = grid()
    keep = np.random.default_rng(0).random(len(district)) > 0.3
    probabilities = np.random.default_rng(1).uniform(0.01, 0.99, (keep.sum(), 2))
    parts = logit_parts(probabilities, district[keep], window[keep])
    total = parts["mean"] + parts["district"] + parts["time"] + parts["local"]
    np.testing.assert_allclose(total, np.log(probabilities / (1 - probabilities)), atol=1e-9)


def test_a_candidate_that_misreads_local_signal_recovers_with_the_reference_local_part():
    rng = np.random.default_rng(2)
    district, window = grid()
    n_districts, n_windows = district.max() + 1, window.max() + 1
    signal = rng.normal(size=(n_districts, 1))[district] + rng.normal(size=(n_windows, 1))[window]
    local = (
        1.5 * double_centred(rng.normal(size=(n_districts, n_windows)))[district, window][:, None]
    )
    reference_logits = -3 + signal + local
    counts = (rng.random((len(district), 1)) < sigmoid(reference_logits)).astype(float)
    # The candidate reads districts and times as the reference does, but not local
    # signal: its local part is noise, so its district and time parts are the same.
    noise = double_centred(rng.normal(size=(n_districts, n_windows)))
    candidate_logits = reference_logits - local + noise[district, window][:, None]

    scores = shortfall_by_part(
        counts, sigmoid(reference_logits), sigmoid(candidate_logits), district, window, ["x"]
    )

    assert scores["candidate"]["auprc-x"] < scores["reference"]["auprc-x"] - 0.05
    assert scores["with reference local"]["auprc-x"] == pytest.approx(
        scores["reference"]["auprc-x"]
    )
    for part in ("district", "time"):
        assert scores[f"with reference {part}"]["auprc-x"] == pytest.approx(
            scores["candidate"]["auprc-x"]
        )
