"""Tests for the Streamlit app: run loading, pure map components and the page itself.

A fixture writes a tiny fake run (4 square districts near Tokyo, 3 windows, the
``traffic`` and ``safety`` domains) with the real file names and layout, and points
``KIZASHI_RUNS`` at it, so the page is exercised exactly as a user would see it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app.components.risk_map import (
    build_risk_deck,
    domains_present,
    filter_districts,
    legend_rows,
    risk_layer_frame,
    top_districts,
    window_starts,
    window_totals,
)
from app.loading import list_runs, load_manifest, load_predictions, read_predictions, runs_dir
from app.view_state import ViewState, query_from_view, view_from_query, window_key
from domains import get_domain
from tests.app_fake_run import DISTRICTS, PROBABILITIES, WINDOWS, write_fake_run

APP_FILE = str(Path(__file__).parents[1] / "streamlit_app.py")


@pytest.fixture
def fake_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A runs folder with a new and an old run plus a half-written one; sets KIZASHI_RUNS."""
    runs = tmp_path / "runs"
    write_fake_run(runs, "run-old", "2024-05-01T00:00:00+00:00", kind="train", with_city=False)
    write_fake_run(runs, "run-new", "2024-06-02T09:30:00Z")
    (runs / "run-broken").mkdir()
    (runs / "run-broken" / "manifest.json").write_text("{}", encoding="utf-8")
    monkeypatch.setenv("KIZASHI_RUNS", str(runs))
    return runs


def deck_json(at: AppTest) -> dict:
    """The spec of the page's only pydeck chart."""
    charts = at.get("deck_gl_json_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.json)


def table_districts(at: AppTest) -> list[str]:
    """District names in the page's top-5 table, in order."""
    return list(at.dataframe[0].value["District"])


def test_runs_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The runs folder is ``$KIZASHI_RUNS`` when set, else ``./runs``."""
    monkeypatch.delenv("KIZASHI_RUNS", raising=False)
    assert runs_dir() == Path("runs")
    monkeypatch.setenv("KIZASHI_RUNS", str(tmp_path))
    assert runs_dir() == tmp_path


def test_list_runs_newest_first_and_skips_unusable(fake_runs: Path) -> None:
    """Runs sort newest first; a folder without predictions is not offered."""
    runs = list_runs(fake_runs)
    assert [run.run_id for run in runs] == ["run-new", "run-old"]
    assert runs[0].kind == "demo" and runs[0].city_name == "Testopolis"
    assert runs[0].created.tzinfo is not None
    assert list_runs(fake_runs / "does-not-exist") == []
    assert load_manifest(fake_runs / "run-new")["data_fingerprint"] == "abc"


def test_read_predictions_contract(fake_runs: Path) -> None:
    """Predictions load whole, with UTC windows and EPSG:4326, cached or not."""
    predictions = read_predictions(fake_runs / "run-new")
    assert len(predictions) == len(DISTRICTS) * len(WINDOWS) * len(PROBABILITIES)
    assert str(predictions["window_start"].dt.tz) == "UTC"
    assert predictions.crs.to_epsg() == 4326
    cached = load_predictions(fake_runs / "run-new")
    assert cached["probability"].tolist() == predictions["probability"].tolist()


def test_risk_layer_frame_colours_match_domain(fake_runs: Path) -> None:
    """Each district gets one row, coloured with its domain level's colour."""
    predictions = read_predictions(fake_runs / "run-new")
    assert domains_present(predictions) == ["traffic", "safety"]
    assert window_starts(predictions) == list(WINDOWS)
    spec = get_domain("traffic")
    frame = risk_layer_frame(predictions, "traffic", WINDOWS[0])
    assert frame["district_id"].tolist() == [d for d, _ in DISTRICTS]
    for probability, colour, label in zip(
        frame["probability"], frame["fill_color"], frame["level_label"], strict=True
    ):
        level = spec.level_for(probability)
        assert colour[:3] == list(level.color) and label == level.label
    assert frame["probability_text"].tolist() == ["2.0%", "10.0%", "20.0%", "40.0%"]
    assert risk_layer_frame(predictions, "traffic", pd.Timestamp("2030-01-01", tz="UTC")).empty


def test_top_districts_orders_by_probability(fake_runs: Path) -> None:
    """The top table lists the riskiest districts first, with level labels."""
    frame = risk_layer_frame(read_predictions(fake_runs / "run-new"), "safety", WINDOWS[1])
    top = top_districts(frame, n=2)
    assert top["District"].tolist() == ["Chiyoda", "Daikanyama"]
    assert top["Level"].tolist() == ["Very high", "High"]


def test_legend_rows_follow_levels() -> None:
    """The legend shows the domain's levels in order, colours and wording."""
    spec = get_domain("safety")
    rows = legend_rows("safety")
    assert [row["label"] for row in rows] == [level.label for level in spec.levels]
    assert rows[-1]["color"] == "#{:02x}{:02x}{:02x}".format(*spec.levels[-1].color)
    assert rows[0]["wording"] == spec.levels[0].wording


def test_build_risk_deck_json(fake_runs: Path) -> None:
    """The deck holds a pickable GeoJSON choropleth centred on the districts."""
    frame = risk_layer_frame(read_predictions(fake_runs / "run-new"), "traffic", WINDOWS[0])
    spec = json.loads(build_risk_deck(frame, show_labels=True).to_json())
    layer = next(layer for layer in spec["layers"] if layer["id"] == "risk-districts")
    assert layer["@@type"] == "GeoJsonLayer" and layer["pickable"] is True
    features = layer["data"]["features"]
    assert [f["properties"]["name"] for f in features] == [name for _, name in DISTRICTS]
    very_high = get_domain("traffic").levels[3]
    assert features[3]["properties"]["fill_color"][:3] == list(very_high.color)
    assert any(layer["@@type"] == "TextLayer" for layer in spec["layers"])
    view = spec["initialViewState"]
    assert view["longitude"] == pytest.approx(139.70) and view["latitude"] == pytest.approx(35.68)
    assert 10 < view["zoom"] < 18
    # pydeck's placeholder, which Streamlit reads as "no basemap"; None would make
    # Streamlit fetch Carto's basemap in the browser (tests/test_browser.py checks).
    assert spec.get("mapStyle") == "__MAP_STYLE__" and spec.get("mapProvider") is None


def test_page_renders_latest_run(fake_runs: Path) -> None:
    """The page opens on the newest run with map, tooltip, legend and table."""
    at = AppTest.from_file(APP_FILE).run(timeout=30)
    assert not at.exception
    assert at.sidebar.selectbox[0].value == "run-new"
    assert "run-new" in at.caption[0].value and "demo" in at.caption[0].value
    assert "2024-06-02 09:30:00" in at.caption[0].value
    spec = deck_json(at)
    features = spec["layers"][0]["data"]["features"]
    assert len(features) == len(DISTRICTS)
    assert features[0]["properties"]["domain_title"] == get_domain("traffic").title
    tooltip = json.loads(at.get("deck_gl_json_chart")[0].proto.tooltip)["html"]
    for field in ("{name}", "{domain_title}", "{probability_text}", "{level_label}"):
        assert field in tooltip and field.strip("{}") in features[0]["properties"]
    assert table_districts(at)[:2] == ["Daikanyama", "Chiyoda"]
    legend = " ".join(markdown.value for markdown in at.markdown)
    assert all(level.wording in legend for level in get_domain("traffic").levels)


def test_domain_and_window_change_the_page(fake_runs: Path) -> None:
    """Picking another domain or window redraws the map and the table."""
    at = AppTest.from_file(APP_FILE).run(timeout=30)
    assert not at.exception
    before = deck_json(at)
    domain_box = next(box for box in at.selectbox if box.label == "Domain")
    assert domain_box.options == [get_domain("traffic").title, get_domain("safety").title]

    domain_box.set_value("safety").run(timeout=30)
    assert not at.exception
    after_domain = deck_json(at)
    assert after_domain != before
    features = after_domain["layers"][0]["data"]["features"]
    titles = {feature["properties"]["domain_title"] for feature in features}
    assert titles == {get_domain("safety").title}
    assert table_districts(at)[0] == "Akiba"

    at.select_slider[0].set_value(window_key(WINDOWS[1])).run(timeout=30)
    assert not at.exception
    assert deck_json(at) != after_domain
    assert table_districts(at)[0] == "Chiyoda"


def test_page_picks_older_run(fake_runs: Path) -> None:
    """Picking an older run shows that run's id and kind."""
    at = AppTest.from_file(APP_FILE).run(timeout=30)
    at.sidebar.selectbox[0].set_value("run-old").run(timeout=30)
    assert not at.exception
    assert "run-old" in at.caption[0].value and "train" in at.caption[0].value


def test_empty_runs_folder_shows_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no runs the page explains how to make one instead of failing."""
    monkeypatch.setenv("KIZASHI_RUNS", str(tmp_path))
    at = AppTest.from_file(APP_FILE).run(timeout=30)
    assert not at.exception
    assert len(at.info) == 1
    assert "make run" in at.info[0].value and "kizashi demo" in at.info[0].value
    assert not at.get("deck_gl_json_chart")


def test_view_state_round_trips_through_the_query() -> None:
    """A view written to the URL reads back the same; defaults stay out of the link."""
    view = ViewState(run="r1", domain="safety", window="2024-06-01T06:00Z", level="high", q="ak")
    params = query_from_view(view)
    assert params == {
        "run": "r1",
        "domain": "safety",
        "window": "2024-06-01T06:00Z",
        "level": "high",
        "q": "ak",
    }
    assert view_from_query(params) == view
    assert query_from_view(ViewState()) == {}
    assert view_from_query({"domain": ["traffic", "crowd"], "zoom": "3"}).domain == "crowd"
    assert window_key(WINDOWS[1]) == "2024-06-01T06:00Z"


def test_filters_keep_level_and_search_matches(fake_runs: Path) -> None:
    """The level filter keeps districts at or above it; the search matches name or id."""
    frame = risk_layer_frame(read_predictions(fake_runs / "run-new"), "traffic", WINDOWS[0])
    names = frame["name"]
    assert names[filter_districts(frame, "all", "")].tolist() == [n for _, n in DISTRICTS]
    assert names[filter_districts(frame, "high", "")].tolist() == ["Chiyoda", "Daikanyama"]
    assert names[filter_districts(frame, "very_high", "")].tolist() == ["Daikanyama"]
    assert names[filter_districts(frame, "all", "KYO")].tolist() == ["Bunkyo"]
    assert names[filter_districts(frame, "all", "d2")].tolist() == ["Chiyoda"]
    assert not filter_districts(frame, "very_high", "bunkyo").any()


def test_top_districts_change_and_totals(fake_runs: Path) -> None:
    """Top districts carry their change against the previous window; totals their deltas."""
    predictions = read_predictions(fake_runs / "run-new")
    first = risk_layer_frame(predictions, "traffic", WINDOWS[0])
    second = risk_layer_frame(predictions, "traffic", WINDOWS[1])
    top = top_districts(second, n=2, previous=first)
    assert top["District"].tolist() == ["Akiba", "Daikanyama"]
    assert top["Change (pp)"].tolist() == [38.0, -20.0]
    assert top_districts(first, n=1)["Change (pp)"].isna().all()
    totals = {row["label"]: row for row in window_totals(second, first)}
    assert totals["Districts at high or above"]["value"] == "2 of 4"
    assert totals["Districts at high or above"]["delta"] == "+0"
    assert totals["Mean probability"]["value"] == "18.0%"
    assert totals["Mean probability"]["delta"] == "+0%"
    assert window_totals(second, None)[1]["delta"] is None


def test_filters_drive_every_panel(fake_runs: Path) -> None:
    """Level and search filters change the totals, grey the map and shorten the table."""
    at = AppTest.from_file(APP_FILE).run(timeout=30)
    at.selectbox(key="widget.level").set_value("high").run(timeout=30)
    assert not at.exception
    assert table_districts(at) == ["Daikanyama", "Chiyoda"]
    assert at.metric[0].value == "2 of 2"
    features = deck_json(at)["layers"][0]["data"]["features"]
    greyed = [f["properties"]["name"] for f in features if f["properties"]["fill_color"][0] == 220]
    assert greyed == ["Akiba", "Bunkyo"]
    at.text_input(key="widget.q").set_value("chiyo").run(timeout=30)
    assert not at.exception
    assert table_districts(at) == ["Chiyoda"]
    assert at.metric[0].value == "1 of 1"
    assert at.query_params["level"] == "high" and at.query_params["q"] == "chiyo"


def test_url_reproduces_the_view(fake_runs: Path) -> None:
    """Opening a link with query parameters shows that run, domain, window and filter."""
    at = AppTest.from_file(APP_FILE)
    at.query_params.update(
        {"run": "run-old", "domain": "safety", "window": window_key(WINDOWS[1]), "level": "high"}
    )
    at.run(timeout=30)
    assert not at.exception
    assert at.sidebar.selectbox[0].value == "run-old"
    assert at.selectbox(key="widget.domain").value == "safety"
    assert at.select_slider[0].value == window_key(WINDOWS[1])
    assert table_districts(at) == ["Chiyoda", "Daikanyama"]
    assert at.query_params["domain"] == "safety"


def test_playback_moves_to_the_next_window(fake_runs: Path) -> None:
    """With playback on, each run shows the next window, and wraps around at the end."""
    at = AppTest.from_file(APP_FILE).run(timeout=30)
    assert at.select_slider[0].value == window_key(WINDOWS[0])
    at.toggle(key="playing").set_value(True).run(timeout=30)
    assert not at.exception
    assert at.select_slider[0].value == window_key(WINDOWS[1])
    assert table_districts(at)[0] == "Akiba"
    at.run(timeout=30)
    at.run(timeout=30)
    assert at.select_slider[0].value == window_key(WINDOWS[0])


def test_choices_follow_the_user_across_pages(fake_runs: Path) -> None:
    """A run and domain picked on the map are still picked on every other page."""
    at = AppTest.from_file(APP_FILE).run(timeout=30)
    at.sidebar.selectbox[0].set_value("run-old").run(timeout=30)
    at.selectbox(key="widget.domain").set_value("safety").run(timeout=30)
    for page in ("app/pages/district.py", "app/pages/federation.py", "app/pages/runs.py"):
        at.switch_page(page).run(timeout=30)
        assert not at.exception, page
        assert at.sidebar.selectbox[0].value == "run-old", page
        assert at.query_params["run"] == "run-old", page
    assert at.selectbox(key="widget.domain").value == "safety"
    at.switch_page("app/pages/risk_map.py").run(timeout=30)
    assert at.selectbox(key="widget.domain").value == "safety"
    assert table_districts(at)[0] == "Akiba"


def test_map_coordinates_are_rounded_to_about_a_metre():
    import geopandas as gpd
    from shapely.geometry import Polygon

    from app.components.risk_map import district_features

    square = Polygon([(139.123456789, 35.1), (139.2, 35.1), (139.2, 35.2), (139.123456789, 35.2)])
    drawn = gpd.GeoDataFrame({"name": ["a"]}, geometry=[square], crs="EPSG:4326")
    ring = district_features(drawn)["features"][0]["geometry"]["coordinates"][0]
    assert all(round(value, 5) == value for point in ring for value in point)
    assert abs(ring[0][0] - 139.1235) < 0.01 and abs(ring[0][1] - 35.1) < 0.01


def test_map_geometry_is_drawn_once_per_set_of_districts():
    import geopandas as gpd
    from shapely.affinity import translate
    from shapely.geometry import Polygon

    from app.components.risk_map import district_features, drawn_geometries

    square = Polygon([(139.0, 35.0), (139.01, 35.0), (139.01, 35.01), (139.0, 35.01)])
    drawn = gpd.GeoDataFrame({"name": ["a"], "risk": [0.1]}, geometry=[square], crs="EPSG:4326")
    first = district_features(drawn)["features"][0]
    hits = drawn_geometries.cache_info().hits
    again = district_features(drawn.assign(risk=[0.9]))["features"][0]
    assert drawn_geometries.cache_info().hits == hits + 1
    assert again["properties"]["risk"] == 0.9 and again["geometry"] == first["geometry"]
    moved = drawn.set_geometry([translate(square, xoff=0.5)], crs="EPSG:4326")
    shifted = district_features(moved)["features"][0]["geometry"]["coordinates"][0]
    assert min(x for x, _ in shifted) > 139.4  # new districts, new shapes: nothing stale
    assert district_features(drawn.set_crs(None, allow_override=True))["features"][0]["geometry"]


def test_map_borders_are_gaps_between_inset_districts():
    import geopandas as gpd
    from shapely.geometry import Polygon, shape

    from app.components.risk_map import district_features, district_layer

    west = Polygon([(139.0, 35.0), (139.01, 35.0), (139.01, 35.01), (139.0, 35.01)])
    east = Polygon([(139.01, 35.0), (139.02, 35.0), (139.02, 35.01), (139.01, 35.01)])
    sliver = Polygon([(139.0, 35.02), (139.02, 35.02), (139.02, 35.020001), (139.0, 35.020001)])
    drawn = gpd.GeoDataFrame(
        {"name": ["west", "east", "sliver"]}, geometry=[west, east, sliver], crs="EPSG:4326"
    )
    drawn_west, drawn_east, drawn_sliver = (
        shape(feature["geometry"]) for feature in district_features(drawn)["features"]
    )
    assert drawn_west.within(west) and drawn_east.within(east)
    assert drawn_west.distance(drawn_east) > 1e-5  # a visible gap where they touched
    assert drawn_west.area > 0.8 * west.area  # the inset is a border, not a hole
    assert not drawn_sliver.is_empty  # too thin to shrink: drawn as it is
    assert district_layer(drawn, "x").stroked is False
