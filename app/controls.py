"""The selectors every page shares (run, domain, window, level, search, district).

ArcGIS Dashboards-style: one set of values drives every panel, and every page.
Values live in session state under ``view_values`` (plain keys, which Streamlit
never cleans up, unlike the keys of widgets a page did not draw), so a domain
picked on the map is still picked on the district page. The URL mirrors them
(`sync_url`), and a URL that changed under the app (a shared link, a page link
with query parameters, the browser's back button) is adopted on the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

import pandas as pd
import streamlit as st

from app.loading import RunSummary, list_runs, runs_dir
from app.view_state import ALL_LEVELS, ViewState, query_from_view, view_from_query, window_key
from domains import DomainSpec, get_domain

VALUES_KEY = "view_values"
WRITTEN_KEY = "view_url_written"


def _values() -> dict[str, str]:
    """The shared values, first filled from the URL (see `adopt_url`)."""
    if VALUES_KEY not in st.session_state:
        st.session_state[VALUES_KEY] = {}
    return st.session_state[VALUES_KEY]


NO_RUNS_MESSAGE = (
    "No usable run found in `{folder}`. Make one with `make run` or `kizashi demo`, "
    "or point the `KIZASHI_RUNS` environment variable at a folder of runs."
)


def open_page(title: str) -> list[RunSummary]:
    """Start a page: adopt the URL's view, show the title, list the runs (stop if none)."""
    adopt_url()
    st.title(title)
    folder = runs_dir()
    runs = list_runs(folder)
    if not runs:
        st.info(NO_RUNS_MESSAGE.format(folder=folder), icon=":material/info:")
        st.stop()
    return runs


def adopt_url() -> None:
    """Take the values of a URL that differs from the one the app last wrote.

    Call it at the top of every page, before any selector is drawn.
    """
    current = st.query_params.to_dict()
    if current == st.session_state.get(WRITTEN_KEY):
        return
    wanted = view_from_query(current)
    values = _values()
    for spec in fields(ViewState):
        if spec.name in current:
            values[spec.name] = getattr(wanted, spec.name)


def current(name: str) -> str | None:
    """The shared value ``name`` (a `ViewState` field), or None when never set."""
    return _values().get(name)


def set_current(name: str, value: str | None) -> None:
    """Set a shared value before its selector is drawn (e.g. when playback moves on)."""
    _values()[name] = value


def _remember(name: str, key: str) -> None:
    """Widget callback: the user's choice becomes the shared value."""
    _values()[name] = st.session_state[key]


def _sticky(name: str, widget: Callable[..., Any], label: str, **kwargs: Any) -> Any:
    """Draw ``widget`` so that its value is the shared value ``name``.

    The value is handed to the widget through session state on every run, and a
    user's change comes back through ``on_change``: a widget drawn by another
    page (a new widget to Streamlit) still opens on the shared value.
    """
    key = f"widget.{name}"
    options = kwargs.get("options")
    wanted = current(name)
    if options is not None and wanted not in options:
        wanted = options[0]
    st.session_state[key] = wanted if wanted is not None else ""
    value = widget(label, key=key, on_change=_remember, args=(name, key), **kwargs)
    _values()[name] = value
    return value


def _run_label(runs: Sequence[RunSummary]) -> Callable[[str], str]:
    by_id = {run.run_id: run for run in runs}
    return lambda rid: f"{rid} ({by_id[rid].created:%Y-%m-%d %H:%M} UTC)"


def pick_run(runs: Sequence[RunSummary], label: str = "Run") -> RunSummary:
    """The run selector in the sidebar, newest first."""
    by_id = {run.run_id: run for run in runs}
    run_id = _sticky(
        "run",
        st.sidebar.selectbox,
        label,
        options=list(by_id),
        format_func=_run_label(runs),
        help="Newest run first.",
    )
    return by_id[run_id]


def pick_compare_run(runs: Sequence[RunSummary], label: str = "Compare with") -> RunSummary:
    """The second run of a comparison, in the main area."""
    by_id = {run.run_id: run for run in runs}
    run_id = _sticky(
        "compare", st.selectbox, label, options=list(by_id), format_func=_run_label(runs)
    )
    return by_id[run_id]


def pick_domain(domains: Sequence[str]) -> DomainSpec:
    """The domain selector in the sidebar; it drives every panel of every page."""
    name = _sticky(
        "domain",
        st.sidebar.selectbox,
        "Domain",
        options=list(domains),
        format_func=lambda n: get_domain(n).title,
    )
    return get_domain(name)


def pick_level(spec: DomainSpec) -> str:
    """The "lowest level shown" filter in the sidebar: ``"all"`` or a level name."""
    labels = {ALL_LEVELS: "All levels"} | {
        level.name: f"{level.label} or above" for level in spec.levels[1:]
    }
    return _sticky(
        "level", st.sidebar.selectbox, "Show levels", options=list(labels), format_func=labels.get
    )


def search_box() -> str:
    """The district search in the sidebar (name or id, any case)."""
    text = _sticky("q", st.sidebar.text_input, "Find districts", placeholder="name or id")
    return str(text).strip()


def pick_window(
    windows: Sequence[pd.Timestamp],
    label: str,
    format_func: Callable[[pd.Timestamp], str],
    *,
    slider: bool = True,
) -> pd.Timestamp:
    """The window selector in the main area: a slider, or a select box."""
    by_key = {window_key(window): window for window in windows}
    options = list(by_key)
    if len(options) == 1:
        _values()["window"] = options[0]
        st.markdown(f"{label}: **{format_func(windows[0])}**")
        return windows[0]
    widget = st.select_slider if slider else st.selectbox
    chosen = _sticky(
        "window", widget, label, options=options, format_func=lambda k: format_func(by_key[k])
    )
    return by_key[chosen]


def pick_district(options: dict[str, str], label: str = "District") -> str:
    """A district selector (id -> name) in the main area."""
    return _sticky("district", st.selectbox, label, options=list(options), format_func=options.get)


def sync_url(names: Sequence[str]) -> None:
    """Write the shared values ``names`` into the URL (and only those)."""
    values = _values()
    view = replace(ViewState(), **{name: values[name] for name in names if name in values})
    params = query_from_view(view)
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    st.session_state[WRITTEN_KEY] = params
