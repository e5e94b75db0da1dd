"""Latent map: a snapshot's posterior latents projected with UMAP, coloured by safety label,
barrier value, disagreement, cost or time; click a point to see its frame. A slider moves
through the snapshots, all placed in one map, so you can watch the latent space organise."""

import common
import numpy as np
import streamlit as st

from workbench.inspect import figures

st.title("Latent map")
run = common.pick_run("latent_run")


def selected_point(count: int) -> int | None:
    """The latent clicked last in the chart (its customdata is its index in the snapshot)."""
    state = st.session_state.get("latent_chart")
    points = state.selection.points if state else []
    if not points:
        return None
    index = points[0].get("customdata")
    index = index[0] if isinstance(index, list) else index
    return int(index) if index is not None and 0 <= int(index) < count else None


def show_latent(snapshot: dict, index: int | None) -> None:
    if index is None:
        st.caption("Click a point to see its frame.")
        return
    st.image(figures.enlarge(snapshot["frame"][index]), caption=f"latent {index}: the real frame")
    facts = {
        figures.label("unsafe"): "unsafe" if snapshot["unsafe"][index] else "safe",
        figures.label("cost"): f"{snapshot['cost'][index]:.2f}",
        figures.label("pred_cost"): f"{snapshot['pred_cost'][index]:.2f}",
        figures.label("disagreement"): f"{snapshot['disagreement'][index]:.3g}",
        figures.label("time"): int(snapshot["time"][index]),
    }
    if "barrier" in snapshot:
        facts[figures.label("barrier")] = f"{snapshot['barrier'][index]:.3f}"
    st.markdown(
        common.markdown_table([{"": name, "value": value} for name, value in facts.items()])
    )


@st.fragment  # a click on a point reruns only this; new snapshots rerun the page (see below)
def show_map(run) -> None:
    chosen = common.chosen_snapshot(run, "latent_snapshot")
    if chosen is None:
        return
    artifact, snapshot = chosen
    try:
        accuracy = common.probe_accuracy(artifact)
    except common.READ_ERRORS as error:
        common.unreadable(f"the probe of snapshot {artifact.path.name}", error)
        return
    choices = figures.color_choices(snapshot)
    color = st.radio("Colour by", list(choices), horizontal=True, key="latent_color")
    chart, side = st.columns([3, 1])
    with side:
        st.metric(
            "Linear probe, safe vs unsafe",
            "n/a" if accuracy is None else f"{accuracy:.1%}",
            help="Held-out balanced accuracy of a logistic regression on the latents (50% = chance).",
        )
        unsafe = int(snapshot["unsafe"].sum())
        st.caption(
            f"{unsafe} unsafe of {len(snapshot['unsafe'])} latents at step {int(snapshot['step'])}"
            + (" (the probe needs at least 2 of each)" if accuracy is None else "")
        )
        index = selected_point(len(snapshot["unsafe"]))
        show_latent(snapshot, index)
        if st.button("Refit the map", help="Fit UMAP again on the newest snapshots, aligned."):
            common.refit(run)
    with chart:
        try:
            coords = common.projection(run, artifact)
        except common.READ_ERRORS as error:
            common.unreadable("the latent map (press Refit the map to try again)", error)
            return
        if coords is None:
            st.info("Projecting this snapshot with UMAP… (the first map of a run takes a while)")
            return
        figure = figures.latent_map(np.asarray(coords), choices[color], color, selected=index)
        st.plotly_chart(
            figure, on_select="rerun", selection_mode="points", key="latent_chart", width="stretch"
        )


def changes(run) -> tuple:
    """What redraws the page: a new snapshot (when following the newest), a finished projection."""
    following = st.session_state.get("latent_snapshot_follow", True)
    return len(run.snapshots()) if following else None, common.projecting(run)


if run is not None:
    show_map(run)
    common.rerun_when_changed(lambda: changes(run), "latent_changes")
