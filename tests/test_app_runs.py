"""The runs page: manifest summary, downloads in three formats, two runs compared."""

from __future__ import annotations

import io
import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely import wkt
from streamlit.testing.v1 import AppTest

from app.components.exports import predictions_csv, predictions_geojson, predictions_geoparquet
from app.components.runs import compare_frame, difference_color, largest_differences
from app.loading import read_predictions
from app.view_state import window_key
from tests.app_fake_run import DISTRICTS, PROBABILITIES, WINDOWS, write_fake_run

APP_FILE = str(Path(__file__).parents[1] / "streamlit_app.py")
HALVED = {domain: table / 2 for domain, table in PROBABILITIES.items()}


@pytest.fixture
def fake_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two runs of the same city; the older one predicts half the risk."""
    runs = tmp_path / "runs"
    write_fake_run(runs, "run-new", "2024-06-02T09:30:00Z", with_city=False)
    write_fake_run(runs, "run-old", "2024-05-01T00:00:00Z", probabilities=HALVED, with_city=False)
    monkeypatch.setenv("KIZASHI_RUNS", str(runs))
    return runs


def open_runs_page() -> AppTest:
    at = AppTest.from_file(APP_FILE)
    at.switch_page("app/pages/runs.py").run(timeout=30)
    assert not at.exception
    return at


def test_exports_round_trip(fake_runs: Path) -> None:
    """Every format reads back to the same rows, times and shapes."""
    predictions = read_predictions(fake_runs / "run-new")
    geojson = json.loads(predictions_geojson(predictions))
    assert len(geojson["features"]) == len(predictions)
    first = geojson["features"][0]["properties"]
    assert first["window_start"] == "2024-06-01T00:00:00Z" and first["domain"] == "traffic"
    csv = pd.read_csv(io.BytesIO(predictions_csv(predictions)))
    assert len(csv) == len(predictions) and csv["probability"].tolist() == pytest.approx(
        predictions["probability"].tolist()
    )
    assert wkt.loads(csv["geometry"][0]).equals(predictions.geometry.iloc[0])
    parquet = gpd.read_parquet(io.BytesIO(predictions_geoparquet(predictions)))
    assert parquet.crs.to_epsg() == 4326
    pd.testing.assert_frame_equal(pd.DataFrame(parquet), pd.DataFrame(predictions))


def test_compare_frame_and_colours(fake_runs: Path) -> None:
    """The difference is second minus first, in points; colours diverge around white."""
    new = read_predictions(fake_runs / "run-new")
    old = read_predictions(fake_runs / "run-old")
    frame = compare_frame(new, old, "traffic", WINDOWS[0])
    assert frame["district_id"].tolist() == [d for d, _ in DISTRICTS]
    assert frame["difference_pp"].tolist() == pytest.approx([-1.0, -5.0, -10.0, -20.0])
    assert largest_differences(frame, n=1)["District"].tolist() == ["Daikanyama"]
    assert difference_color(0.0) == [255, 255, 255, 200]
    assert difference_color(20.0) == [255, 0, 0, 200]
    assert difference_color(-40.0) == [0, 0, 255, 200]


def test_runs_page_lists_runs_and_offers_downloads(fake_runs: Path) -> None:
    at = open_runs_page()
    table = at.dataframe[0].value
    assert table["Run"].tolist() == ["run-new", "run-old"]
    assert table["Sites"].tolist() == [2, 2] and table["Rounds"].tolist() == [2, 2]
    buttons = at.get("download_button")
    assert [button.proto.label for button in buttons] == ["GeoJSON", "CSV", "GeoParquet"]


def test_compare_widgets_change_the_map(fake_runs: Path) -> None:
    """The compared run, domain and window each redraw the difference map."""
    at = open_runs_page()

    def differences() -> list[float]:
        return at.dataframe[1].value["Difference (pp)"].tolist()

    assert at.selectbox(key="widget.compare").value == "run-old"
    assert differences() == [-20.0, -10.0, -5.0, -1.0]
    deck = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    colours = [f["properties"]["fill_color"] for f in deck["layers"][0]["data"]["features"]]
    assert colours[3] == [0, 0, 255, 200]

    at.selectbox(key="widget.window").set_value(window_key(WINDOWS[1])).run(timeout=30)
    assert not at.exception
    assert differences()[0] == -20.0 and at.dataframe[1].value["District"][0] == "Akiba"

    at.selectbox(key="widget.domain").set_value("safety").run(timeout=30)
    assert not at.exception
    assert at.dataframe[1].value["District"][0] == "Chiyoda"

    at.sidebar.selectbox[0].set_value("run-old").run(timeout=30)
    assert not at.exception
    assert at.selectbox(key="widget.compare").value == "run-new"
    assert differences()[0] == 17.5
    assert at.query_params["compare"] == "run-new"
