"""Runs: the chosen runs' metrics in a learner's order, the runs overlaid. First the curves
that tell the story (return, episode cost against the cost limit, cumulative cost), then whether
the world model knows the task (its health on held-out evaluation episodes), then the
algorithm's operating point, then everything else folded away. A metric that is constant, or
has a single value so far, is shown as a number, not a plot."""

import common
import streamlit as st

from workbench.inspect import figures

KINDS = {"episode": "Training episodes", "eval": "Evaluation", "train": "Training updates"}
GROUP_TITLES = {
    "": "speed",
    "wm": "world model losses",
    "agent": "actor and critics",
    "lagrange": "Lagrange multiplier",
    "planner": "planner",
    "barrier": "barrier function",
    "cerl": "CERL",
    "lspc": "LSPC",
    "health": "world-model health",
}
SECTIONS = {
    "story": (
        "How the agent is doing",
        "Return should rise while episode cost stays under the cost limit (the red dashes).",
    ),
    "health": (
        "Does the world model know the task?",
        "Measured on held-out evaluation episodes. An agent planning in a world model that "
        "cannot predict reward, or tell unsafe states, learns nothing useful.",
    ),
    "operating point": (
        "Where the algorithm operates",
        "The safe algorithm's own state: how much it pays for cost, how many of its plans or "
        "policies are feasible, how well its barrier separates safe from unsafe.",
    ),
}

st.title("Runs")
smooth = st.slider("Smoothing (points averaged)", 1, 50, 1, key="smooth")


def read_records(runs: list) -> dict[str, dict[str, list]]:
    """{kind: {run name: records}}, with a status line (and note) per run."""
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
    return records


def cost_limit(runs: list) -> float | None:
    """The cost limit of the first run whose config says it."""
    for run in runs:
        try:
            return float(run.config()["agent"]["cost_limit"])
        except (*common.READ_ERRORS, TypeError):
            continue
    return None


def show_metrics(pairs: list, records: dict, limit: float | None, columns: int = 3) -> None:
    """Plots of the (kind, key) pairs that vary; numbers for those that do not."""
    numbers = [(k, key) for k, key in pairs if figures.is_number(records[k], key)]
    show_numbers(numbers, records)
    charts = [
        figures.curves(
            records[kind],
            key,
            smooth=smooth,
            cost_limit=limit,
            title=figures.metric_title(key, note=True),
        )
        for kind, key in pairs
        if (kind, key) not in numbers
    ]
    show_grid(charts, columns)


def show_numbers(pairs: list, records: dict) -> None:
    """Each (kind, key) as a number per run: its last value."""
    cells = [
        (figures.metric_title(key) + (f" · {name}" if len(records[kind]) > 1 else ""), value)
        for kind, key in pairs
        for name, value in figures.last_values(records[kind], key).items()
    ]
    for start in range(0, len(cells), 4):
        for column, (label, value) in zip(st.columns(4), cells[start : start + 4], strict=False):
            column.metric(label, f"{value:.4g}", help="constant, or one value so far")


def show_grid(charts: list, columns: int = 3) -> None:
    for start in range(0, len(charts), columns):
        for column, chart in zip(
            st.columns(columns), charts[start : start + columns], strict=False
        ):
            column.plotly_chart(chart, width="stretch", config={"displayModeBar": False})


def show_rest(pairs: list, records: dict, limit: float | None) -> None:
    """Everything else, folded away by kind and group."""
    st.subheader("Everything else")
    for kind, title in KINDS.items():
        keys = [key for k, key in pairs if k == kind]
        for group, group_keys in figures.metric_groups(keys).items():
            name = (
                f"{title}: {GROUP_TITLES.get(group, group)}" if group or kind == "train" else title
            )
            with st.expander(f"{name} ({len(group_keys)})"):
                show_metrics([(kind, key) for key in group_keys], records, limit)


def show_runs(runs: list) -> None:
    if not runs:
        st.info(
            f"No run chosen. Pick runs in the sidebar, or start one on the Train page "
            f"(runs are read from `{common.runs_root()}`)."
        )
        return
    records = read_records(runs)
    if not any(rows for by_run in records.values() for rows in by_run.values()):
        st.info("No metrics yet: the runs have logged nothing (still starting, or stopped early).")
        return
    keys = {
        kind: figures.metric_keys(r for rows in records[kind].values() for r in rows)
        for kind in KINDS
    }
    sections = figures.learner_sections(keys)
    limit = cost_limit(runs)
    for section, (title, caption) in SECTIONS.items():
        st.subheader(title)
        st.caption(caption)
        if not sections[section]:
            st.caption("Not logged by these runs (yet).")
        show_metrics(sections[section], records, limit, columns=4 if section == "health" else 3)
    show_rest(sections["rest"], records, limit)


runs = common.selected_runs()
show_runs(runs)
common.follow(runs, "runs_progress")
