"""A tiny fake run folder for the app tests, with the real file names and layout.

4 square districts near Tokyo, 3 windows, the ``traffic`` and ``safety`` domains,
per-modality contributions, a hand-made City in ``city/`` (one report, readings
and a camera frame per district), a two-site ``sites.json`` and a ``metrics.jsonl``
in the layout the Flower server writes today.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr
from shapely.geometry import box

from datasets import City, build_district_graph
from domains import get_domain

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
MODALITIES = ("image", "text", "sensor", "graph")
SQUARE = 0.01
SITES = [
    {"site_id": "site-000", "districts": ["d0", "d1"]},
    {"site_id": "site-001", "districts": ["d2", "d3"]},
]
REPORT_TEXT = "Festival crowds expected near {name} station tonight."


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


def contributions(probability: float, district: int) -> dict[str, float]:
    """Per-modality contributions; text drives d0, sensors d1, images d2, the graph d3."""
    leading = MODALITIES[(1 + district) % len(MODALITIES)]
    return {
        f"contribution_{name}": probability * (0.6 if name == leading else 0.1)
        for name in MODALITIES
    }


def prediction_rows(probabilities: dict[str, np.ndarray]) -> list[dict]:
    """Rows of ``predictions.parquet`` for the given probability tables."""
    rows = []
    for domain, table in probabilities.items():
        spec = get_domain(domain)
        for w, window_start in enumerate(WINDOWS):
            levels = spec.level_names(table[w])
            for d, ((district_id, name), polygon) in enumerate(
                zip(DISTRICTS, district_polygons(), strict=True)
            ):
                probability = float(table[w, d])
                rows.append(
                    {
                        "district_id": district_id,
                        "name": name,
                        "window_start": window_start,
                        "domain": domain,
                        "probability": probability,
                        "expected_count": probability * 2.0,
                        "level": levels[d],
                        **contributions(probability, d),
                        "observed_events": float(d == 3),
                        "geometry": polygon,
                    }
                )
    return rows


def fake_city() -> City:
    """A hand-made City over the four squares: 2 days of hourly sensors, reports, frames.

    Every district gets one report 3 hours before the second window, and rainfall
    jumps to 40 mm in ``d1`` in the 6 hours before it.
    """
    districts = gpd.GeoDataFrame(
        {
            "district_id": [d for d, _ in DISTRICTS],
            "name": [n for _, n in DISTRICTS],
            "population": [1000, 2000, 3000, 4000],
        },
        geometry=district_polygons(),
        crs="EPSG:4326",
    )
    times = pd.date_range("2024-05-31 00:00", periods=48, freq="1h")
    rain = np.zeros((len(DISTRICTS), len(times)), dtype=np.float32)
    rain[
        1,
        (times >= WINDOWS[1].tz_localize(None) - pd.Timedelta(hours=6))
        & (times < WINDOWS[1].tz_localize(None)),
    ] = 40.0
    temperature = np.tile(np.linspace(20, 30, len(times), dtype=np.float32), (len(DISTRICTS), 1))
    sensors = xr.Dataset(
        {
            "rainfall": (("district", "time"), rain),
            "temperature": (("district", "time"), temperature),
        },
        coords={"district": [d for d, _ in DISTRICTS], "time": times},
    )
    frame_times = [WINDOWS[1] - pd.Timedelta(hours=2)] * len(DISTRICTS)
    return City(
        name="Testopolis",
        districts=districts,
        graph=build_district_graph(districts),
        sensors=sensors,
        frames=np.full((len(DISTRICTS), 8, 8, 3), 128, dtype=np.uint8),
        images=pd.DataFrame(
            {
                "district_id": [d for d, _ in DISTRICTS],
                "timestamp": frame_times,
                "frame": [0, 1, 2, 3],
            }
        ),
        reports=pd.DataFrame(
            {
                "district_id": [d for d, _ in DISTRICTS],
                "timestamp": [WINDOWS[1] - pd.Timedelta(hours=3)] * len(DISTRICTS),
                "source": ["citizen"] * len(DISTRICTS),
                "text": [REPORT_TEXT.format(name=n) for _, n in DISTRICTS],
            }
        ),
        events=pd.DataFrame(
            {
                "district_id": ["d3"],
                "timestamp": [WINDOWS[0] + pd.Timedelta(hours=1)],
                "domain": ["traffic"],
                "kind": ["traffic_accident"],
            }
        ),
        timezone="Asia/Tokyo",
    )


def old_layout_metrics() -> list[dict]:
    """``metrics.jsonl`` records as the Flower server writes them today (2 rounds, 2 sites)."""
    records = []
    for number in range(3):
        records.append(
            {
                "round": number,
                "phase": "central-evaluate",
                "scope": "server",
                "loss": 0.8 - 0.2 * number,
                "auprc-macro": 0.1 + 0.1 * number,
            }
        )
    for number in (1, 2):
        for index in (0, 1):
            row = {"round": number, "phase": "train", "scope": "site", "site-index": index}
            if number == 2 and index == 1:
                row["error"] = "site went offline"
            else:
                row.update({"train-loss": 0.7, "num-examples": 100 + 50 * index})
            records.append(row)
        records.append(
            {"round": number, "phase": "train", "scope": "federation", "train-loss": 0.9 / number}
        )
    return records


def write_fake_run(
    runs: Path,
    run_id: str,
    created: str,
    kind: str = "demo",
    probabilities: dict[str, np.ndarray] | None = None,
    with_city: bool = True,
) -> Path:
    """Write one run folder with the contract's files; return its path."""
    probabilities = PROBABILITIES if probabilities is None else probabilities
    run_path = runs / run_id
    run_path.mkdir(parents=True)
    rows = prediction_rows(probabilities)
    gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326").to_parquet(
        run_path / "predictions.parquet"
    )
    manifest = {
        "run_id": run_id,
        "kind": kind,
        "created": created,
        "status": "finished",
        "city": {"name": "Testopolis", "n_districts": len(DISTRICTS)},
        "config": {
            "seed": 0,
            "federation": {"num-rounds": 2, "fraction-train": 1.0, "lookback-hours": 24},
        },
        "data_fingerprint": "abc",
        "code_version": "test",
        "domains": list(probabilities),
        "n_sites": len(SITES),
    }
    (run_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    lines = [json.dumps(record) for record in old_layout_metrics()]
    (run_path / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (run_path / "sites.json").write_text(json.dumps({"sites": SITES}), encoding="utf-8")
    if with_city:
        fake_city().save(run_path / "city")
    return run_path
