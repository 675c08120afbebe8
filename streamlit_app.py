"""Kizashi's Streamlit entry point: only the frame that lists the pages.

Run it with ``streamlit run streamlit_app.py``. Each page lives in ``app/pages/``;
append a new ``st.Page`` to ``PAGES`` to add one. The app only reads run folders
(see ``app/loading.py``) and never trains.
"""

import streamlit as st

PAGES = [
    st.Page("app/pages/risk_map.py", title="Risk map", icon=":material/map:", default=True),
    st.Page("app/pages/district.py", title="District", icon=":material/location_city:"),
    st.Page("app/pages/federation.py", title="Federation", icon=":material/hub:"),
    st.Page("app/pages/runs.py", title="Runs", icon=":material/compare:"),
]

# An emoji favicon is drawn in the browser; without one, Streamlit fetches the
# default page's :material: icon from Google (tests/test_browser.py checks none is).
st.set_page_config(page_title="Kizashi", page_icon="🗺️", layout="wide")
st.navigation(PAGES).run()
