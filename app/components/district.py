"""Pure pieces of the district page: risk over time, the why of a risk, its context.

"Why" has two parts. The run holds per-modality contributions (how much the
probability drops when the model is denied that modality), which say *which kind*
of data drove the risk. The city's observations in the window's look-back context
(the reports the text encoder read, the readings the sensor encoder read, the
frames the image encoder saw) say *which items*: readings are ranked by how far
they sit from the district's usual value over the whole record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import xarray as xr

from domains import DOMAINS, get_domain

MODALITY_TITLES = {
    "image": "Camera frames",
    "text": "Text reports",
    "sensor": "Sensor readings",
    "graph": "District and neighbours",
}


@dataclass(frozen=True)
class ContextSpan:
    """The observations a prediction saw: ``[start, end)`` before the window start."""

    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def before(cls, window_start: pd.Timestamp, lookback_hours: int) -> ContextSpan:
        """The look-back context of a window."""
        return cls(window_start - pd.Timedelta(hours=lookback_hours), window_start)


def district_options(predictions: pd.DataFrame, search: str = "") -> dict[str, str]:
    """District id -> name of the run, sorted by name, filtered by the search text."""
    pairs = predictions[["district_id", "name"]].drop_duplicates().sort_values(["name"])
    text = search.casefold()
    return {
        str(d): str(n)
        for d, n in zip(pairs["district_id"], pairs["name"], strict=True)
        if not text or text in str(n).casefold() or text in str(d).casefold()
    }


def risk_over_time(predictions: pd.DataFrame, district_id: str) -> pd.DataFrame:
    """One district's probability per window and domain, earliest first.

    Returns:
        ``window_start``, ``domain``, ``title``, ``probability``, ``level``.
    """
    mine = predictions[predictions["district_id"] == district_id]
    frame = pd.DataFrame(mine[["window_start", "domain", "probability", "level"]])
    frame = frame[frame["domain"].isin(DOMAINS)]
    frame["title"] = [get_domain(name).title for name in frame["domain"]]
    return frame.sort_values(["domain", "window_start"]).reset_index(drop=True)


def risk_over_time_figure(series: pd.DataFrame, window_start: pd.Timestamp) -> go.Figure:
    """Line chart of `risk_over_time`, one line per domain, the chosen window marked."""
    figure = go.Figure()
    for name, rows in series.groupby("domain", sort=False):
        figure.add_trace(
            go.Scatter(
                x=rows["window_start"],
                y=rows["probability"] * 100.0,
                mode="lines+markers",
                name=get_domain(str(name)).title,
            )
        )
    figure.add_vline(x=window_start, line_dash="dot", line_color="grey")
    figure.update_layout(
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis_title="Probability (%)",
        legend={"orientation": "h"},
    )
    return figure


def modality_contributions(
    predictions: pd.DataFrame, district_id: str, domain: str, window_start: pd.Timestamp
) -> pd.DataFrame:
    """Per-modality contributions of one prediction, largest first.

    Returns:
        ``modality``, ``title``, ``contribution_pp`` (probability lost without it,
        in percentage points) and ``share`` (of the positive contributions, 0-1).
        Empty when the run has no ``contribution_<modality>`` columns.
    """
    columns = [c for c in predictions.columns if c.startswith("contribution_")]
    row = predictions[
        (predictions["district_id"] == district_id)
        & (predictions["domain"] == domain)
        & (predictions["window_start"] == window_start)
    ]
    if not columns or row.empty:
        return pd.DataFrame(columns=["modality", "title", "contribution_pp", "share"])
    values = row.iloc[0][columns].astype(float)
    names = [c.removeprefix("contribution_") for c in columns]
    positive = float(values.clip(lower=0).sum())
    table = pd.DataFrame(
        {
            "modality": names,
            "title": [MODALITY_TITLES.get(name, name) for name in names],
            "contribution_pp": values.to_numpy() * 100.0,
            "share": values.clip(lower=0).to_numpy() / positive if positive > 0 else 0.0,
        }
    )
    return table.sort_values("contribution_pp", ascending=False).reset_index(drop=True)


def why_sentence(contributions: pd.DataFrame) -> str:
    """One plain sentence that names the data that drove the risk most."""
    if contributions.empty:
        return "This run does not record which data drove its predictions."
    leading = contributions.iloc[0]
    if leading["contribution_pp"] <= 0:
        return "No single kind of data raised this risk; it is the model's baseline."
    return (
        f"{leading['title']} drove this risk most: without them the probability would be "
        f"{leading['contribution_pp']:.1f} percentage points lower "
        f"({100 * leading['share']:.0f}% of what raised it)."
    )


def contributions_figure(contributions: pd.DataFrame) -> go.Figure:
    """Horizontal bars of `modality_contributions`."""
    figure = go.Figure(
        go.Bar(
            x=contributions["contribution_pp"],
            y=contributions["title"],
            orientation="h",
            marker_color="#c00000",
        )
    )
    figure.update_layout(
        height=220,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title="Probability lost without it (pp)",
        yaxis={"autorange": "reversed"},
    )
    return figure


def reports_in_context(reports: pd.DataFrame, district_id: str, span: ContextSpan) -> pd.DataFrame:
    """The district's reports inside the context, newest first."""
    mine = reports[
        (reports["district_id"] == district_id)
        & (reports["timestamp"] >= span.start)
        & (reports["timestamp"] < span.end)
    ]
    return pd.DataFrame(mine[["timestamp", "source", "text"]]).sort_values(
        "timestamp", ascending=False, ignore_index=True
    )


def sensor_readings(sensors: xr.Dataset, district_id: str, span: ContextSpan) -> pd.DataFrame:
    """The district's readings inside the context, long: ``time``, ``channel``, ``value``."""
    if district_id not in sensors["district"].values:
        return pd.DataFrame(columns=["time", "channel", "value"])
    start, end = (t.tz_convert("UTC").tz_localize(None) for t in (span.start, span.end))
    window = sensors.sel(district=district_id).sel(time=slice(start, end))
    frame = window.to_dataframe().drop(columns="district", errors="ignore").reset_index()
    frame = frame[frame["time"] < end]
    long = frame.melt(id_vars="time", var_name="channel", value_name="value").dropna()
    long["time"] = pd.to_datetime(long["time"]).dt.tz_localize("UTC")
    return long.reset_index(drop=True)


def unusual_readings(
    sensors: xr.Dataset, district_id: str, span: ContextSpan, top: int = 5
) -> pd.DataFrame:
    """The context's readings furthest from the district's usual value, per channel.

    "Usual" is the channel's median over the district's whole record; distance is
    in standard deviations (z). One row per channel (its most unusual reading),
    the ``top`` most unusual channels first.
    """
    readings = sensor_readings(sensors, district_id, span)
    if readings.empty:
        return pd.DataFrame(columns=["channel", "time", "value", "usual", "z"])
    record = sensors.sel(district=district_id)
    rows = []
    for channel, rows_of_channel in readings.groupby("channel"):
        values = record[channel].values.astype(float)
        usual, spread = np.nanmedian(values), np.nanstd(values)
        deviation = (rows_of_channel["value"] - usual) / (spread if spread > 0 else 1.0)
        worst = deviation.abs().idxmax()
        rows.append(
            {
                "channel": channel,
                "time": rows_of_channel.loc[worst, "time"],
                "value": float(rows_of_channel.loc[worst, "value"]),
                "usual": float(usual),
                "z": float(deviation[worst]),
            }
        )
    table = pd.DataFrame(rows)
    return table.reindex(table["z"].abs().sort_values(ascending=False).index).head(top)


def sensor_figure(readings: pd.DataFrame) -> go.Figure:
    """One small line per channel of `sensor_readings`, stacked."""
    channels = list(dict.fromkeys(readings["channel"]))
    figure = go.Figure()
    for position, channel in enumerate(channels, start=1):
        rows = readings[readings["channel"] == channel]
        figure.add_trace(
            go.Scatter(x=rows["time"], y=rows["value"], name=channel, yaxis=f"y{position}")
        )
    n = max(len(channels), 1)
    layout = {"height": 110 * n + 40, "margin": {"l": 10, "r": 10, "t": 10, "b": 10}}
    for position, channel in enumerate(channels, start=1):
        top = 1 - (position - 1) / n
        layout[f"yaxis{position if position > 1 else ''}"] = {
            "domain": [max(top - 1 / n + 0.04, 0), top],
            "title": {"text": channel, "font": {"size": 10}},
        }
    figure.update_layout(**layout, showlegend=False)
    return figure


def frames_in_context(
    images: pd.DataFrame, district_id: str, span: ContextSpan, limit: int = 4
) -> pd.DataFrame:
    """The district's latest camera frames inside the context: ``timestamp``, ``frame``."""
    mine = images[
        (images["district_id"] == district_id)
        & (images["timestamp"] >= span.start)
        & (images["timestamp"] < span.end)
    ]
    return (
        pd.DataFrame(mine[["timestamp", "frame"]])
        .sort_values("timestamp", ascending=False)
        .head(limit)
        .reset_index(drop=True)
    )
