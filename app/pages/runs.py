"""Runs: live curves of every metric the chosen runs log, the runs overlaid."""

import common
import streamlit as st

from workbench.inspect import figures

KINDS = {"episode": "Training episodes", "eval": "Evaluation", "train": "Training updates"}
GROUP_TITLES = {
    "": "Speed",
    "wm": "World model losses",
    "agent": "Actor and critics",
    "lagrange": "Lagrange multiplier",
    "planner": "Planner",
    "barrier": "Barrier function",
    "cerl": "CERL",
    "health": "World-model health (held-out evaluation episodes)",
}

st.title("Runs")
smooth = st.slider("Smoothing (points averaged)", 1, 50, 1, key="smooth")


def show_runs(runs: list) -> None:
    if not runs:
        st.info(
            f"No run chosen. Pick runs in the sidebar, or start one on the Train page "
            f"(runs are read from `{common.runs_root()}`)."
        )
        return
    records = {kind: {} for kind in KINDS}
    for run in runs:
        st.markdown(common.status_line(run))
        try:
            note = common.STATUS_NOTES.get(run.status)
            if note:
                st.caption(note)
            for kind in KINDS:
                records[kind][run.name] = run.metrics(kind)
        except common.READ_ERRORS as error:
            common.unreadable(f"run {run.name}", error)
    if not any(records[kind][name] for kind in KINDS for name in records[kind]):
        st.info("No metrics yet: the runs have logged nothing (still starting, or stopped early).")
        return
    for kind, title in KINDS.items():
        keys = figures.metric_keys(r for rows in records[kind].values() for r in rows)
        for group, group_keys in figures.metric_groups(keys).items():
            train_group = kind == "train" or group
            st.subheader(GROUP_TITLES.get(group, group) if train_group else title)
            show_grid([figures.curves(records[kind], key, smooth=smooth) for key in group_keys])


def show_grid(charts: list, columns: int = 3) -> None:
    for start in range(0, len(charts), columns):
        for column, chart in zip(
            st.columns(columns), charts[start : start + columns], strict=False
        ):
            column.plotly_chart(chart, width="stretch", config={"displayModeBar": False})


runs = common.selected_runs()
show_runs(runs)
common.follow(runs, "runs_progress")
