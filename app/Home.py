"""The workbench dashboard: watch a safe agent's world model while it trains.

    workbench dashboard RUNS_DIR      # serves this app on http://127.0.0.1:8501

Every page reads run directories through `workbench.runs.Run` (nothing trains in this process)
and follows runs as they are written. This script is the entry point: it lays out the sidebar
shared by all pages, then runs the page chosen in the navigation.
"""

import common
import streamlit as st

st.set_page_config(page_title="workbench", page_icon=":material/shield:", layout="wide")
common.sidebar()
page = st.navigation([
    st.Page("pages/runs.py", title="Runs", icon=":material/monitoring:", default=True),
    st.Page("pages/latent_map.py", title="Latent map", icon=":material/scatter_plot:"),
    st.Page("pages/imagination.py", title="Imagination", icon=":material/cloud:"),
    st.Page("pages/rollout.py", title="Rollout stepper", icon=":material/movie:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/train.py", title="Train", icon=":material/rocket_launch:"),
])  # fmt: skip
page.run()
