import numpy as np
import pandas as pd
import pytest
import torch

from datasets import SAMPLE_KEYS, RiskSamples, collate_samples, temporal_split, window_starts
from domains import get_domain


def fake_embed(texts):
    return np.array([[len(text), text.count(" ")] for text in texts], dtype=np.float32).reshape(
        -1, 2
    )


@pytest.fixture(scope="module")
def samples(tiny_city):
    starts = window_starts(tiny_city, stride_hours=6, lookback_hours=24, horizon_hours=6)
    targets = {
        name: get_domain(name).targets(tiny_city.events, tiny_city.district_ids, starts)
        for name in ("traffic", "safety")
    }
    return RiskSamples(tiny_city, starts, targets, fake_embed, lookback_hours=24)


def test_sample_is_a_dict_with_fixed_keys(samples):
    sample = samples[0]
    assert set(sample) == set(SAMPLE_KEYS)
    assert sample["series"].shape == (24, 7)
    assert sample["series_time"].shape == (24,)
    assert float(sample["series_time"].max()) < 0  # the context lies before the window
    assert sample["image"].shape == (3, 16, 16)
    assert sample["targets"].shape == (2,)


def test_masks_follow_the_data(samples, tiny_city):
    has_camera = tiny_city.districts["has_camera"].to_numpy()[samples.district]
    image_mask = samples.frame_index >= 0
    assert not image_mask[~has_camera].any()
    assert image_mask[has_camera].mean() > 0.9
    no_counter = ~tiny_city.districts["has_pedestrian_counter"].to_numpy()[samples.district]
    pedestrians = samples.channels.index("pedestrian_count")
    assert not samples.series_mask[no_counter][..., pedestrians].any()


def test_text_holds_the_latest_reports_before_the_window(samples, tiny_city):
    index = int(np.flatnonzero(samples.text_count > 0)[0])
    start = samples.starts[samples.window[index]]
    district = tiny_city.district_ids[samples.district[index]]
    reports = tiny_city.reports
    mine = reports[
        (reports["district_id"] == district)
        & (reports["timestamp"] >= start - pd.Timedelta(hours=24))
        & (reports["timestamp"] < start)
    ].sort_values("timestamp")
    assert samples.text_count[index] == len(mine)
    latest = mine.tail(8)
    sample = samples[index]
    kept = sample["text_mask"].numpy()
    assert kept.sum() == len(latest)
    assert np.allclose(sample["text"].numpy()[kept], fake_embed(latest["text"].tolist()))
    ages = ((latest["timestamp"] - start) / pd.Timedelta(hours=1)).to_numpy()
    assert np.allclose(sample["text_time"].numpy()[kept], ages)
    assert (sample["text_time"].numpy()[kept] < 0).all()
    assert np.allclose(
        samples.pooled_text(np.array([index]))[0], fake_embed(latest["text"].tolist()).mean(0)
    )


def test_targets_match_domain_counts(samples, tiny_city):
    counts = get_domain("traffic").targets(tiny_city.events, tiny_city.district_ids, samples.starts)
    assert np.array_equal(samples.targets[:, 0], counts.ravel())


def test_temporal_split_keeps_horizons_apart(samples):
    split = temporal_split(samples.starts, horizon_hours=6)
    train, val, test = (samples.starts[split[k]] for k in ("train", "validation", "test"))
    assert len(train) and len(val) and len(test)
    assert train.max() + pd.Timedelta(hours=6) <= val.min()
    assert val.max() + pd.Timedelta(hours=6) <= test.min()


def test_collate_batches_samples_with_missing_modalities(samples):
    with_image = int(np.flatnonzero(samples.frame_index >= 0)[0])
    without_image = int(np.flatnonzero(samples.frame_index < 0)[0])
    batch = collate_samples([samples[with_image], samples[without_image]])
    assert batch["text"].shape == (2, 8, 2) and batch["text_mask"].shape == (2, 8)
    assert batch["image"].shape == (2, 3, 16, 16)
    assert batch["image_mask"].tolist() == [True, False]
    direct = samples.batch(np.array([with_image, without_image]))
    assert all(torch.equal(batch[key], direct[key]) for key in SAMPLE_KEYS)


def test_clock_says_the_local_hour_of_the_window(samples, tiny_city):
    from datasets.samples import local_clock

    starts = pd.DatetimeIndex(["2026-06-01T00:00Z", "2026-06-01T12:00Z"])
    clock = local_clock(starts, "Asia/Tokyo")  # 09:00 and 21:00 in Tokyo
    assert np.allclose(
        np.arctan2(clock[:, 0], clock[:, 1]) % (2 * np.pi) / (2 * np.pi) * 24, [9, 21]
    )
    assert samples[0]["clock"].shape == (4,)


def test_neighbour_context_is_the_weighted_mean_of_held_neighbours_reports(tiny_city):
    from datasets import window_starts

    starts = window_starts(tiny_city, 6, 24, 6)
    targets = {"traffic": np.zeros((len(tiny_city.districts), len(starts)))}
    everyone = RiskSamples(tiny_city, starts, targets, embed_texts=fake_embed)
    edges = tiny_city.graph.edge_index.numpy()
    weights = tiny_city.graph.edge_weight.numpy()
    district = int(edges[1][0])
    mine = edges[1] == district
    window = len(starts) - 1
    pooled = everyone.pooled_text().reshape(len(tiny_city.districts), len(starts), -1)
    expected = (weights[mine, None] * pooled[edges[0][mine], window]).sum(0) / weights[mine].sum()
    row = district * len(starts) + window
    assert np.allclose(everyone.neighbours[row, : everyone.text_dim], expected, atol=1e-5)
    assert everyone.neighbours[row, -1] == 1.0  # every neighbour's data is held
    assert everyone.neighbour_dim == everyone.neighbours.shape[1]

    # A site holding only this district sees no neighbour at all.
    alone = RiskSamples(
        tiny_city, starts, targets, embed_texts=fake_embed, districts=np.array([district])
    )
    assert np.all(alone.neighbours == 0.0)
