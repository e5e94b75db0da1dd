"""Train: start a training run as a separate `workbench train` process writing into the runs
folder, and stop running ones (SIGTERM: the engine stops cleanly and saves a checkpoint)."""

import time

import common
import streamlit as st

from workbench.config import ALGOS, PRESETS, ConfigError, EnvConfig
from workbench.dashboard import start_training, stop_training, training_command, training_log
from workbench.runs import RunError, find_runs

st.title("Train")
root = common.runs_root()


@st.cache_resource
def started() -> dict:
    """Processes this dashboard started, by run name (kept so finished ones are reaped)."""
    return {}


def new_name() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S')}"


def start_form() -> None:
    with st.form("start"):
        st.subheader("Start a run")
        name_column, algo_column, preset_column = st.columns(3)
        name = name_column.text_input(
            "Name", value=st.session_state.setdefault("next_name", new_name())
        )
        algo = algo_column.selectbox("Algorithm", ALGOS)
        preset = preset_column.selectbox("Preset", list(PRESETS), index=list(PRESETS).index("cpu"))
        task_column, steps_column, seed_column, device_column = st.columns(4)
        task = task_column.text_input("Task", value=EnvConfig.task)
        steps = steps_column.number_input("Env steps (0: the preset's)", min_value=0, value=0)
        seed = seed_column.number_input("Seed", min_value=0, value=0)
        device = device_column.selectbox("Device", ["auto", "cpu", "cuda"])
        sets = st.text_area(
            "More settings, one KEY=VALUE per line", placeholder="agent.cost_limit=10"
        )
        if st.form_submit_button("Start training", type="primary"):
            assignments = [line.strip() for line in sets.splitlines() if line.strip()]
            try:
                command = training_command(
                    root, name.strip(), algo=algo, preset=preset, seed=int(seed),
                    steps=int(steps) or None, task=task.strip() or None, device=device, sets=assignments,
                )  # fmt: skip
                started()[name.strip()] = start_training(root, name.strip(), command)
            except (ConfigError, RunError, ValueError, OSError) as error:
                st.error(f"Not started: {error}")
            else:
                st.success(f"Started {name.strip()}; pick it in the sidebar to watch it.")
                st.session_state.next_name = new_name()


@st.fragment(run_every=common.refresh_every())
def running_runs() -> None:
    st.subheader("Runs")
    runs = find_runs(root)
    if not runs:
        st.info(f"No runs in `{root}` yet.")
    for run in runs:
        run = common.open_run(run.path)
        line, stop = st.columns([5, 1])
        line.markdown(common.status_line(run))
        try:
            running = run.status == "running"
        except common.READ_ERRORS:
            running = False
        if running and stop.button("Stop", key=f"stop_{run.name}"):
            try:
                pid = stop_training(run)
                st.toast(f"Asked {run.name} (process {pid}) to stop; it saves a checkpoint first.")
            except (RunError, OSError) as error:
                st.error(f"Could not stop {run.name}: {error}")
        log = training_log(root, run.name)
        if log.is_file():
            with st.expander(f"output of {run.name}"):
                st.code(
                    "\n".join(log.read_text(errors="replace").splitlines()[-20:]) or "(nothing yet)"
                )
    for process in started().values():
        process.poll()  # reap the ones that ended


start_form()
running_runs()
st.caption(
    "Runs started here are separate processes: they keep training if the dashboard stops. "
    "Stop them here, or continue a stopped one with `workbench train --resume RUN_DIR`."
)
