"""The district page: risk over time, the why of a risk and its context, on a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.components.district import (
    ContextSpan,
    district_options,
    frames_in_context,
    modality_contributions,
    reports_in_context,
    risk_over_time,
    sensor_readings,
    unusual_readings,
    why_sentence,
)
from app.loading import load_run_city, read_predictions
from app.view_state import window_key
from tests.app_fake_run import DISTRICTS, REPORT_TEXT, WINDOWS, write_fake_run

APP_FILE = str(Path(__file__).parents[1] / "streamlit_app.py")
DISTRICT_PAGE = "app/pages/district.py"


@pytest.fixture
def fake_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run with a city folder, and an older one without; sets KIZASHI_RUNS."""
    runs = tmp_path / "runs"
    write_fake_run(runs, "run-new", "2024-06-02T09:30:00Z")
    write_fake_run(runs, "run-bare", "2024-05-01T00:00:00Z", with_city=False)
    monkeypatch.setenv("KIZASHI_RUNS", str(runs))
    return runs


def open_district_page(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP_FILE)
    at.query_params.update(query or {})
    at.switch_page(DISTRICT_PAGE).run(timeout=30)
    assert not at.exception
    return at


def page_text(at: AppTest) -> str:
    return " ".join(element.value for element in [*at.markdown, *at.caption])


def metric(at: AppTest, label: str) -> str:
    return next(element.value for element in at.metric if element.label == label)


def test_contributions_and_why(fake_runs: Path) -> None:
    """Contributions come largest first; the sentence names the leading kind of data."""
    predictions = read_predictions(fake_runs / "run-new")
    table = modality_contributions(predictions, "d0", "traffic", WINDOWS[1])
    assert table["modality"].tolist()[0] == "text"
    assert table["contribution_pp"].iloc[0] == pytest.approx(0.40 * 0.6 * 100)
    assert table["share"].sum() == pytest.approx(1.0)
    assert why_sentence(table).startswith("Text reports drove this risk most")
    assert "24.0 percentage points" in why_sentence(table)
    empty = modality_contributions(
        predictions.drop(columns="contribution_text"), "d9", "x", WINDOWS[0]
    )
    assert empty.empty and "does not record" in why_sentence(empty)


def test_risk_over_time_and_options(fake_runs: Path) -> None:
    predictions = read_predictions(fake_runs / "run-new")
    series = risk_over_time(predictions, "d3")
    traffic = series[series["domain"] == "traffic"]
    assert traffic["probability"].tolist() == [0.40, 0.20, 0.10]
    assert set(series["title"]) == {"Traffic accidents", "Crime and safety"}
    assert list(district_options(predictions)) == [d for d, _ in DISTRICTS]
    assert district_options(predictions, "BUN") == {"d1": "Bunkyo"}


def test_context_holds_what_the_model_saw(fake_runs: Path) -> None:
    """Reports, readings and frames of the look-back context, and the unusual reading."""
    city = load_run_city(fake_runs / "run-new")
    span = ContextSpan.before(WINDOWS[1], 24)
    reports = reports_in_context(city.reports, "d0", span)
    assert reports["text"].tolist() == [REPORT_TEXT.format(name="Akiba")]
    assert reports_in_context(city.reports, "d0", ContextSpan.before(WINDOWS[0], 24)).empty
    readings = sensor_readings(city.sensors, "d1", span)
    assert set(readings["channel"]) == {"rainfall", "temperature"}
    assert readings["time"].max() < WINDOWS[1] and len(readings) == 2 * 24
    unusual = unusual_readings(city.sensors, "d1", span)
    assert unusual.iloc[0]["channel"] == "rainfall" and unusual.iloc[0]["value"] == 40.0
    assert unusual.iloc[0]["z"] > 2
    assert frames_in_context(city.images, "d2", span)["frame"].tolist() == [2]
    assert load_run_city(fake_runs / "run-bare") is None


def test_district_page_renders_and_widgets_change_it(fake_runs: Path) -> None:
    """District, window and domain each change the numbers and the why."""
    at = open_district_page()
    assert metric(at, "Traffic accidents") == "2.0%"  # Akiba, first window
    assert "Text reports drove this risk most" in page_text(at)
    assert len(at.get("plotly_chart")) >= 2

    at.selectbox(key="widget.district").set_value("d1").run(timeout=30)
    assert not at.exception
    assert metric(at, "Traffic accidents") == "10.0%"
    assert "Sensor readings drove this risk most" in page_text(at)

    at.selectbox(key="widget.window").set_value(window_key(WINDOWS[1])).run(timeout=30)
    assert not at.exception
    assert metric(at, "Traffic accidents") == "2.0%"
    cells = {str(v) for frame in at.dataframe for v in frame.value.to_numpy().ravel()}
    assert "rainfall" in cells and REPORT_TEXT.format(name="Bunkyo") in cells
    assert len(at.get("image")) == 1

    at.selectbox(key="widget.domain").set_value("safety").run(timeout=30)
    assert not at.exception
    assert metric(at, "Crime and safety") == "7.0%"
    assert at.query_params["district"] == "d1" and at.query_params["domain"] == "safety"


def test_hotspot_label_and_search(fake_runs: Path) -> None:
    """The trend metric follows the district; the search narrows the district list."""
    at = open_district_page({"district": "d3", "domain": "safety"})
    # Daikanyama, safety: 0.16, 0.16, 0.35 -> hot in every window, no significant trend.
    assert metric(at, "Hotspot trend") == "Persistent"
    trends = at.dataframe[-1].value
    by_name = dict(zip(trends["District"], trends["Trend"], strict=True))
    assert by_name["Bunkyo"] == "new" and by_name["Akiba"] == "no pattern"  # 0.01, 0.07, 0.16
    at.text_input(key="widget.q").set_value("chiy").run(timeout=30)
    assert not at.exception
    assert at.selectbox(key="widget.district").options == ["Chiyoda"]
    assert at.dataframe[-1].value["District"].tolist() == ["Chiyoda"]


def test_run_without_city_says_so(fake_runs: Path) -> None:
    at = open_district_page({"run": "run-bare"})
    assert any("keeps no city folder" in info.value for info in at.info)
