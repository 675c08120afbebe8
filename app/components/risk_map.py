"""Pure pieces of the risk map page: frames, legend rows and the pydeck choropleth.

Nothing here calls Streamlit, so tests can check colours, rows and the deck JSON
directly. Colours, level labels and wording all come from the domain's
`DomainSpec`, the one place a sector's scale is defined.

No map tiles are reachable offline, so the deck has no basemap: district borders,
optional name labels and the tooltip (district, domain, probability, level) carry
the geographic context on their own.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import geopandas as gpd
import pandas as pd
import pydeck as pdk
import shapely

from domains import DOMAINS, DomainSpec, get_domain

FILL_ALPHA = 200
FILTERED_OUT_COLOR = [220, 220, 220, 120]
LABEL_COLOR = [20, 20, 20, 255]
TOOLTIP_HTML = (
    "<b>{name}</b><br/>{domain_title}<br/>"
    "Probability: <b>{probability_text}</b><br/>Level: <b>{level_label}</b>"
)
_LAYER_COLUMNS = [
    "district_id",
    "name",
    "probability_text",
    "expected_count",
    "level_label",
    "domain_title",
    "fill_color",
    "geometry",
]


def window_starts(predictions: pd.DataFrame) -> list[pd.Timestamp]:
    """The run's distinct window starts, earliest first."""
    return sorted(pd.unique(predictions["window_start"]))


def domains_present(predictions: pd.DataFrame) -> list[str]:
    """Registered domains that have predictions, in registry order.

    Unknown domain names are left out: without a `DomainSpec` there are no level
    colours or wording to show them with.
    """
    present = set(predictions["domain"].unique())
    return [name for name in DOMAINS if name in present]


def format_window(window_start: pd.Timestamp) -> str:
    """A window start as the slider shows it, e.g. ``2024-06-01 06:00 UTC``."""
    return pd.Timestamp(window_start).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def format_probability(probability: float) -> str:
    """A probability as a percentage with one decimal, e.g. ``12.5%``."""
    return f"{100.0 * probability:.1f}%"


def risk_layer_frame(
    predictions: gpd.GeoDataFrame, domain: str, window_start: pd.Timestamp
) -> gpd.GeoDataFrame:
    """One row per district for one domain and window, ready to draw.

    The stored ``level`` decides the colour; a level name the domain does not know
    falls back to `DomainSpec.level_for` on the probability, so a stale run still
    draws with the current scale.

    Args:
        predictions: A run's predictions (see `app.loading.read_predictions`).
        domain: Registered domain name.
        window_start: One of the run's window starts (tz-aware UTC).

    Returns:
        Rows sorted by district id with the prediction columns plus
        ``level_label``, ``fill_color`` (``[r, g, b, a]``), ``probability_text``,
        ``domain_title`` and ``tooltip``. Empty when nothing matches.
    """
    spec = get_domain(domain)
    by_name = {level.name: level for level in spec.levels}
    chosen = predictions[
        (predictions["domain"] == domain) & (predictions["window_start"] == window_start)
    ]
    frame = chosen.sort_values("district_id").reset_index(drop=True).copy()
    levels = [
        by_name.get(name) or spec.level_for(float(probability))
        for name, probability in zip(frame["level"], frame["probability"], strict=True)
    ]
    frame["level"] = [level.name for level in levels]
    frame["level_label"] = [level.label for level in levels]
    frame["fill_color"] = [[*level.color, FILL_ALPHA] for level in levels]
    frame["probability_text"] = [format_probability(p) for p in frame["probability"]]
    frame["domain_title"] = spec.title
    frame["tooltip"] = [
        f"{name} - {spec.title}: {text} ({label})"
        for name, text, label in zip(
            frame["name"], frame["probability_text"], frame["level_label"], strict=True
        )
    ]
    return frame


def filter_districts(frame: pd.DataFrame, min_level: str, search: str) -> pd.Series:
    """Which rows of a `risk_layer_frame` the level and search filters keep.

    Args:
        frame: Output of `risk_layer_frame` for one domain and window.
        min_level: Lowest level kept (a level name of the frame's domain), or
            ``"all"``.
        search: Case-insensitive text that the district name or id must contain;
            empty keeps every district.

    Returns:
        A boolean mask aligned with ``frame``.
    """
    keep = pd.Series(True, index=frame.index)
    if min_level != "all" and not frame.empty:
        spec = get_domain(str(frame["domain"].iloc[0]))
        rank = {level.name: position for position, level in enumerate(spec.levels)}
        keep &= frame["level"].map(rank) >= rank[min_level]
    if search:
        text = search.casefold()
        names = frame["name"].astype(str).str.casefold().str.contains(text, regex=False)
        ids = frame["district_id"].astype(str).str.casefold().str.contains(text, regex=False)
        keep &= names | ids
    return keep


def change_against(frame: pd.DataFrame, previous: pd.DataFrame | None) -> pd.Series:
    """Probability change per district against the previous window, in percentage points.

    NaN where there is no previous window or the district was not in it.
    """
    if previous is None or previous.empty:
        return pd.Series(float("nan"), index=frame.index)
    before = previous.set_index("district_id")["probability"]
    return (frame["probability"] - frame["district_id"].map(before)) * 100.0


def top_districts(
    frame: pd.DataFrame, n: int = 5, previous: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The ``n`` districts with the highest probability in a `risk_layer_frame`.

    Args:
        frame: The (filtered) rows of one domain and window.
        n: How many rows.
        previous: The same domain's rows of the previous window, for ``Change``.

    Returns:
        A display table with ``District``, ``Probability``, ``Change (pp)`` (against
        the previous window; empty for the first), ``Expected events`` and ``Level``
        columns, highest risk first (ties broken by district id).
    """
    ranked = frame.assign(change=change_against(frame, previous))
    top = ranked.sort_values(["probability", "district_id"], ascending=[False, True]).head(n)
    return pd.DataFrame(
        {
            "District": top["name"].to_numpy(),
            "Probability": top["probability_text"].to_numpy(),
            "Change (pp)": top["change"].round(1).to_numpy(),
            "Expected events": top["expected_count"].round(2).to_numpy(),
            "Level": top["level_label"].to_numpy(),
        }
    )


def at_or_above(frame: pd.DataFrame, level_name: str) -> int:
    """How many rows of one domain's frame reach the level ``level_name``."""
    if frame.empty:
        return 0
    spec = get_domain(str(frame["domain"].iloc[0]))
    rank = {level.name: position for position, level in enumerate(spec.levels)}
    return int((frame["level"].map(rank) >= rank[level_name]).sum())


def percent_change(now: float, before: float | None) -> str | None:
    """``+12%`` / ``-3%`` / ``0%`` from ``before`` to ``now``; None when there is no base."""
    if before is None or before == 0 or math.isnan(before):
        return None
    return f"{100.0 * (now - before) / before:+.0f}%"


def window_totals(frame: pd.DataFrame, previous: pd.DataFrame | None) -> list[dict]:
    """Headline numbers of the shown districts, each with its change (Vision Zero style).

    Returns:
        Rows with ``label``, ``value`` (text) and ``delta`` (text or None): districts
        at high or above, expected events, mean probability.
    """
    before = previous if previous is not None and not previous.empty else None
    high_now = at_or_above(frame, "high")
    high_before = at_or_above(before, "high") if before is not None else None
    events_now = float(frame["expected_count"].sum())
    events_before = float(before["expected_count"].sum()) if before is not None else None
    mean_now = float(frame["probability"].mean()) if len(frame) else 0.0
    mean_before = float(before["probability"].mean()) if before is not None else None
    return [
        {
            "label": "Districts at high or above",
            "value": f"{high_now} of {len(frame)}",
            "delta": None if high_before is None else f"{high_now - high_before:+d}",
        },
        {
            "label": "Expected events",
            "value": f"{events_now:.1f}",
            "delta": percent_change(events_now, events_before),
        },
        {
            "label": "Mean probability",
            "value": format_probability(mean_now),
            "delta": percent_change(mean_now, mean_before),
        },
    ]


def legend_rows(domain: DomainSpec | str) -> list[dict[str, str]]:
    """One legend row per level, lowest first: label, hex colour, range and wording."""
    spec = get_domain(domain) if isinstance(domain, str) else domain
    rows = []
    for level in spec.levels:
        red, green, blue = level.color
        rows.append(
            {
                "name": level.name,
                "label": level.label,
                "color": f"#{red:02x}{green:02x}{blue:02x}",
                "range": f"from {format_probability(level.min_probability)}",
                "wording": level.wording,
            }
        )
    return rows


def view_state_for(
    frame: gpd.GeoDataFrame, width_px: int = 900, height_px: int = 560
) -> pdk.ViewState:
    """A top-down view centred on the districts' bounds, zoomed to fit them."""
    west, south, east, north = frame.total_bounds
    longitude, latitude = (west + east) / 2.0, (south + north) / 2.0
    # Web-Mercator: the world is 512 * 2**zoom px wide; latitude spans stretch by 1/cos(lat).
    lon_span = max(east - west, 1e-6)
    lat_span = max((north - south) / max(math.cos(math.radians(latitude)), 0.1), 1e-6)
    zoom = min(
        math.log2(width_px * 360.0 / (512.0 * lon_span)),
        math.log2(height_px * 360.0 / (512.0 * lat_span)),
    )
    return pdk.ViewState(
        longitude=float(longitude),
        latitude=float(latitude),
        zoom=float(min(max(zoom - 0.2, 1.0), 18.0)),
        pitch=0,
        bearing=0,
    )


COORDINATE_DIGITS = 5  # about a metre: finer only fattens what the browser must parse
BORDER_SHARE = 0.03  # each district drawn inset by this share of its typical width


def inset_districts(geometry: gpd.GeoSeries, share: float = BORDER_SHARE) -> gpd.GeoSeries:
    """The districts shrunk a little, so the gaps between them draw the borders.

    Borders as gaps cost the browser nothing: a stroked outline is a second
    deck.gl layer (a path layer) whose set-up took 2-3 s of a 1,000-district map's
    render under software WebGL, where a fill-only map took under 1 s. The inset
    is a share of the median district width (in metres, in the districts' UTM
    zone); a district too thin to shrink keeps its shape.
    """
    if geometry.empty or geometry.crs is None:
        return geometry
    metric = geometry.to_crs(geometry.estimate_utm_crs())
    gap = share * float(metric.area.median()) ** 0.5
    shrunk = metric.buffer(-gap)
    shrunk = shrunk.where(~(shrunk.is_empty | shrunk.isna()), metric)
    return shrunk.to_crs(geometry.crs)


def _rounded(coordinates, digits: int = COORDINATE_DIGITS):
    """GeoJSON coordinates (nested lists) rounded to ``digits`` decimals."""
    if coordinates and isinstance(coordinates[0], (int, float)):
        return [round(value, digits) for value in coordinates]
    return [_rounded(part, digits) for part in coordinates]


def district_features(drawn: gpd.GeoDataFrame) -> dict:
    """The districts, inset for their borders, as GeoJSON rounded to about a metre.

    Only the properties are serialised on each render; the geometry comes from
    `drawn_geometries`, which a map of the same districts has already computed.
    """
    geometry = drawn.geometry
    nothing = gpd.GeoSeries([None] * len(drawn), index=drawn.index, crs=geometry.crs)
    collection = json.loads(drawn.set_geometry(nothing).to_json(drop_id=True))
    crs = geometry.crs.to_wkt() if geometry.crs is not None else ""
    shapes = drawn_geometries(tuple(shapely.to_wkb(geometry.values)), crs)
    for feature, shape in zip(collection["features"], shapes, strict=True):
        feature["geometry"] = shape
    return collection


@lru_cache(maxsize=8)
def drawn_geometries(wkb: tuple[bytes | None, ...], crs: str) -> tuple[dict | None, ...]:
    """The districts' geometries, inset and rounded, as GeoJSON geometry objects.

    ``wkb`` holds one geometry each and ``crs`` is their CRS as WKT ("" for none).
    Insetting and writing them was most of the 0.2 s each map of 1,000 districts
    took to build on every render (0.04 s with this cache), though the districts
    change only with the city: the result is kept per set of geometries and shared
    between maps, so callers must not change it.
    """
    geometry = gpd.GeoSeries(shapely.from_wkb(list(wkb)), crs=crs or None)
    features = json.loads(inset_districts(geometry).to_json(drop_id=True))["features"]
    shapes = [feature["geometry"] for feature in features]
    for shape in shapes:
        if shape and "coordinates" in shape:
            shape["coordinates"] = _rounded(shape["coordinates"])
    return tuple(shapes)


def district_layer(drawn: gpd.GeoDataFrame, layer_id: str, **options) -> pdk.Layer:
    """Districts filled with their ``fill_color`` column, borders left as gaps (every map)."""
    return pdk.Layer(
        "GeoJsonLayer",
        data=district_features(drawn),
        id=layer_id,
        pickable=True,
        filled=True,
        stroked=False,
        get_fill_color="properties.fill_color",
        **options,
    )


def district_deck(
    layers: list[pdk.Layer], frame: gpd.GeoDataFrame, tooltip_html: str, height_px: int = 560
) -> pdk.Deck:
    """A map of ``layers`` fitted to ``frame``'s districts, without a basemap (none offline).

    pydeck's default ``map_style`` is kept on purpose: with no provider it is a
    placeholder that Streamlit reads as "no basemap", where ``map_style=None``
    makes Streamlit fetch Carto's basemap in every planner's browser.
    """
    return pdk.Deck(
        layers=layers,
        initial_view_state=view_state_for(frame, height_px=height_px),
        map_provider=None,
        tooltip={"html": tooltip_html, "style": {"fontSize": "13px"}},
    )


def build_risk_deck(
    frame: gpd.GeoDataFrame,
    *,
    show_labels: bool = False,
    height_px: int = 560,
    shown: pd.Series | None = None,
) -> pdk.Deck:
    """A choropleth of one domain and window, with outlines and a tooltip.

    Args:
        frame: Output of `risk_layer_frame` (must not be empty).
        show_labels: Also write each district's name at its centre.
        height_px: Intended chart height, used to fit the zoom.
        shown: Mask of the districts the filters keep (`filter_districts`); the
            others are drawn light grey, so the city keeps its shape.

    Returns:
        A `pydeck.Deck` with a pickable ``GeoJsonLayer`` (id ``risk-districts``),
        no basemap (`district_deck`) and a tooltip with
        district name, domain title, probability in percent and level label.
    """
    drawn = frame[_LAYER_COLUMNS].copy()
    if shown is not None:
        drawn["fill_color"] = [
            color if keep else FILTERED_OUT_COLOR
            for color, keep in zip(drawn["fill_color"], shown, strict=True)
        ]
    layers = [district_layer(drawn, "risk-districts", auto_highlight=True)]
    if show_labels:
        points = frame.geometry.representative_point()
        labels = [
            {"name": name, "position": [point.x, point.y]}
            for name, point in zip(frame["name"], points, strict=True)
        ]
        layers.append(
            pdk.Layer(
                "TextLayer",
                data=labels,
                id="district-labels",
                get_position="position",
                get_text="name",
                get_size=12,
                get_color=LABEL_COLOR,
                character_set="auto",
                pickable=False,
            )
        )
    return district_deck(layers, frame, TOOLTIP_HTML, height_px=height_px)
