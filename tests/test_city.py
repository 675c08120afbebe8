import json

import numpy as np
import pandas as pd
import pytest

from datasets import (
    City,
    CityNotFoundError,
    DistrictsFileError,
    RecordsFileError,
    make_city,
    read_districts_file,
)
from tests.conftest import TINY


def test_city_has_all_modalities(tiny_city):
    city = tiny_city
    assert len(city.districts) == 12
    assert city.districts.crs.to_epsg() == 4326
    assert set(city.districts.geom_type) <= {"Polygon", "MultiPolygon"}
    assert city.districts["district_id"].is_unique
    assert set(city.sensors.dims) == {"district", "time"}
    assert len(city.sensors.data_vars) >= 3
    assert city.frames.dtype == np.uint8 and city.frames.ndim == 4 and len(city.frames) > 0
    assert len(city.images) == len(city.frames)
    assert len(city.reports) > 0 and len(city.events) > 0
    assert set(city.events["domain"]) >= {"traffic", "safety"}
    assert city.graph.num_nodes == 12 and city.graph.edge_index.shape[1] > 0


def test_same_seed_same_city_other_seed_other_city(tiny_city):
    assert make_city(**TINY).fingerprint() == tiny_city.fingerprint()
    assert make_city(**{**TINY, "seed": 4}).fingerprint() != tiny_city.fingerprint()


def test_save_load_round_trip(tiny_city, tiny_city_dir):
    loaded = City.load(tiny_city_dir)
    assert loaded.fingerprint() == tiny_city.fingerprint()
    assert loaded.graph.edge_index.shape == tiny_city.graph.edge_index.shape
    assert loaded.timezone == tiny_city.timezone
    assert isinstance(loaded.reports["timestamp"].dtype, pd.DatetimeTZDtype)


def test_failed_save_leaves_previous_city_intact(tiny_city, tmp_path, monkeypatch):
    target = tiny_city.save(tmp_path / "city")
    before = City.load(target).fingerprint()

    def broken(self, path, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        tiny_city.save(target)
    monkeypatch.undo()
    assert City.load(target).fingerprint() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["city"]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(CityNotFoundError, match="no-such-city"):
        City.load(tmp_path / "no-such-city")


def test_broken_districts_file_is_named(tiny_city, tmp_path):
    folder = tiny_city.save(tmp_path / "city")
    (folder / "districts.parquet").write_text("this is not parquet")
    with pytest.raises(DistrictsFileError, match="districts.parquet"):
        City.load(folder)


def test_invalid_geojson_is_named(tmp_path):
    path = tmp_path / "wards.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(DistrictsFileError, match="wards.geojson"):
        read_districts_file(path)


def test_duplicate_ids_and_missing_crs(tiny_city, tmp_path):
    districts = tiny_city.districts[["district_id", "name", "geometry"]].copy()
    districts.loc[1, "district_id"] = districts.loc[0, "district_id"]
    path = tmp_path / "dup.geojson"
    districts.to_file(path)
    with pytest.raises(DistrictsFileError, match="row 1.*unique"):
        read_districts_file(path)
    naive = tiny_city.districts[["district_id", "geometry"]].set_crs(None, allow_override=True)
    naive.to_parquet(tmp_path / "naive.parquet")
    with pytest.raises(DistrictsFileError, match="coordinate reference system"):
        read_districts_file(tmp_path / "naive.parquet")


def test_reports_with_unknown_district_are_refused(tiny_city, tmp_path):
    folder = tiny_city.save(tmp_path / "city")
    reports = pd.read_parquet(folder / "reports.parquet")
    reports.loc[2, "district_id"] = "NOWHERE"
    reports.to_parquet(folder / "reports.parquet")
    with pytest.raises(RecordsFileError, match=r"reports.parquet \(row 2\)"):
        City.load(folder)


def test_wrong_format_version_is_refused(tiny_city, tmp_path):
    folder = tiny_city.save(tmp_path / "city")
    info = json.loads((folder / "city.json").read_text())
    (folder / "city.json").write_text(json.dumps({**info, "format_version": 99}))
    with pytest.raises(Exception, match="format_version"):
        City.load(folder)


def test_city_on_given_polygons(tiny_city):
    polygons = tiny_city.districts[["district_id", "name", "geometry"]]
    city = make_city(days=2, seed=1, districts=polygons)
    assert list(city.district_ids) == list(polygons["district_id"])
    assert "elevation_m" in city.districts


def test_sensor_intervals_differ_by_district_and_roads_link_distant_districts():
    from datasets.graph import queen_neighbour_pairs

    city = make_city(n_districts=60, days=3, seed=8)
    observed = ~np.isnan(city.sensors["temperature"].values)
    steps_between = [np.diff(np.flatnonzero(row)).min() for row in observed if row.sum() > 1]
    assert {1, 2, 3} <= set(steps_between)
    contiguous = {tuple(pair) for pair in queen_neighbour_pairs(city.districts.geometry).tolist()}
    source, target = city.graph.edge_index.numpy()
    links = {(int(a), int(b)) for a, b in zip(source, target, strict=True) if a < b}
    roads = links - contiguous
    assert roads, "some road links join districts that do not touch"
    pairs = zip(source.tolist(), target.tolist(), strict=True)
    weight = dict(zip(pairs, city.graph.edge_weight, strict=True))
    assert all(float(weight[pair]) == 0.5 for pair in roads)
