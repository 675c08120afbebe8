"""The federation page and the one parser of ``metrics.jsonl``, in both layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.components.federation import round_status, site_table, strategy_and_privacy
from app.loading import (
    load_run_city,
    parse_federation_log,
    read_metrics_records,
    read_site_plan,
)
from tests.app_fake_run import SITES, old_layout_metrics, write_fake_run

APP_FILE = str(Path(__file__).parents[1] / "streamlit_app.py")
SITE_IDS = [site["site_id"] for site in SITES]
NEW_LAYOUT = [
    {"round": 0, "kind": "round", "central": {"auprc-macro": 0.1}, "sites": [], "failures": []},
    {
        "round": 1,
        "kind": "round",
        "central": {"auprc-macro": 0.3, "loss": 0.5},
        "train_loss": 0.6,
        "sites": ["site-000"],
        "failures": [{"site": "site-001", "error": "out of memory"}],
    },
    {"round": 1, "kind": "site", "site": "site-000", "num_examples": 90, "loss": 0.4, "auprc": 0.2},
]


@pytest.fixture
def fake_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run in today's layout, and an older one with no metrics and no site plan."""
    runs = tmp_path / "runs"
    write_fake_run(runs, "run-new", "2024-06-02T09:30:00Z")
    bare = write_fake_run(runs, "run-bare", "2024-05-01T00:00:00Z", with_city=False)
    (bare / "metrics.jsonl").unlink()
    (bare / "sites.json").unlink()
    monkeypatch.setenv("KIZASHI_RUNS", str(runs))
    return runs


def test_parse_todays_layout() -> None:
    log = parse_federation_log(old_layout_metrics(), SITE_IDS)
    assert log.rounds["round"].tolist() == [0, 1, 2]
    assert log.rounds["central_auprc-macro"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert log.rounds["train_loss"].tolist()[1:] == pytest.approx([0.9, 0.45])
    assert log.rounds["sites"].tolist()[1:] == [SITE_IDS, ["site-000"]]
    assert log.rounds["failures"].iloc[2] == [{"site": "site-001", "error": "site went offline"}]
    assert set(log.central_metrics) == {"loss", "auprc-macro"}
    assert log.sites["num_examples"].tolist()[:2] == [100, 150]
    assert log.missing == ["no AUPRC per site"]


def test_parse_new_layout_and_say_what_is_missing() -> None:
    log = parse_federation_log(NEW_LAYOUT)
    assert log.rounds["sites"].iloc[1] == ["site-000"]
    assert log.rounds["n_failures"].tolist() == [0, 1]
    assert log.rounds["central_loss"].iloc[1] == 0.5
    site = log.sites.iloc[0]
    assert (site["site"], site["num_examples"], site["auprc"]) == ("site-000", 90, 0.2)
    assert log.missing == []
    empty = parse_federation_log([])
    assert "no round records" in empty.missing[0] and empty.rounds.empty


def test_half_written_line_is_skipped(tmp_path: Path) -> None:
    lines = [json.dumps(record) for record in NEW_LAYOUT] + ['{"round": 2, "kind": "ro']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines), encoding="utf-8")
    assert len(read_metrics_records(tmp_path)) == len(NEW_LAYOUT)
    assert read_metrics_records(tmp_path / "nowhere") == []


def test_site_table_and_round_status(fake_runs: Path) -> None:
    log = parse_federation_log(old_layout_metrics(), SITE_IDS)
    plan = read_site_plan(fake_runs / "run-new")
    table = site_table(log, plan, load_run_city(fake_runs / "run-new"))
    assert table["Site"].tolist() == SITE_IDS
    assert table["Samples"].tolist() == [100, 150]
    assert table["Failures"].tolist() == [0, 1] and table["Last error"][1] == "site went offline"
    assert table["Modalities"][0] == "image, text, sensor, graph"
    assert site_table(log, plan)["Modalities"][0] == "unknown"
    assert round_status(log, plan, 2) == {"site-000": "took part", "site-001": "failed"}
    assert round_status(log, plan, 9) == {"site-000": "not asked", "site-001": "not asked"}


def test_strategy_and_privacy_from_the_manifest() -> None:
    manifest = {
        "config": {"federation": {"num-rounds": 3, "lr": 0.01}},
        "strategy": {"name": "FedProx", "proximal-mu": 0.1},
        "privacy": {"dp": "server-fixed-clipping", "noise-multiplier": 1.0},
    }
    strategy, privacy, missing = strategy_and_privacy(manifest)
    assert dict(zip(strategy["Setting"], strategy["Value"], strict=True)) == {
        "num-rounds": "3",
        "strategy · name": "FedProx",
        "strategy · proximal-mu": "0.1",
    }
    assert privacy["Setting"].tolist() == ["dp", "noise-multiplier"] and missing == []
    _, privacy, missing = strategy_and_privacy({"config": {}})
    assert privacy.empty and len(missing) == 2


def test_federation_page_widgets_change_it(fake_runs: Path) -> None:
    at = AppTest.from_file(APP_FILE)
    at.switch_page("app/pages/federation.py").run(timeout=30)
    assert not at.exception
    assert [m.value for m in at.metric] == ["2", "2", "1"]
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {trace["name"] for trace in figure["data"]} == {"auprc-macro", "loss", "train loss"}

    def colours() -> list:
        deck = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
        return [f["properties"]["fill_color"] for f in deck["layers"][0]["data"]["features"]]

    assert colours()[2] == [192, 0, 0, 200]  # d2 belongs to site-001, which failed in round 2
    at.select_slider(key="round").set_value(1).run(timeout=30)
    assert not at.exception
    assert colours()[2] == [46, 139, 87, 200]

    at.multiselect(key="curves").set_value(["loss"]).run(timeout=30)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [trace["name"] for trace in figure["data"]] == ["loss"]
    assert "Missing: the aggregation strategy" in " ".join(c.value for c in at.caption)


def test_run_without_metrics_says_what_is_missing(fake_runs: Path) -> None:
    at = AppTest.from_file(APP_FILE)
    at.query_params["run"] = "run-bare"
    at.switch_page("app/pages/federation.py").run(timeout=30)
    assert not at.exception
    assert "no round records" in at.info[0].value
    assert not at.get("deck_gl_json_chart")
