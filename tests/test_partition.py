import json

import numpy as np
import pandas as pd
import pytest
import shapely
import typer
import xarray as xr
from typer.testing import CliRunner

import datasets.partition_io as partition_io
from datasets import City, RiskSamples, make_city, temporal_split, window_starts
from datasets.partition import (
    PartitionSpec,
    SiteInfo,
    day_numbers,
    day_numbers_of_dates,
    partition_city,
)
from datasets.partition_grouping import _hilbert_index, spatial_order
from datasets.partition_io import load_site, read_federation, write_federation
from domains import get_domain
from fedcore.federation.sites import read_site_plan
from pipelines.partition_commands import register, summarize_sites, untrained_sites

DOMAINS = ("traffic", "safety", "crowd", "disaster")
SKEWED = PartitionSpec(
    n_sites=12,
    dirichlet_alpha=0.5,
    share_without_cameras=0.25,
    share_without_reports=0.25,
    share_without_sensors=0.25,
    share_scarce=0.25,
    share_coarse=0.25,
    seed=0,
)


def zero_embed(texts):
    return np.zeros((len(texts), 4), np.float32)


@pytest.fixture(scope="module")
def city():
    return make_city(n_districts=30, days=20, seed=2)


@pytest.fixture(scope="module")
def federation(city):
    return partition_city(city, SKEWED)


@pytest.fixture(scope="module")
def written(city, federation, tmp_path_factory):
    return write_federation(federation, city, tmp_path_factory.mktemp("feds") / "federation")


@pytest.fixture(scope="module")
def starts(city):
    return window_starts(city, stride_hours=6, lookback_hours=24, horizon_hours=6)


def load(written, site):
    return load_site(written / "sites" / site.site_id, written / "public")


@pytest.fixture(scope="module")
def loaded_sites(written, federation):
    """Every site of the written federation, loaded once (do not mutate)."""
    public = City.load(written / "public")
    loaded = {
        site.site_id: load_site(written / "sites" / site.site_id, public)
        for site in federation.sites
    }
    first = federation.sites[0]
    from_folder, _ = load(written, first)
    assert from_folder.fingerprint() == loaded[first.site_id][0].fingerprint()
    return loaded


def records_of(table, districts, days=None):
    mine = table[table["district_id"].isin(districts)]
    if days is not None:
        on_day = np.isin(day_numbers(pd.DatetimeIndex(mine["timestamp"])), days)
        mine = mine[on_day]
    return mine


def label_mix(city, districts):
    counts = city.events[city.events["district_id"].isin(districts)]["domain"].value_counts()
    counts = counts.reindex(list(DOMAINS), fill_value=0).to_numpy(float)
    return counts / max(counts.sum(), 1.0)


# --- the plan -----------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        PartitionSpec(n_sites=10),
        PartitionSpec(n_sites=10, dirichlet_alpha=0.1, quantity_skew=1.0, seed=3),
        PartitionSpec(n_sites=30, dirichlet_alpha=0.1),
        PartitionSpec(n_sites=1, dirichlet_alpha=1.0),
    ],
    ids=["by-district", "dirichlet+quantity", "one-district-each", "one-site"],
)
def test_sites_cover_every_district_exactly_once(city, spec):
    sites = partition_city(city, spec).sites
    assert len(sites) == spec.n_sites
    assert all(len(site.districts) >= 1 for site in sites)
    held = [district for site in sites for district in site.districts]
    assert sorted(held) == sorted(city.district_ids)
    assert all(site.active_days is None for site in sites)


def test_hilbert_order_visits_neighbouring_cells():
    x, y = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    index = _hilbert_index(x.ravel(), y.ravel(), bits=3)
    assert sorted(index) == list(range(64))
    path = np.column_stack([x.ravel(), y.ravel()])[np.argsort(index)]
    assert (np.abs(np.diff(path, axis=0)).sum(axis=1) == 1).all()


def test_sites_without_label_skew_are_compact_areas(city):
    points = shapely.get_coordinates(shapely.centroid(city.districts.geometry.values))

    def spread(groups):
        return np.mean([points[rows].std(axis=0).sum() for rows in groups if len(rows) > 1])

    sites = partition_city(city, PartitionSpec(n_sites=6)).sites
    compact = spread([site.rows(city) for site in sites])
    shuffled = np.random.default_rng(0).permutation(spatial_order(city))
    assert compact < 0.6 * spread(np.array_split(shuffled, 6))


def test_more_sites_than_districts_split_each_district_by_time(city, starts):
    sites = partition_city(city, PartitionSpec(n_sites=75, dirichlet_alpha=0.3, seed=1)).sites
    assert len(sites) == 75 and all(site.districts for site in sites)
    eras = {site.active_days for site in sites}
    assert len(eras) == 3  # ceil(75 / 30) blocks of whole days
    days = sorted(day for era in eras for day in era)
    assert len(days) == len(set(days)) == 20
    for era in eras:
        members = [site for site in sites if site.active_days == era]
        held = [district for site in members for district in site.districts]
        assert sorted(held) == sorted(city.district_ids)
    # every (district, window) belongs to at most one site, and almost all to one
    cover = np.zeros((len(city.district_ids), len(starts)), dtype=int)
    for site in sites:
        cover[site.rows(city)] += site.window_mask(starts)
    assert cover.max() == 1
    assert cover.mean() > 0.95


def test_same_seed_same_plan_other_seed_other_plan(city):
    spec = PartitionSpec(n_sites=10, dirichlet_alpha=0.3, quantity_skew=0.5, share_scarce=0.2)
    assert partition_city(city, spec).sites == partition_city(city, spec).sites
    other = PartitionSpec(**{**spec.__dict__, "seed": 1})
    assert partition_city(city, other).sites != partition_city(city, spec).sites


def test_dirichlet_label_skew_grows_as_alpha_drops(city):
    overall = label_mix(city, city.district_ids)

    def mean_distance(alpha):
        distances = []
        for seed in range(6):
            spec = PartitionSpec(n_sites=10, dirichlet_alpha=alpha, seed=seed)
            for site in partition_city(city, spec).sites:
                distances.append(0.5 * np.abs(label_mix(city, site.districts) - overall).sum())
        return float(np.mean(distances))

    assert mean_distance(0.1) > mean_distance(100.0) + 0.04


def test_quantity_skew_spreads_site_sizes(city):
    even = [len(site.districts) for site in partition_city(city, PartitionSpec(n_sites=10)).sites]
    assert max(even) - min(even) <= 1
    skewed = partition_city(city, PartitionSpec(n_sites=10, quantity_skew=1.5, seed=2)).sites
    sizes = [len(site.districts) for site in skewed]
    assert min(sizes) >= 1 and np.std(sizes) > 2 * np.std(even)


def test_flags_follow_the_shares(federation):
    sites = federation.sites
    assert sum(site.no_cameras for site in sites) == 3
    assert sum(site.no_reports for site in sites) == 3
    assert sum(bool(site.missing_channels) for site in sites) == 3
    assert sum(site.scarce for site in sites) == 3
    assert sum(site.coarse for site in sites) == 3
    assert not any(site.scarce and site.coarse for site in sites)


def test_window_mask_needs_start_and_horizon_on_active_days():
    site = SiteInfo("site-000", ("D0000",), scarce=True, active_days=("2026-06-02",))
    starts = pd.date_range("2026-06-01T18:00", "2026-06-03T00:00", freq="6h", tz="UTC")
    # 06-01 18:00 is not held; 06-02 00:00..18:00 are; 06-03 00:00 is not
    assert site.window_mask(starts).tolist() == [False, True, True, True, True, False]
    assert site.window_mask(starts, horizon_hours=12).tolist() == [False] + [True] * 3 + [False] * 2
    assert SiteInfo("site-001", ("D0001",)).window_mask(starts).all()
    assert SiteInfo.from_dict(json.loads(json.dumps(site.to_dict()))) == site


@pytest.mark.parametrize(
    "bad",
    [
        {"n_sites": 0},
        {"dirichlet_alpha": 0.0},
        {"quantity_skew": -1.0},
        {"share_scarce": 1.5},
        {"share_scarce": 0.6, "share_coarse": 0.6},
    ],
)
def test_spec_rejects_impossible_values(bad):
    with pytest.raises(ValueError):
        PartitionSpec(**bad)


def test_too_many_sites_for_the_record_is_an_error(city):
    with pytest.raises(ValueError, match="blocks of days"):
        partition_city(city, PartitionSpec(n_sites=30 * 21))


# --- the folders --------------------------------------------------------------


def test_layout_public_once_one_folder_per_site(written, federation, city):
    assert sorted(path.name for path in (written / "sites").iterdir()) == [
        site.site_id for site in federation.sites
    ]
    public = City.load(written / "public")
    assert public.district_ids == city.district_ids
    assert public.sensors.sizes["district"] == 0 and len(public.frames) == 0
    assert len(public.events) == len(public.reports) == 0
    assert read_federation(written).sites == federation.sites
    plan = read_site_plan(written / "federation.json")
    assert [entry["districts"] for entry in plan] == [list(s.districts) for s in federation.sites]
    assert not [p for p in written.parent.iterdir() if p.name.startswith(".")]


def test_modality_skew_removes_exactly_what_it_says(written, loaded_sites, federation, city):
    for site in federation.sites:
        loaded, info = loaded_sites[site.site_id]
        assert info == site
        days = None if site.active_days is None else day_numbers_of_dates(site.active_days)
        images = records_of(city.images, site.districts, days)
        reports = records_of(city.reports, site.districts, days)
        if site.no_cameras:
            assert len(loaded.frames) == len(loaded.images) == 0
        elif not site.coarse:
            assert len(loaded.images) == len(images)
        if site.no_reports:
            assert len(loaded.reports) == 0
        elif not site.coarse:
            assert len(loaded.reports) == len(reports)
        assert len(loaded.events) == len(records_of(city.events, site.districts, days))
        assert list(loaded.sensors.data_vars) == list(city.sensors.data_vars)
        on_disk = xr.load_dataset(written / "sites" / site.site_id / "sensors.nc")
        assert set(on_disk.data_vars).isdisjoint(site.missing_channels)
        for channel in city.sensors.data_vars:
            mine = loaded.sensors[channel].sel(district=list(site.districts)).values
            truth = city.sensors[channel].sel(district=list(site.districts)).values
            if channel in site.missing_channels:
                assert np.isnan(mine).all()
            elif not site.scarce and not site.coarse:
                np.testing.assert_array_equal(mine, truth)
    without_sensors = [site for site in federation.sites if site.missing_channels]
    assert set(without_sensors[0].missing_channels) == set(city.sensors.data_vars) - {
        "rainfall",
        "temperature",
    }


def test_scarce_sites_hold_a_tenth_of_their_samples(loaded_sites, federation, city, starts):
    scarce = [site for site in federation.sites if site.scarce]
    held = [site.window_mask(starts).mean() for site in scarce]
    assert 0.04 <= np.mean(held) <= 0.15
    for site in scarce:
        assert len(site.active_days) == 2  # 20 days / 10
        loaded, _ = loaded_sites[site.site_id]
        days = day_numbers_of_dates(site.active_days)
        for table in (loaded.images, loaded.reports, loaded.events):
            assert np.isin(day_numbers(pd.DatetimeIndex(table["timestamp"])), days).all()
        observed = loaded.sensors["temperature"].notnull().any("district").values
        grid_days = day_numbers(pd.DatetimeIndex(loaded.sensors["time"].values))
        assert observed.any() and np.isin(grid_days[observed], days).all()


def test_coarse_sites_have_a_tenfold_interval(loaded_sites, federation, city):
    coarse = [site for site in federation.sites if site.coarse]
    assert coarse
    frames_kept = frames_all = 0
    for site in coarse:
        loaded, _ = loaded_sites[site.site_id]
        steps = np.flatnonzero(loaded.sensors["traffic_volume"].notnull().any("district").values)
        if site.missing_channels:
            steps = np.flatnonzero(loaded.sensors["rainfall"].notnull().any("district").values)
        assert len(steps) > 2 and np.all(np.diff(steps) % 10 == 0) and np.diff(steps).min() == 10
        assert len(loaded.events) == len(records_of(city.events, site.districts))
        if not site.no_cameras:
            frames_kept += len(loaded.frames)
            frames_all += len(records_of(city.images, site.districts))
        if not site.no_reports:
            everything = len(records_of(city.reports, site.districts))
            assert len(loaded.reports) <= everything / 10 + len(site.districts)
    assert frames_all > 0 and 0.08 <= frames_kept / frames_all <= 0.12


def test_a_site_folder_holds_no_other_sites_data(written, federation, city):
    for site in federation.sites:
        folder = written / "sites" / site.site_id
        assert {path.name for path in folder.iterdir()} == {
            "site.json",
            "sensors.nc",
            "frames.npz",
            "images.parquet",
            "reports.parquet",
            "events.parquet",
        }
        mine = set(site.districts)
        assert set(xr.load_dataset(folder / "sensors.nc")["district"].values.astype(str)) <= mine
        for name in ("images", "reports", "events"):
            assert set(pd.read_parquet(folder / f"{name}.parquet")["district_id"]) <= mine
        images = pd.read_parquet(folder / "images.parquet")
        with np.load(folder / "frames.npz") as archive:
            frames = archive["frames"]
        assert len(frames) == len(images)
        index = city.images.set_index(["district_id", "timestamp"])["frame"]
        original = index.loc[list(zip(images["district_id"], images["timestamp"], strict=True))]
        np.testing.assert_array_equal(frames, city.frames[original.to_numpy()])
        assert json.loads((folder / "site.json").read_text())["site"]["site_id"] == site.site_id


def test_round_trip_feeds_risk_samples(loaded_sites, federation, city, starts):
    for site in federation.sites:
        loaded, info = loaded_sites[site.site_id]
        targets = {
            name: get_domain(name).targets(loaded.events, loaded.district_ids, starts)
            for name in DOMAINS
        }
        samples = RiskSamples(loaded, starts, targets, zero_embed, 24, districts=info.rows(loaded))
        assert len(samples) == len(info.districts) * len(starts)
        batch = samples.batch(np.arange(len(samples)))
        assert batch["series"].shape == (len(samples), 24, len(city.sensors.data_vars))
        if info.no_cameras:
            assert not batch["image_mask"].any()
        for channel in info.missing_channels:
            assert not batch["series_mask"][..., samples.channels.index(channel)].any()
        held = np.repeat(info.window_mask(starts)[None], len(info.districts), 0).ravel()
        if info.scarce:  # no labels outside the held windows
            assert batch["targets"][~held].sum() == 0 and held.mean() < 0.2


def test_write_is_atomic(city, federation, tmp_path, monkeypatch):
    target = tmp_path / "federation"
    write_federation(federation, city, target)
    before = sorted(path.relative_to(target) for path in target.rglob("*"))
    real_write_site = partition_io.write_site

    def failing(folder, site_city, site):
        if site.site_id == "site-002":
            raise OSError("disk full")
        real_write_site(folder, site_city, site)

    monkeypatch.setattr(partition_io, "write_site", failing)
    with pytest.raises(OSError):
        write_federation(partition_city(city, PartitionSpec(n_sites=5)), city, target)
    with pytest.raises(OSError):
        write_federation(federation, city, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert sorted(path.relative_to(target) for path in target.rglob("*")) == before
    assert [path.name for path in tmp_path.iterdir()] == ["federation"]


def test_same_seed_writes_the_same_plan(city, federation, written, tmp_path):
    again = write_federation(partition_city(city, SKEWED), city, tmp_path / "again")
    assert (again / "federation.json").read_text() == (written / "federation.json").read_text()


# --- the command --------------------------------------------------------------


@pytest.fixture(scope="module")
def city_app():
    app = typer.Typer()

    @app.callback()
    def city_group():
        """City commands."""

    register(app)
    return app


def test_command_writes_and_prints_one_row_per_site(city_app, city, tmp_path):
    city_dir = city.save(tmp_path / "city")
    args = ["partitions", str(city_dir), str(tmp_path / "fed"), "--sites", "8", "--alpha", "0.3"]
    args += ["--no-cameras", "0.3", "--scarce", "0.1", "--coarse", "0.1", "--seed", "4"]
    result = CliRunner().invoke(city_app, args)
    assert result.exit_code == 0, result.output
    plan = read_federation(tmp_path / "fed")
    assert plan.spec.dirichlet_alpha == 0.3 and plan.spec.seed == 4
    assert len(plan.sites) == 8 and sum(site.no_cameras for site in plan.sites) == 2
    for site in plan.sites:
        assert site.site_id in result.output
    for name in DOMAINS:
        assert name in result.output
    assert "scarce" in result.output and "coarse 1/10" in result.output


def test_command_reports_bad_input_in_one_line(city_app, tmp_path):
    result = CliRunner().invoke(city_app, ["partitions", str(tmp_path / "nope"), str(tmp_path)])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_summary_label_rates_match_the_written_sites(loaded_sites, federation, city, starts):
    summaries = summarize_sites(city, federation.sites)
    assert [summary.site_id for summary in summaries] == [site.site_id for site in federation.sites]
    for summary, site in zip(summaries, federation.sites, strict=True):
        loaded, _ = loaded_sites[site.site_id]
        held = site.window_mask(starts)
        assert summary.samples == len(site.districts) * held.sum()
        for name in DOMAINS:
            counts = get_domain(name).targets(loaded.events, loaded.district_ids, starts)
            expected = counts[site.rows(loaded)][:, held].sum()
            assert summary.label_rates[name] * summary.samples == pytest.approx(expected)


def test_summary_counts_training_windows_and_names_sites_that_never_train(city, starts):
    """75 sites over 30 districts: three eras; the last falls after the validation cut."""
    federation = partition_city(city, PartitionSpec(n_sites=75, dirichlet_alpha=0.3, seed=1))
    summaries = summarize_sites(city, federation.sites)
    train = temporal_split(starts, 6)["train"]
    for summary, site in zip(summaries, federation.sites, strict=True):
        held = site.window_mask(starts) & train
        assert summary.train_samples == len(site.districts) * held.sum()
        assert summary.train_samples <= summary.samples
    idle = untrained_sites(summaries)
    assert idle == [site.site_id for number, site in enumerate(federation.sites) if number % 3 == 2]
    whole = summarize_sites(city, partition_city(city, PartitionSpec(n_sites=10, seed=1)).sites)
    assert untrained_sites(whole) == [] and all(summary.train_samples > 0 for summary in whole)


def test_benchmark_times_partition_and_write(city, tmp_path):
    from pipelines.bench_partition import run_benchmark

    result = run_benchmark(city, SKEWED, tmp_path / "bench")
    assert result["sites"] == 12 and result["scarce_sites"] == result["coarse_sites"] == 3
    assert 0 < result["partition_s"] <= result["total_s"] and result["written_mib"] > 0
    assert (tmp_path / "bench" / "federation.json").exists()


def test_held_city_is_everything_some_site_holds_and_nothing_else(loaded_sites, federation, city):
    held = partition_io.PrivateDataSlicer(city).held_city(federation.sites)
    for name in ("images", "reports", "events"):
        union = pd.concat([getattr(loaded, name) for loaded, _ in loaded_sites.values()])
        keys = set(zip(union["district_id"], union["timestamp"], strict=True))
        table = getattr(held, name)
        assert set(zip(table["district_id"], table["timestamp"], strict=True)) == keys
        assert len(table) == len(keys)
    assert len(held.images) < len(city.images)  # sites without cameras hold no frames
    index = city.images.set_index(["district_id", "timestamp"])["frame"]
    pairs = list(zip(held.images["district_id"], held.images["timestamp"], strict=True))
    np.testing.assert_array_equal(
        held.frames[held.images["frame"].to_numpy()], city.frames[index.loc[pairs].to_numpy()]
    )
    for channel in city.sensors.data_vars:
        seen = np.zeros(held.sensors[channel].shape, dtype=bool)
        for loaded, _ in loaded_sites.values():
            mine = loaded.sensors[channel].dropna("district", how="all")
            if not mine.sizes["district"]:
                continue
            rows = held.sensors.indexes["district"].get_indexer(mine["district"].values)
            observed = mine.notnull().values
            np.testing.assert_array_equal(
                held.sensors[channel].values[rows][observed], mine.values[observed]
            )
            seen[rows] |= observed
        assert np.array_equal(held.sensors[channel].notnull().values, seen), channel
    assert held.fingerprint() != city.fingerprint()
