"""Pure pieces of the federation page: curves, who took part, sites and settings.

Everything takes a `app.loading.FederationLog` (the one parsed view of
``metrics.jsonl``), the site plan and the manifest, and shows what is there: a
field the run did not record comes back as a note in words, never as an error.
"""

from __future__ import annotations

import json
from typing import Any

import geopandas as gpd
import pandas as pd
import plotly.graph_objects as go
import pydeck as pdk

from app.components.risk_map import district_deck, district_layer
from app.loading import FederationLog

TOOK_PART = [46, 139, 87, 200]
FAILED = [192, 0, 0, 200]
ABSENT = [200, 200, 200, 160]
STATUS_COLORS = {"took part": TOOK_PART, "failed": FAILED, "not asked": ABSENT}
PRIVACY_WORDS = ("privacy", "dp-", "clip", "noise", "secagg", "epsilon", "delta")
STRATEGY_KEYS = ("strategy", "aggregation", "fraction-train", "min-train-sites", "num-rounds")


def metric_curves_figure(log: FederationLog, metrics: list[str]) -> go.Figure:
    """Server-side metrics (and the federated training loss) over the rounds."""
    figure = go.Figure()
    for metric in metrics:
        column = "train_loss" if metric == "train loss" else f"central_{metric}"
        if column not in log.rounds:
            continue
        rows = log.rounds[["round", column]].dropna()
        figure.add_trace(
            go.Scatter(x=rows["round"], y=rows[column], mode="lines+markers", name=metric)
        )
    figure.update_layout(
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="Round (0 = the initial model)",
        xaxis={"dtick": 1},
        legend={"orientation": "h"},
    )
    return figure


def curve_choices(log: FederationLog) -> list[str]:
    """Metrics the curves can show: the server's, plus ``train loss`` when recorded."""
    choices = list(log.central_metrics)
    if "train_loss" in log.rounds and log.rounds["train_loss"].notna().any():
        choices.append("train loss")
    return choices


def round_status(log: FederationLog, plan: list[dict], round_number: int) -> dict[str, str]:
    """Each planned site's part in one round: ``took part``, ``failed`` or ``not asked``."""
    row = log.rounds[log.rounds["round"] == round_number]
    took_part = set(row["sites"].iloc[0]) if not row.empty else set()
    failed = {str(f.get("site")) for f in row["failures"].iloc[0]} if not row.empty else set()
    status = {}
    for site in [str(s["site_id"]) for s in plan] + sorted(took_part | failed):
        if site in failed:
            status[site] = "failed"
        elif site in took_part:
            status[site] = "took part"
        else:
            status.setdefault(site, "not asked")
    return status


def sites_deck(districts: gpd.GeoDataFrame, plan: list[dict], status: dict[str, str]) -> pdk.Deck:
    """The districts coloured by their site's part in a round, with site in the tooltip.

    Args:
        districts: ``district_id``, ``name``, ``geometry`` (EPSG:4326), one per row.
        plan: The site plan (``site_id``, ``districts``).
        status: `round_status` of the round.
    """
    site_of = {str(d): str(site["site_id"]) for site in plan for d in site.get("districts", [])}
    drawn = districts[["district_id", "name", "geometry"]].copy()
    drawn["site"] = [site_of.get(str(d), "no site") for d in drawn["district_id"]]
    drawn["status"] = [status.get(site, "not asked") for site in drawn["site"]]
    drawn["fill_color"] = [STATUS_COLORS[s] for s in drawn["status"]]
    layer = district_layer(drawn, "federation-sites")
    return district_deck([layer], drawn, "<b>{name}</b><br/>{site}: {status}")


def site_modalities(city: Any, district_ids: list[str]) -> str:
    """Which modalities a site's districts hold in the run's city (graph always)."""
    if city is None:
        return "unknown"
    ids = set(district_ids)
    held = []
    if city.images["district_id"].isin(ids).any():
        held.append("image")
    if city.reports["district_id"].isin(ids).any():
        held.append("text")
    if ids & {str(d) for d in city.sensors["district"].values}:
        held.append("sensor")
    held.append("graph")
    return ", ".join(held)


def site_table(log: FederationLog, plan: list[dict], city: Any = None) -> pd.DataFrame:
    """One row per site: districts, samples, modalities, rounds taken part, failures."""
    sites = log.sites[log.sites["round"] > 0]
    names = [str(s["site_id"]) for s in plan] + sorted(
        set(sites["site"]) - {s["site_id"] for s in plan}
    )
    districts = {str(s["site_id"]): [str(d) for d in s.get("districts", [])] for s in plan}
    rows = []
    for site in names:
        mine = sites[sites["site"] == site]
        failures = mine[mine["error"].notna()]
        samples = mine["num_examples"].dropna()
        rows.append(
            {
                "Site": site,
                "Districts": len(districts.get(site, [])) or None,
                "Samples": int(samples.iloc[-1]) if len(samples) else None,
                "Modalities": site_modalities(city, districts[site])
                if site in districts
                else "unknown",
                "Rounds taken part": int(mine["error"].isna().sum()),
                "Failures": len(failures),
                "Last error": failures["error"].iloc[-1] if len(failures) else "",
            }
        )
    return pd.DataFrame(rows)


def _federation_settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """The federation part of a manifest, wherever the job put it."""
    settings: dict[str, Any] = {}
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    for source in (config.get("federation"), manifest.get("federation")):
        if isinstance(source, dict):
            settings.update(source)
    for key in ("strategy", "privacy"):
        if key in manifest:
            settings[key] = manifest[key]
    return settings


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _flatten(f"{prefix}{key} · ", item)]
    return [
        (prefix.removesuffix(" · "), json.dumps(value) if not isinstance(value, str) else value)
    ]


def strategy_and_privacy(manifest: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The strategy and privacy settings a run recorded, and what it did not record.

    Returns:
        ``(strategy, privacy, missing)``: two ``Setting`` / ``Value`` tables and
        notes in words for what the manifest lacks.
    """
    settings = _federation_settings(manifest)
    strategy, privacy = [], []
    for key, value in settings.items():
        if key == "privacy" or any(word in key.lower() for word in PRIVACY_WORDS):
            privacy.extend(_flatten(f"{key} · " if key != "privacy" else "", value))
        elif key == "strategy" or key in STRATEGY_KEYS:
            strategy.extend(_flatten(f"{key} · " if key != "strategy" else "strategy · ", value))
    missing = []
    if not any(name.startswith("strategy") for name, _ in strategy):
        missing.append("the aggregation strategy is not recorded in the manifest")
    if not privacy:
        missing.append(
            "no privacy settings are recorded (no differential privacy or secure aggregation noted)"
        )
    columns = ["Setting", "Value"]
    return pd.DataFrame(strategy, columns=columns), pd.DataFrame(privacy, columns=columns), missing
