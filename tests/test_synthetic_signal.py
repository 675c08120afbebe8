"""The synthetic city's risks have known causes, each seen by some modalities only.

For every modality a hidden factor is chosen that, by design, only it sees (where
the city lacks the device that would also see it); a logistic probe on all
modalities must then beat a probe on all the others. Strong causes are seen twice
where the devices stand: a probe without reports still finds festivals where a
camera watches, and one without static attributes still finds floods where a
water gauge stands. And
risk must spread along the district graph: a neighbour's festival raises a
district's crowd events only when spill-over is on.
"""

import numpy as np
import pandas as pd
import pytest

from datasets import RiskSamples, window_starts
from datasets.synthetic import make_city_and_oracle
from datasets.synthetic_clock import local_hour
from tests.modality_probes import hashed_words, modality_features, probe_auroc

N_DISTRICTS, DAYS = 60, 16


@pytest.fixture(scope="module")
def world():
    city, oracle = make_city_and_oracle(n_districts=N_DISTRICTS, days=DAYS, seed=7)
    starts = window_starts(city, stride_hours=3, lookback_hours=24, horizon_hours=6)
    empty = {"none": np.zeros((N_DISTRICTS, len(starts)))}
    samples = RiskSamples(city, starts, empty, hashed_words, lookback_hours=24)
    return city, oracle, samples, modality_features(samples, city)


def _hidden_targets(city, oracle, samples):
    """Per modality: (label, samples to use) for the factor only it should see."""
    district = samples.district
    position = oracle.times.get_indexer(samples.starts)[samples.window]

    def in_horizon(name):
        values = oracle.factors[name]
        cumulative = np.concatenate([np.zeros((len(values), 1)), np.cumsum(values, 1)], 1)
        end = np.minimum(position + 6, values.shape[1])
        return cumulative[district, end] - cumulative[district, position]

    hour = local_hour(samples.starts)[samples.window]
    camera = city.districts["has_camera"].to_numpy()[district]
    counter = city.districts["has_pedestrian_counter"].to_numpy()[district]
    gauge = city.districts["has_water_gauge"].to_numpy()[district]
    crowd = oracle.factors["crowd"][district, position - 1]
    usual = pd.Series(crowd).groupby([district, hour]).transform("mean").to_numpy()
    unusual_crowd = crowd - usual
    temperature = oracle.factors["temperature"][district, position - 1]
    flood = in_horizon("flood_rate")
    everywhere = np.ones(len(district), dtype=bool)
    unwatched = camera & ~counter
    return {
        # A festival in the coming hours where no camera sees the stalls: only reports.
        "text": (in_horizon("announced") > 0, (hour >= 12) & (hour <= 20) & ~camera),
        # Unusual crowding where no pedestrian counter stands: only cameras see it.
        "image": (unusual_crowd > np.quantile(unusual_crowd[unwatched], 0.75), unwatched),
        # Heat: only the temperature sensors measure it.
        "sensor": (temperature > np.quantile(temperature, 0.75), everywhere),
        # Flooding needs rain (sensors) on low ground (static attributes) where no
        # water gauge sees the water pool.
        "static": (flood > np.quantile(flood[flood > 0], 0.5), ~gauge),
    }


@pytest.mark.parametrize("modality", ["text", "image", "sensor", "static"])
def test_each_modality_sees_what_the_others_cannot(world, modality):
    city, oracle, samples, features = world
    label, keep = _hidden_targets(city, oracle, samples)[modality]
    train = samples.window < len(samples.starts) * 0.6
    assert label[keep & ~train].any() and label[keep & train].any(), "a probe needs positives"
    together = np.concatenate(list(features.values()), axis=1)
    others = np.concatenate([f for name, f in features.items() if name != modality], axis=1)
    with_it = probe_auroc(together[keep], label[keep], train[keep])
    without_it = probe_auroc(others[keep], label[keep], train[keep])
    assert with_it >= 0.6
    assert with_it - without_it >= 0.04, (modality, with_it, without_it)


@pytest.mark.parametrize(
    ("cause", "without", "device"),
    [("text", "text", "has_camera"), ("static", "static", "has_water_gauge")],
)
def test_strong_causes_are_seen_twice_where_the_devices_stand(world, cause, without, device):
    city, oracle, samples, features = world
    label, _ = _hidden_targets(city, oracle, samples)[cause]
    hour = local_hour(samples.starts)[samples.window]
    watched = city.districts[device].to_numpy()[samples.district]
    keep = watched & ((hour >= 12) & (hour <= 20) if cause == "text" else True)
    train = samples.window < len(samples.starts) * 0.6
    together = np.concatenate(list(features.values()), axis=1)
    others = np.concatenate([f for name, f in features.items() if name != without], axis=1)
    with_it = probe_auroc(together[keep], label[keep], train[keep])
    without_it = probe_auroc(others[keep], label[keep], train[keep])
    assert without_it >= 0.75 and with_it - without_it <= 0.05, (cause, with_it, without_it)


def _neighbour_festival_effect(spillover: float) -> float:
    """How much likelier a crowd event is in a quiet district while a neighbour holds a festival."""
    city, oracle = make_city_and_oracle(n_districts=200, days=14, seed=11, spillover=spillover)
    source, target = city.graph.edge_index.numpy()
    adjacency = np.zeros((len(city.districts),) * 2)
    adjacency[source, target] = 1
    festival = oracle.factors["festival"] > 0
    neighbour_festival = (adjacency @ festival) > 0
    events = city.events[city.events["domain"] == "crowd"]
    counts = np.zeros(festival.shape)
    row = {district: index for index, district in enumerate(city.district_ids)}
    hour = ((events["timestamp"] - oracle.times[0]) // pd.Timedelta(hours=1)).to_numpy()
    np.add.at(counts, (events["district_id"].map(row).to_numpy(), hour), 1)
    quiet = ~festival
    return counts[quiet & neighbour_festival].mean() / counts[quiet & ~neighbour_festival].mean()


def test_labels_depend_on_neighbours():
    with_spillover, without = _neighbour_festival_effect(0.3), _neighbour_festival_effect(0.0)
    assert with_spillover >= 3.0
    assert with_spillover >= 2 * without


def test_oracle_command_scores_the_ceiling(tmp_path):
    from typer.testing import CliRunner

    from pipelines.city_commands import city_app

    runner = CliRunner()
    made = runner.invoke(
        city_app, ["make", str(tmp_path / "city"), "--districts", "15", "--days", "6"]
    )
    assert made.exit_code == 0, made.output
    assert (tmp_path / "city" / "oracle.npz").exists()
    scored = runner.invoke(city_app, ["oracle", str(tmp_path / "city")])
    assert scored.exit_code == 0, scored.output
    assert "macro" in scored.output and "AUPRC" in scored.output
