"""District page: one district's risk over time, and why it is high.

Risk over time per domain; the hotspot-trend label of the district; for the chosen
window, which kind of data drove the risk (per-modality contributions) and which
items (the reports, unusual readings and camera frames of the look-back context
the model saw). The sidebar's run, domain and search selectors are shared with the
other pages; the view lives in the URL.
"""

import streamlit as st

from app import controls
from app.components.district import (
    ContextSpan,
    contributions_figure,
    district_options,
    frames_in_context,
    modality_contributions,
    reports_in_context,
    risk_over_time,
    risk_over_time_figure,
    sensor_figure,
    sensor_readings,
    unusual_readings,
    why_sentence,
)
from app.components.risk_map import domains_present, format_probability, format_window
from app.hotspots import LABEL_WORDING
from app.loading import (
    RunFolderError,
    load_district_trends,
    load_predictions,
    load_run_city,
    load_run_manifest,
)

DEFAULT_LOOKBACK_HOURS = 24

runs = controls.open_page("District")
run = controls.pick_run(runs)
try:
    predictions = load_predictions(run.path)
    city = load_run_city(run.path)
except RunFolderError as error:
    st.error(f"This run cannot be shown: {error}")
    st.stop()
domains = domains_present(predictions)
if not domains:
    st.warning("This run has no predictions for any known domain.")
    st.stop()
spec = controls.pick_domain(domains)
search = controls.search_box()
options = district_options(predictions, search)
if not options:
    st.info(f"No district matches “{search}”.")
    st.stop()

district_column, window_column = st.columns(2)
with district_column:
    district_id = controls.pick_district(options)
windows = sorted(predictions["window_start"].unique())
with window_column:
    window_start = controls.pick_window(windows, "Window", format_window, slider=False)
controls.sync_url(["run", "domain", "window", "q", "district"])

trends = load_district_trends(run.path, spec.name).set_index("district_id")
row = predictions[
    (predictions["district_id"] == district_id)
    & (predictions["domain"] == spec.name)
    & (predictions["window_start"] == window_start)
]
trend = str(trends["trend"].get(district_id, "no pattern"))
level_label = {level.name: level.label for level in spec.levels}
probability_column, level_column, trend_column = st.columns(3)
if not row.empty:
    probability_column.metric(f"{spec.title}", format_probability(row["probability"].iloc[0]))
    level_column.metric("Level", level_label.get(row["level"].iloc[0], row["level"].iloc[0]))
trend_column.metric("Hotspot trend", trend.capitalize(), help=LABEL_WORDING[trend])
st.caption(f"Hotspot trend over the run's windows: {LABEL_WORDING[trend]}")

st.subheader("Risk over time")
st.plotly_chart(risk_over_time_figure(risk_over_time(predictions, district_id), window_start))

st.subheader(f"Why · {spec.title.lower()} · {format_window(window_start)}")
contributions = modality_contributions(predictions, district_id, spec.name, window_start)
st.markdown(why_sentence(contributions))
if not contributions.empty:
    st.plotly_chart(contributions_figure(contributions))

if city is None:
    st.info("This run keeps no city folder, so its reports, readings and frames cannot be shown.")
    st.stop()
manifest = load_run_manifest(run.path)
federation = manifest.get("config", {}).get("federation", {})
lookback = int(federation.get("lookback-hours", DEFAULT_LOOKBACK_HOURS))
span = ContextSpan.before(window_start, lookback)
st.caption(
    f"What the model saw: the {lookback} hours before the window "
    f"({format_window(span.start)} to {format_window(span.end)})."
)
reports_column, readings_column = st.columns(2)
with reports_column:
    st.markdown("**Reports**")
    reports = reports_in_context(city.reports, district_id, span)
    if reports.empty:
        st.caption("No reports in this context.")
    else:
        st.dataframe(reports, hide_index=True)
with readings_column:
    st.markdown("**Most unusual readings** (against this district's usual value)")
    unusual = unusual_readings(city.sensors, district_id, span)
    if unusual.empty:
        st.caption("No sensor readings in this context.")
    else:
        st.dataframe(unusual.round({"value": 2, "usual": 2, "z": 1}), hide_index=True)
readings = sensor_readings(city.sensors, district_id, span)
if not readings.empty:
    st.plotly_chart(sensor_figure(readings))
frames = frames_in_context(city.images, district_id, span)
if frames.empty:
    st.caption("No camera frames in this context.")
else:
    st.markdown("**Camera frames** (latest first)")
    st.image(
        [city.frames[int(index)] for index in frames["frame"]],
        caption=[format_window(time) for time in frames["timestamp"]],
        width=160,
    )

st.subheader(f"Hotspot trends · {spec.title.lower()}")
shown = trends[trends.index.isin(options)].reset_index()
st.dataframe(
    shown.rename(columns={"name": "District", "trend": "Trend", "hot_windows": "Hot windows"})[
        ["District", "Trend", "Hot windows"]
    ],
    hide_index=True,
)
