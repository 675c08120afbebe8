"""Tests for the Streamlit app: run loading, pure map components and the page itself.

A fixture writes a tiny fake run (4 square districts near Tokyo, 3 windows, the
``traffic`` and ``safety`` domains) with the real file names and layout, and points
``KIZASHI_RUNS`` at it, so the page is exercised exactly as a user would see it.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box
from streamlit.testing.v1 import AppTest

from app.components.risk_map import (
    build_risk_deck,
    domains_present,
    legend_rows,
    risk_layer_frame,
    top_districts,
    window_starts,
)
from app.loading import list_runs, load_manifest, load_predictions, read_predictions, runs_dir
from domains import get_domain

APP_FILE = str(Path(__file__).parents[1] / "streamlit_app.py")
DISTRICTS = [("d0", "Akiba"), ("d1", "Bunkyo"), ("d2", "Chiyoda"), ("d3", "Daikanyama")]
WINDOWS = pd.date_range("2024-06-01 00:00", periods=3, freq="6h", tz="UTC")
# Probabilities per domain: rows are windows, columns districts. The riskiest
# district differs between domains and between windows.
PROBABILITIES = {
    "traffic": np.array(
        [[0.02, 0.10, 0.20, 0.40], [0.40, 0.02, 0.10, 0.20], [0.20, 0.40, 0.02, 0.10]]
    ),
    "safety": np.array(
        [[0.35, 0.01, 0.07, 0.16], [0.01, 0.07, 0.35, 0.16], [0.07, 0.16, 0.01, 0.35]]
    ),
}
SQUARE = 0.01


def district_polygons() -> list:
    """Four 0.01-degree squares in a 2x2 grid around lon 139.7, lat 35.68."""
    return [
        box(
            139.69 + SQUARE * (i % 2),
            35.67 + SQUARE * (i // 2),
            139.69 + SQUARE * (i % 2 + 1),
            35.67 + SQUARE * (i // 2 + 1),
        )
        for i in range(len(DISTRICTS))
    ]


def write_fake_run(runs: Path, run_id: str, created: str, kind: str = "demo") -> Path:
    """Write one run folder with the contract's files; return its path."""
    rows = []
    for domain, table in PROBABILITIES.items():
        spec = get_domain(domain)
        for w, window_start in enumerate(WINDOWS):
            levels = spec.level_names(table[w])
            for d, ((district_id, name), polygon) in enumerate(
                zip(DISTRICTS, district_polygons(), strict=True)
            ):
                rows.append(
                    {
                        "district_id": district_id,
                        "name": name,
                        "window_start": window_start,
                        "domain": domain,
                        "probability": float(table[w, d]),
                        "expected_count": float(table[w, d]) * 2.0,
                        "level": levels[d],
                        "geometry": polygon,
                    }
                )
    run_path = runs / run_id
    run_path.mkdir(parents=True)
    gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326").to_parquet(
        run_path / "predictions.parquet"
    )
    manifest = {
        "run_id": run_id,
        "kind": kind,
        "created": created,
        "city": {"name": "Testopolis", "n_districts": len(DISTRICTS)},
        "config": {"seed": 0},
        "data_fingerprint": "abc",
        "code_version": "test",
        "domains": list(PROBABILITIES),
    }
    (run_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (run_path / "metrics.jsonl").write_text('{"round": 1, "phase": "train"}\n', encoding="utf-8")
    return run_path


@pytest.fixture
def fake_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A runs folder with a new and an old run plus a half-written one; sets KIZASHI_RUNS."""
    runs = tmp_path / "runs"
    write_fake_run(runs, "run-old", "2024-05-01T00:00:00+00:00", kind="train")
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
    assert spec.get("mapStyle") is None and spec.get("mapProvider") is None


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

    at.select_slider[0].set_value(WINDOWS[1]).run(timeout=30)
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
