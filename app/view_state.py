"""The state of a view as URL query parameters, so a shared link reproduces it.

Pure functions (no Streamlit): `app.controls` reads the URL once per session with
`view_from_query`, keeps the values in session state, and writes them back with
`query_from_view` after every run. Keys are short and readable::

    ?run=20260601-demo&domain=crowd&window=2026-06-07T12:00Z&level=high&q=kita&district=D0004

Windows are written as UTC minutes (``2026-06-07T12:00Z``), the form the window
controls use as their option values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import pandas as pd

WINDOW_FORMAT = "%Y-%m-%dT%H:%MZ"
ALL_LEVELS = "all"


@dataclass(frozen=True)
class ViewState:
    """What a link pins down; None (or the default) means "not in the link".

    Attributes:
        run: Run id.
        domain: Domain name.
        window: Window start as `window_key`.
        level: Lowest level shown (a level name), or ``"all"``.
        q: District search text.
        district: District id of the district page.
        compare: Run id to compare with on the runs page.
    """

    run: str | None = None
    domain: str | None = None
    window: str | None = None
    level: str = ALL_LEVELS
    q: str = ""
    district: str | None = None
    compare: str | None = None


def window_key(window_start: pd.Timestamp) -> str:
    """A window start as its URL and option value, e.g. ``2026-06-07T12:00Z``."""
    return pd.Timestamp(window_start).tz_convert("UTC").strftime(WINDOW_FORMAT)


def view_from_query(params: Mapping[str, str | list[str]]) -> ViewState:
    """Read the known keys of a query string; unknown keys are ignored.

    A key given twice keeps its last value, as a browser would show it.
    """
    values = {}
    for spec in fields(ViewState):
        raw = params.get(spec.name)
        if isinstance(raw, list):
            raw = raw[-1] if raw else None
        if raw is not None and str(raw).strip():
            values[spec.name] = str(raw).strip()
    return ViewState(**values)


def query_from_view(view: ViewState) -> dict[str, str]:
    """The query parameters of a view, leaving out what is unset or default."""
    default = ViewState()
    return {
        spec.name: str(getattr(view, spec.name))
        for spec in fields(ViewState)
        if getattr(view, spec.name) not in (None, "", getattr(default, spec.name))
    }
