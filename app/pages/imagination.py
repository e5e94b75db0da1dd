"""Imagination: what the world model dreams from a real start state under the current policy:
the barrier value along the rollout (with B = 0, the safe/unsafe boundary), predicted cost,
ensemble disagreement (bands: the spread over all rollouts of the snapshot) and decoded frames."""

import common
import streamlit as st

from workbench.inspect import figures

st.title("Imagination")
run = common.pick_run("imagination_run")


def describe_start(snapshot: dict, rollout: int) -> str:
    start = int(snapshot["imag_start"][rollout])
    label = "unsafe" if snapshot["unsafe"][start] else "safe"
    return f"rollout {rollout}: from latent {start} ({label}, cost {snapshot['cost'][start]:.1f})"


def show_imagination(run) -> None:
    chosen = common.chosen_snapshot(run, "imagination_snapshot")
    if chosen is None:
        return
    _, snapshot = chosen
    rollouts = range(len(snapshot["imag_start"]))
    if st.session_state.get("rollout") not in rollouts:
        st.session_state.rollout = 0
    rollout = st.selectbox(
        "Start state",
        rollouts,
        format_func=lambda i: describe_start(snapshot, i),
        key="rollout",
    )
    start_frame, plots = st.columns([1, 4])
    start = int(snapshot["imag_start"][rollout])
    start_frame.image(figures.enlarge(snapshot["frame"][start]), caption="the real start frame")
    start_frame.caption(
        "Grey band: 10-90% of all rollouts of this snapshot. Dashes: B = 0, the barrier's "
        "boundary between safe (above) and unsafe (below); cost 0."
    )
    plots.plotly_chart(figures.imagination_figure(snapshot, rollout), width="stretch")
    show_frames(snapshot, rollout, start)


def show_frames(snapshot: dict, rollout: int, start: int) -> None:
    """The decoded imagined frames, large enough to see a hazard, after the real start frame."""
    st.subheader("What the world model imagines")
    frames = snapshot["imag_frames"][:, rollout]
    labels = [f"imagined t={t}" for t in range(len(frames))]
    if "imag_barrier" in snapshot:
        barrier = snapshot["imag_barrier"][:, rollout]
        labels = [f"{label}, B={b:+.2f}" for label, b in zip(labels, barrier, strict=True)]
    if "imag_cost" in snapshot:
        cost = snapshot["imag_cost"][:, rollout]
        labels = [f"{label}, cost {c:.2f}" for label, c in zip(labels, cost, strict=True)]
    pictures = [figures.enlarge(snapshot["frame"][start], 3)]
    pictures += [figures.enlarge(frame, 3) for frame in frames]
    st.image(pictures, caption=["real start frame", *labels], width=192)


if run is not None:
    show_imagination(run)
    common.follow([run], "imagination_progress")
