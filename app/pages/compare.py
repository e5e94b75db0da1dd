"""Compare: a `workbench compare` folder's table and plots beside the live curves of its runs
(which may still be training)."""

import common
import streamlit as st

from workbench.compare import CURVES
from workbench.inspect import figures
from workbench.runs import COMPARISON_FILE, TABLE_MD, comparison_plots, find_runs, read_json

PLOT_HEIGHT = 560  # pixels for a comparison plot: its figure, with a margin for the frame

st.title("Compare")


def show_table(folder) -> None:
    """The table (table.md, else comparison.json's rows) and the runs not included."""
    summary = read_json(folder / COMPARISON_FILE)
    table = folder / TABLE_MD
    if table.is_file():
        title, _, body = table.read_text().partition("\n")
        st.subheader(title.lstrip("# "))
        st.markdown(body)
    elif summary.get("algorithms"):
        st.markdown(common.markdown_table(summary["algorithms"]))
    else:
        st.info("No results yet: the comparison's runs are still training (or none finished).")
    for missing in summary.get("missing", []):
        if isinstance(missing, dict):
            st.caption(f"not included: {missing.get('run')} ({missing.get('reason')})")


def show_plot(folder) -> None:
    """One of the comparison's plots (self-contained plotly HTML written by `workbench compare`)."""
    plots = comparison_plots(folder)
    if plots:
        plot = st.selectbox("Plot", plots, format_func=lambda path: path.stem, key="compare_plot")
        st.iframe(plot, height=PLOT_HEIGHT)  # the page's full width: its long title fits


def show_runs(runs: list) -> None:
    if not runs:
        st.info("No runs in this comparison yet.")
        return
    key = st.radio("Curve", CURVES, format_func=figures.label, horizontal=True, key="compare_key")
    for run in runs:
        st.markdown(common.status_line(run))
    try:
        records = {run.name: run.metrics("episode") for run in runs}
        limit = runs[0].config()["agent"]["cost_limit"]
    except (*common.READ_ERRORS, TypeError) as error:
        common.unreadable("the comparison's runs", error)
        return
    title = f"{figures.metric_title(key, note=True)}, live"
    figure = figures.curves(records, key, height=420, cost_limit=limit, title=title)
    st.plotly_chart(figure, width="stretch")


folders = common.comparisons()
if not folders:
    st.info(
        f"No comparison under `{common.runs_root()}`. Make one with, for example, "
        f"`workbench compare --algos dreamer,bsrp-lag --seeds 0,1 --out {common.runs_root()}/cmp`. "
        "The Runs page overlays any runs meanwhile."
    )
else:
    root = common.runs_root()
    folder = st.selectbox(
        "Comparison",
        folders,
        format_func=lambda f: str(f.relative_to(root)) if f != root else f.name,
    )
    try:
        show_table(folder)
    except common.READ_ERRORS as error:
        common.unreadable(f"comparison {folder.name}", error)
    st.subheader("Results")
    show_plot(folder)
    st.subheader("Its runs, live")
    runs = [common.open_run(run.path) for run in find_runs(folder / "runs")]
    show_runs(runs)
    common.follow(runs, "compare_progress")
