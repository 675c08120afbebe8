"""Pure pieces of the runs page: the manifest summary table and comparing two runs.

Two runs compare on the same map as the difference of their probabilities, per
district, for one domain and window: red where the second run sees more risk,
blue where it sees less, white where they agree.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import pandas as pd
import pydeck as pdk

from app.components.risk_map import district_deck, district_layer, format_probability
from app.loading import RunSummary

FULL_SCALE_PP = 20.0
COMPARE_TOOLTIP = (
    "<b>{name}</b><br/>{run_a}: {probability_a_text}<br/>{run_b}: {probability_b_text}<br/>"
    "Difference: <b>{difference_text}</b>"
)


def manifest_row(run: RunSummary, manifest: dict[str, Any]) -> dict[str, Any]:
    """One row of the runs table: what made the run, on which data, how far it got."""
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    federation = config.get("federation") if isinstance(config.get("federation"), dict) else {}
    city = manifest.get("city") if isinstance(manifest.get("city"), dict) else {}
    return {
        "Run": run.run_id,
        "Kind": run.kind or "unknown",
        "Status": str(manifest.get("status", "unknown")),
        "Created (UTC)": run.created.strftime("%Y-%m-%d %H:%M"),
        "City": run.city_name,
        "Districts": city.get("n_districts"),
        "Domains": ", ".join(run.domains),
        "Sites": manifest.get("n_sites"),
        "Rounds": federation.get("num-rounds"),
        "Preset": federation.get("preset", config.get("preset")),
        "Seconds": manifest.get("seconds"),
        "Data": manifest.get("data_fingerprint"),
        "Code": manifest.get("code_version"),
    }


def compare_frame(
    first: gpd.GeoDataFrame, second: gpd.GeoDataFrame, domain: str, window_start: pd.Timestamp
) -> gpd.GeoDataFrame:
    """Per district of both runs: the two probabilities and their difference.

    Returns:
        ``district_id``, ``name``, ``probability_a``, ``probability_b``,
        ``difference_pp`` (second minus first, percentage points) and the first
        run's ``geometry``; only districts both runs predicted, sorted by id.
    """

    def pick(predictions: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        rows = predictions[
            (predictions["domain"] == domain) & (predictions["window_start"] == window_start)
        ]
        return rows.drop_duplicates("district_id").set_index("district_id")

    a, b = pick(first), pick(second)
    common = a.index.intersection(b.index).sort_values()
    frame = gpd.GeoDataFrame(
        {
            "district_id": common,
            "name": a.loc[common, "name"].to_numpy(),
            "probability_a": a.loc[common, "probability"].to_numpy(dtype=float),
            "probability_b": b.loc[common, "probability"].to_numpy(dtype=float),
        },
        geometry=a.loc[common].geometry.to_numpy(),
        crs="EPSG:4326",
    )
    frame["difference_pp"] = (frame["probability_b"] - frame["probability_a"]) * 100.0
    return frame


def difference_color(difference_pp: float, full_scale: float = FULL_SCALE_PP) -> list[int]:
    """Diverging colour: white at 0, red (more risk) or blue (less) at ``full_scale`` pp."""
    share = max(-1.0, min(1.0, difference_pp / full_scale))
    if share >= 0:
        return [255, round(255 * (1 - share)), round(255 * (1 - share)), 200]
    return [round(255 * (1 + share)), round(255 * (1 + share)), 255, 200]


def build_compare_deck(frame: gpd.GeoDataFrame, run_a: str, run_b: str) -> pdk.Deck:
    """The difference map of `compare_frame`, with both probabilities in the tooltip."""
    drawn = frame[["district_id", "name", "geometry"]].copy()
    drawn["run_a"], drawn["run_b"] = run_a, run_b
    drawn["probability_a_text"] = [format_probability(p) for p in frame["probability_a"]]
    drawn["probability_b_text"] = [format_probability(p) for p in frame["probability_b"]]
    drawn["difference_text"] = [f"{d:+.1f} pp" for d in frame["difference_pp"]]
    drawn["fill_color"] = [difference_color(d) for d in frame["difference_pp"]]
    layer = district_layer(drawn, "compare-districts")
    return district_deck([layer], frame, COMPARE_TOOLTIP)


def largest_differences(frame: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The ``n`` districts where the runs disagree most, as a display table."""
    top = frame.reindex(frame["difference_pp"].abs().sort_values(ascending=False).index).head(n)
    return pd.DataFrame(
        {
            "District": top["name"].to_numpy(),
            "First run": [format_probability(p) for p in top["probability_a"]],
            "Second run": [format_probability(p) for p in top["probability_b"]],
            "Difference (pp)": top["difference_pp"].round(1).to_numpy(),
        }
    )
