"""`kizashi demo --no-serve` on a tiny city, through the real command line, then the app on it."""

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_DEMO = [
    "--districts",
    "12",
    "--days",
    "6",
    "--sites",
    "10",
    "--rounds",
    "2",
    "--preset",
    "tiny",
]


def kizashi(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    result = kizashi("demo", "--no-serve", "--runs-dir", str(runs), *TINY_DEMO)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [path for path in runs.iterdir() if path.is_dir()]
    return run_dir


def test_run_folder_holds_the_contract(demo_run):
    names = {path.name for path in demo_run.iterdir()}
    assert {"manifest.json", "metrics.jsonl", "predictions.parquet", "model"} <= names
    manifest = json.loads((demo_run / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["n_sites"] == 10
    assert len(manifest["data_fingerprint"]) == 16
    assert (demo_run / "city" / "oracle.npz").exists()  # the synthetic city's ceiling, apart


def test_predictions_are_a_geoparquet_risk_table(demo_run):
    predictions = gpd.read_parquet(demo_run / "predictions.parquet")
    expected = {"district_id", "window_start", "domain", "probability", "level", "geometry"}
    assert expected <= set(predictions.columns)
    assert predictions["probability"].between(0, 1).all()
    assert predictions["domain"].nunique() >= 2
    assert predictions.crs.to_epsg() == 4326
    assert predictions["district_id"].nunique() == 12


def test_every_site_trained_in_every_round(demo_run):
    records = [json.loads(line) for line in (demo_run / "metrics.jsonl").read_text().splitlines()]
    site_train = [r for r in records if r["kind"] == "site"]
    assert {r["round"] for r in site_train} == {1, 2}
    assert len(site_train) == 2 * 10
    assert len({r["site"] for r in site_train}) == 10
    rounds = [r for r in records if r["kind"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["failures"] == [] and "auprc-macro" in r["central"] for r in rounds)
    assert (demo_run / "partitions" / "federation.json").exists()


def test_app_shows_the_run_on_the_map(demo_run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KIZASHI_RUNS", str(demo_run.parent))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py")).run(timeout=60)
    assert not at.exception
    assert len(at.get("deck_gl_json_chart")) == 1
    assert at.sidebar.selectbox[0].value == demo_run.name
    assert demo_run.name in "".join(element.value for element in at.caption)


def test_missing_city_folder_ends_with_one_clear_line(tmp_path):
    result = kizashi("demo", "--no-serve", "--runs-dir", str(tmp_path), "--city", "nowhere/city")
    assert result.returncode == 2
    assert "nowhere/city" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


def test_invalid_districts_file_ends_with_one_clear_line(tmp_path):
    broken = tmp_path / "wards.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [{"type": "Fea')
    result = kizashi(
        "demo", "--no-serve", "--runs-dir", str(tmp_path / "runs"), "--districts-file", str(broken)
    )
    assert result.returncode == 2
    assert "wards.geojson" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists()
