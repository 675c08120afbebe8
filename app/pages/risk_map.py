"""Risk map page: one domain's predicted risk per district for one time window.

The page stays thin: runs come from `app.loading`, frames and the deck from
`app.components.risk_map`; here we only lay out widgets and hand values along.
"""

import streamlit as st

from app.components.risk_map import (
    build_risk_deck,
    domains_present,
    format_window,
    legend_rows,
    risk_layer_frame,
    top_districts,
    window_starts,
)
from app.loading import RunFolderError, list_runs, load_predictions, runs_dir
from domains import get_domain

NO_RUNS_MESSAGE = (
    "No usable run found in `{folder}`. Make one with `make run` or `kizashi demo`, "
    "or point the `KIZASHI_RUNS` environment variable at a folder of runs."
)
MAP_HEIGHT_PX = 560

st.title("Risk map")

folder = runs_dir()
runs = list_runs(folder)
if not runs:
    st.info(NO_RUNS_MESSAGE.format(folder=folder), icon=":material/info:")
    st.stop()

runs_by_id = {run.run_id: run for run in runs}
run_id = st.sidebar.selectbox(
    "Run",
    list(runs_by_id),
    format_func=lambda rid: f"{rid} ({runs_by_id[rid].created:%Y-%m-%d %H:%M} UTC)",
    help="Newest run first.",
)
run = runs_by_id[run_id]
city = f" · city **{run.city_name}**" if run.city_name else ""
st.caption(
    f"Run **{run.run_id}** · kind **{run.kind or 'unknown'}** · "
    f"created **{run.created:%Y-%m-%d %H:%M:%S} UTC**{city}"
)

try:
    predictions = load_predictions(run.path)
except RunFolderError as error:
    st.error(f"This run cannot be shown: {error}")
    st.stop()

domains = domains_present(predictions)
windows = window_starts(predictions)
if not domains or not windows:
    st.warning("This run has no predictions for any known domain.")
    st.stop()

domain_column, window_column = st.columns([1, 2])
domain = domain_column.selectbox("Domain", domains, format_func=lambda name: get_domain(name).title)
if len(windows) > 1:
    window_start = window_column.select_slider(
        "Window start", options=windows, value=windows[0], format_func=format_window
    )
else:
    window_start = windows[0]
    window_column.markdown(f"Window start: **{format_window(window_start)}**")

spec = get_domain(domain)
frame = risk_layer_frame(predictions, domain, window_start)
if frame.empty:
    st.warning(f"No {spec.title.lower()} predictions for {format_window(window_start)}.")
    st.stop()

map_column, side_column = st.columns([3, 1])
with map_column:
    show_labels = st.checkbox("Show district names on the map", value=False)
    st.pydeck_chart(
        build_risk_deck(frame, show_labels=show_labels, height_px=MAP_HEIGHT_PX),
        height=MAP_HEIGHT_PX,
    )
    st.caption(f"{spec.description} Hover a district for its probability and level.")

with side_column:
    st.subheader("Levels")
    for row in legend_rows(spec):
        st.markdown(
            f'<span style="display:inline-block;width:0.9em;height:0.9em;'
            f'background:{row["color"]};border:1px solid #444;margin-right:0.4em"></span>'
            f"**{row['label']}** ({row['range']})<br/>"
            f"<small>{row['wording']}</small>",
            unsafe_allow_html=True,
        )

st.subheader(f"Top 5 districts · {format_window(window_start)}")
st.dataframe(top_districts(frame, n=5), hide_index=True)
