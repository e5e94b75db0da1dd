"""Train: start a training run as a separate `workbench train` process writing into the runs
folder, and stop running ones (SIGTERM: the engine stops cleanly and saves a checkpoint)."""

import threading
import time

import common
import streamlit as st

from workbench.config import ALGOS, PRESETS, ConfigError, EnvConfig, TrainRequest
from workbench.dashboard import start_training, stop_training, training_command, training_log
from workbench.runs import RunError, find_runs

st.title("Train")
root = common.runs_root()


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
                request = TrainRequest(
                    preset, algo, int(seed), task.strip() or None, int(steps) or None, device,
                    assignments,
                )  # fmt: skip
                command = training_command(root, name.strip(), request)
                process = start_training(root, name.strip(), command)
                # Reap it when it ends, or its pid would look alive (a zombie) to readers.
                threading.Thread(target=process.wait, daemon=True).start()
            except (ConfigError, RunError, ValueError, OSError) as error:
                st.error(f"Not started: {error}")
            else:
                st.success(f"Started {name.strip()}; pick it in the sidebar to watch it.")
                st.session_state.next_name = new_name()


def list_runs(runs: list) -> None:
    """Each run's status; a Stop button for running ones; the output of those started here."""
    st.subheader("Runs")
    if not runs:
        st.info(f"No runs in `{root}` yet.")
    for run in runs:
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


def current_runs() -> list:
    return [common.open_run(run.path) for run in find_runs(root)]


start_form()
list_runs(current_runs())
common.rerun_when_changed(
    lambda: [(run.name, common.progress(run)) for run in current_runs()], "train_progress"
)
st.caption(
    "Runs started here are separate processes: they keep training if the dashboard stops. "
    "Stop them here, or continue a stopped one with `workbench train --resume RUN_DIR`."
)
