"""Risk map page: one domain's predicted risk per district, window by window.

The sidebar's run, domain, level and search selectors drive every panel (totals,
map, legend, top districts); the time slider can play through the windows. The
view lives in the URL, so a copied link opens the same map. The page stays thin:
runs come from `app.loading`, frames and the deck from `app.components.risk_map`.
"""

from urllib.parse import urlencode

import streamlit as st

from app import controls
from app.components.risk_map import (
    build_risk_deck,
    domains_present,
    filter_districts,
    format_window,
    legend_rows,
    risk_layer_frame,
    top_districts,
    window_starts,
    window_totals,
)
from app.loading import RunFolderError, load_predictions
from app.view_state import window_key

MAP_HEIGHT_PX = 560
TOP_N = 5
PLAY_SECONDS = 1.5

runs = controls.open_page("Risk map")

run = controls.pick_run(runs)
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

spec = controls.pick_domain(domains)
min_level = controls.pick_level(spec)
search = controls.search_box()
playing = len(windows) > 1 and st.sidebar.toggle(
    "Play through the windows", key="playing", help=f"Moves on every {PLAY_SECONDS:g} s."
)
show_labels = st.sidebar.checkbox("Show district names on the map", value=False)


@st.fragment(run_every=PLAY_SECONDS if playing else None)
def risk_panels() -> None:
    """Totals, map, legend and top districts of the chosen window (replays alone)."""
    if playing:
        keys = [window_key(window) for window in windows]
        now = controls.current("window")
        position = keys.index(now) if now in keys else -1
        controls.set_current("window", keys[(position + 1) % len(keys)])
    window_start = controls.pick_window(windows, "Window start", format_window)
    position = windows.index(window_start)
    frame = risk_layer_frame(predictions, spec.name, window_start)
    if frame.empty:
        st.warning(f"No {spec.title.lower()} predictions for {format_window(window_start)}.")
        return
    shown = filter_districts(frame, min_level, search)
    previous = None
    if position > 0:
        earlier = risk_layer_frame(predictions, spec.name, windows[position - 1])
        previous = earlier[filter_districts(earlier, min_level, search)]

    for column, total in zip(st.columns(3), window_totals(frame[shown], previous), strict=True):
        column.metric(total["label"], total["value"], total["delta"], delta_color="inverse")

    map_column, side_column = st.columns([3, 1])
    with map_column:
        st.pydeck_chart(
            build_risk_deck(frame, show_labels=show_labels, height_px=MAP_HEIGHT_PX, shown=shown),
            height=MAP_HEIGHT_PX,
        )
        st.caption(
            f"{spec.description} Hover a district for its probability and level; "
            "grey districts are hidden by the filters."
        )
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

    st.subheader(f"Top {TOP_N} districts · {format_window(window_start)}")
    if not shown.any():
        st.info("No district matches the filters.")
    else:
        top = top_districts(frame[shown], n=TOP_N, previous=previous)
        ids = frame[shown].set_index("name")["district_id"]
        base = {"run": run.run_id, "domain": spec.name, "window": window_key(window_start)}
        top["Details"] = [
            "district?" + urlencode({**base, "district": ids[name]}) for name in top["District"]
        ]
        st.dataframe(
            top,
            hide_index=True,
            column_config={
                "Change (pp)": st.column_config.NumberColumn(
                    help="Against the previous window, in percentage points", format="%+.1f"
                ),
                "Details": st.column_config.LinkColumn(display_text="Why?"),
            },
        )
    controls.sync_url(["run", "domain", "window", "level", "q"])


risk_panels()
