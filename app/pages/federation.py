"""Federation page: the rounds, who took part, the sites and the settings, at a glance.

For partners who joined a federation: the server's metrics over the rounds, the
sites that took part in a round on the map, a table of sites (samples, modalities,
failures), and the strategy and privacy settings from the manifest. A run that did
not record something says so instead of failing.
"""

import streamlit as st

from app import controls
from app.components.federation import (
    ABSENT,
    FAILED,
    TOOK_PART,
    curve_choices,
    metric_curves_figure,
    round_status,
    site_table,
    sites_deck,
    strategy_and_privacy,
)
from app.loading import (
    RunFolderError,
    load_federation_log,
    load_predictions,
    load_run_city,
    load_run_manifest,
    load_site_plan,
)

DEFAULT_CURVES = ("auprc-macro", "loss", "train loss")

runs = controls.open_page("Federation")
run = controls.pick_run(runs)
controls.sync_url(["run"])
try:
    log = load_federation_log(run.path)
    plan = load_site_plan(run.path)
    manifest = load_run_manifest(run.path)
    city = load_run_city(run.path)
except RunFolderError as error:
    st.error(f"This run cannot be shown: {error}")
    st.stop()
if log.missing:
    st.info("Not in this run: " + "; ".join(log.missing) + ".", icon=":material/info:")

rounds = [int(r) for r in log.rounds["round"] if r > 0]
first, second, third = st.columns(3)
first.metric("Rounds", len(rounds))
second.metric("Sites in the plan", len(plan) if plan else manifest.get("n_sites", "unknown"))
third.metric("Failed site replies", int(log.rounds["n_failures"].sum()) if rounds else 0)

st.subheader("Metrics over the rounds")
choices = curve_choices(log)
if choices:
    chosen = st.multiselect(
        "Curves",
        choices,
        default=[c for c in DEFAULT_CURVES if c in choices] or choices[:1],
        key="curves",
        help="Server-side scores on the hold-out windows, and the sites' mean training loss.",
    )
    st.plotly_chart(metric_curves_figure(log, chosen))
else:
    st.caption("No metric curves recorded.")

st.subheader("Who took part")
if rounds:
    round_number = (
        st.select_slider("Round", options=rounds, value=rounds[-1], key="round")
        if len(rounds) > 1
        else rounds[0]
    )
    status = round_status(log, plan, round_number)
    counts = {s: list(status.values()).count(s) for s in ("took part", "failed", "not asked")}
    st.caption(
        f"Round {round_number}: {counts['took part']} sites took part, {counts['failed']} failed, "
        f"{counts['not asked']} not asked. "
        + " · ".join(
            f'<span style="color:rgb({c[0]},{c[1]},{c[2]})">■</span> {label}'
            for label, c in (("took part", TOOK_PART), ("failed", FAILED), ("not asked", ABSENT))
        ),
        unsafe_allow_html=True,
    )
    if plan:
        predictions = load_predictions(run.path)
        districts = predictions.drop_duplicates("district_id")[["district_id", "name", "geometry"]]
        st.pydeck_chart(sites_deck(districts, plan, status), height=420)
    else:
        st.caption("This run keeps no site plan (sites.json), so sites cannot be mapped.")
else:
    st.caption("No rounds recorded.")

st.subheader("Sites")
table = site_table(log, plan, city)
if table.empty:
    st.caption("No sites recorded.")
else:
    st.dataframe(table, hide_index=True)

st.subheader("Strategy and privacy")
strategy, privacy, missing = strategy_and_privacy(manifest)
strategy_column, privacy_column = st.columns(2)
for column, title, settings in (
    (strategy_column, "Strategy", strategy),
    (privacy_column, "Privacy", privacy),
):
    column.markdown(f"**{title}**")
    if settings.empty:
        column.caption("Not recorded.")
    else:
        column.dataframe(settings, hide_index=True)
for note in missing:
    st.caption(f"Missing: {note}.")
