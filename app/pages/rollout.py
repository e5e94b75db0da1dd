"""Rollout stepper: a real evaluation episode, frame by frame: the frame and the world model's
reconstruction of it, the cost received, the barrier value, the action taken and the ensemble's
disagreement, with step buttons, a slider and play/pause."""

import common
import streamlit as st

from workbench.inspect import figures

PLAY_PERIOD = 0.3  # seconds per frame while playing
STEP_VALUES = (
    "cost",
    "pred_cost",
    "barrier",
    "hazard_distance",
    "value",
    "cost_value",
    "disagreement",
)
"""The episode's values shown beside its frame, as numbers (those it holds)."""

st.title("Rollout stepper")
run = common.pick_run("rollout_run")


def episode_label(artifact) -> str:
    return f"evaluation at step {artifact.number}, episode {artifact.index}"


def move_to(t: int) -> None:
    st.session_state.t = min(max(t, 0), st.session_state.t_last)


def step_controls(last: int) -> None:
    """First, back, play/pause, forward, last; and the slider."""
    st.session_state.t_last = last
    if st.session_state.get("t", 0) > last:
        st.session_state.t = last
    t = st.session_state.get("t", 0)
    first, back, play, forward, end = st.columns(5)
    first.button(
        "first", icon=":material/first_page:", on_click=move_to, args=(0,), width="stretch"
    )
    back.button(
        "back", icon=":material/chevron_left:", on_click=move_to, args=(t - 1,), width="stretch"
    )
    playing = st.session_state.get("playing", False)
    label, icon = ("pause", ":material/pause:") if playing else ("play", ":material/play_arrow:")
    if play.button(label, icon=icon, width="stretch"):
        st.session_state.playing = not playing
        if not playing and t >= last:
            st.session_state.t = 0
        st.rerun()  # the whole page, so the stepper refreshes at the new pace
    forward.button(
        "forward", icon=":material/chevron_right:", on_click=move_to, args=(t + 1,), width="stretch"
    )
    end.button("last", icon=":material/last_page:", on_click=move_to, args=(last,), width="stretch")
    st.slider("Step", 0, last, key="t")


def show_step(episode: dict, t: int) -> None:
    images, values = st.columns([2, 1])
    images.image(
        [figures.enlarge(episode["frame"][t]), figures.enlarge(episode["recon"][t])],
        caption=["real frame", "world model's reconstruction"],
    )
    for key in STEP_VALUES:
        if key in episode and (key != "hazard_distance" or figures.has_true_distance(episode)):
            values.metric(figures.label(key), f"{float(episode[key][t]):.3g}")
    values.write("action: " + ", ".join(f"{a:+.2f}" for a in episode["action"][t]))


def stepper(run) -> None:
    evaluations = run.evaluations()
    if not evaluations:
        st.info(
            f"{run.name} has no evaluation episodes yet. They are played at the end of training "
            "and every `train.eval_every` env steps (`workbench eval` plays more)."
        )
        return
    names = [artifact.path.name for artifact in evaluations]
    if st.session_state.get("episode") not in names:
        st.session_state.episode = names[-1]
    name = st.selectbox(
        "Episode",
        names,
        key="episode",
        format_func=lambda n: episode_label(evaluations[names.index(n)]),
    )
    try:
        episode = common.load_episode(evaluations[names.index(name)])
        last = len(episode["frame"]) - 1
        if st.session_state.get("playing", False):
            if st.session_state.get("t", 0) >= last:
                st.session_state.playing = False
                st.rerun()
            st.session_state.t = min(st.session_state.get("t", 0) + 1, last)
        step_controls(last)
        t = st.session_state.t
        show_step(episode, t)
        st.plotly_chart(figures.episode_figure(episode, t), width="stretch")
        same_round = [a for a in evaluations if a.number == evaluations[names.index(name)].number]
        show_learned_against_true([common.load_episode(a, images=False) for a in same_round])
    except common.READ_ERRORS as error:
        common.unreadable(f"episode {name}", error)


def show_learned_against_true(episodes: list) -> None:
    """The barrier and predicted cost against the simulator's true hazard distance, over the
    episodes of this evaluation, where the run recorded it."""
    st.subheader("The learned against the true")
    if not any(figures.has_true_distance(episode) for episode in episodes):
        st.caption(
            "These episodes do not record the simulator's distance to the nearest hazard "
            "(runs of older versions, or tasks without hazards)."
        )
        return
    st.caption(
        "Each dot is a step of this evaluation's episodes. A barrier that is right rises with "
        "the distance (B > 0 outside hazards, B < 0 inside: correlation near +1); a predicted "
        "cost that is right is high only left of the dotted line (inside a hazard)."
    )
    st.plotly_chart(figures.true_distance_figure(episodes), width="stretch")


if run is not None:
    if st.session_state.get("playing", False):
        st.fragment(run_every=PLAY_PERIOD)(stepper)(run)
    else:
        stepper(run)
        common.follow([run], "rollout_progress")
