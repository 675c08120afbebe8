"""Runs page: every run with its manifest summary, downloads, and two runs compared.

The sidebar's run is the first run of a comparison and the one whose predictions
download (GeoJSON, CSV, GeoParquet); the second run, the domain and the window are
picked here. The difference map is red where the second run sees more risk.
"""

import pandas as pd
import streamlit as st

from app import controls
from app.components.exports import EXPORTS
from app.components.risk_map import domains_present, format_window, window_starts
from app.components.runs import (
    FULL_SCALE_PP,
    build_compare_deck,
    compare_frame,
    largest_differences,
    manifest_row,
)
from app.loading import RunFolderError, load_predictions, load_run_manifest

runs = controls.open_page("Runs")

st.dataframe(
    pd.DataFrame([manifest_row(run, load_run_manifest(run.path)) for run in runs]),
    hide_index=True,
)

run = controls.pick_run(runs)
try:
    predictions = load_predictions(run.path)
except RunFolderError as error:
    st.error(f"This run cannot be shown: {error}")
    st.stop()

st.subheader(f"Download the predictions of {run.run_id}")
st.caption(f"{len(predictions):,} rows: one per district, window and domain.")
for column, (label, (make_file, suffix, mime)) in zip(
    st.columns(len(EXPORTS)), EXPORTS.items(), strict=True
):
    column.download_button(
        label,
        data=lambda make_file=make_file: make_file(predictions),
        file_name=f"{run.run_id}-predictions.{suffix}",
        mime=mime,
        key=f"download-{suffix}",
        icon=":material/download:",
    )

st.subheader("Compare two runs")
others = [other for other in runs if other.run_id != run.run_id]
if not others:
    st.info("Only one run: make another to compare with.")
    controls.sync_url(["run"])
    st.stop()
second = controls.pick_compare_run(others)
try:
    second_predictions = load_predictions(second.path)
except RunFolderError as error:
    st.error(f"{second.run_id} cannot be shown: {error}")
    st.stop()
common_domains = [d for d in domains_present(predictions) if d in set(second_predictions["domain"])]
common_windows = sorted(set(window_starts(predictions)) & set(window_starts(second_predictions)))
if not common_domains or not common_windows:
    st.warning(f"{run.run_id} and {second.run_id} share no domain and window to compare.")
    controls.sync_url(["run", "compare"])
    st.stop()
spec = controls.pick_domain(common_domains)
window_start = controls.pick_window(common_windows, "Window", format_window, slider=False)
controls.sync_url(["run", "compare", "domain", "window"])

frame = compare_frame(predictions, second_predictions, spec.name, window_start)
if frame.empty:
    st.warning("The two runs share no district.")
    st.stop()
st.pydeck_chart(build_compare_deck(frame, run.run_id, second.run_id), height=480)
st.caption(
    f"{spec.title}, {format_window(window_start)}: {second.run_id} minus {run.run_id}. "
    f"Red: the second run sees more risk; blue: less; full colour at ±{FULL_SCALE_PP:g} "
    "percentage points."
)
st.dataframe(largest_differences(frame), hide_index=True)
