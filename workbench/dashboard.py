"""`workbench dashboard [RUNS_DIR]`: the Streamlit app in `app/`, watching the runs in RUNS_DIR.

The app only reads run directories (through `workbench.runs.Run`); training runs it starts are
separate `workbench train` processes, stopped with SIGTERM (which the engine turns into a clean
stop with a checkpoint). Those process helpers live here so notebooks can use them too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from workbench import runs
from workbench.config import TrainRequest
from workbench.executors import launch
from workbench.runs import CONFIG_FILE, Run, RunError, host_name, make_folder

APP = Path(__file__).resolve().parents[1] / "app" / "Home.py"
DEFAULT_RUNS_DIR = Path("runs")
RUNS_DIR_VARIABLE = "WORKBENCH_RUNS_DIR"
"""The environment variable through which the app learns which folder to watch."""


def add_command(commands) -> None:
    p = commands.add_parser("dashboard", help="watch runs live in the browser (Streamlit app)")
    p.add_argument(
        "runs_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_RUNS_DIR,
        help="folder of runs (default runs, created if missing)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.set_defaults(run=_dashboard)


def _dashboard(args) -> int:
    check_runs_dir(args.runs_dir, default=args.runs_dir == DEFAULT_RUNS_DIR)
    command, environment = streamlit_command(args.runs_dir, args.host, args.port)
    print(f"dashboard on http://{args.host}:{args.port} watching {args.runs_dir.resolve()}")
    sys.stdout.flush()
    os.execve(command[0], command, environment)  # Streamlit replaces this process (Ctrl-C ends it)
    return 0


def check_runs_dir(runs_dir: Path, default: bool = False) -> None:
    """The dashboard watches a folder that exists (only the default `runs` is created: `workbench
    train` writes there), so a mistyped path is an error, not an empty app."""
    if runs_dir.exists() and not runs_dir.is_dir():
        raise RunError(f"{runs_dir} is a file; give the folder that holds your runs")
    if not runs_dir.exists() and not default:
        raise RunError(
            f"{runs_dir}: no such folder; give the folder that holds your runs "
            f"(or create it first to start runs from the dashboard)"
        )
    make_folder(runs_dir, "RUNS_DIR")


def streamlit_command(runs_dir: Path, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The `streamlit run` command line and environment that serve the app on host:port."""
    if not APP.is_file():
        raise RunError(
            f"the dashboard app is not at {APP}; install the workbench from its repository "
            "with `pip install -e .` so app/ sits next to the package"
        )
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",  # never watch run data (or anything else)
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",  # no "Deploy" button
    ]  # fmt: skip
    environment = dict(os.environ, **{RUNS_DIR_VARIABLE: str(Path(runs_dir).resolve())})
    return command, environment


# ---------------------------------------------------------------------------------------------
# Training runs as separate processes.


def training_command(runs_dir: Path, name: str, request: TrainRequest) -> list[str]:
    """The `workbench train` command for a new run RUNS_DIR/<name> as `request` asks, after
    checking its config (a bad key or value raises ConfigError here, before anything starts)."""
    if not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
        raise ValueError(f"run name {name!r}: use letters, digits, '-', '_' and '.' only")
    run_dir = Path(runs_dir) / name
    if run_dir.exists():
        raise RunError(f"{run_dir} already exists; choose another name")
    request.config()
    command = [sys.executable, "-m", "workbench.cli", "train", "--run-dir", str(run_dir)]
    return command + ["--no-progress", *request.flags()]


def training_log(runs_dir: Path, name: str) -> Path:
    """Where the output of a run started from the dashboard goes (outside the run directory,
    which the run must create itself)."""
    return runs.training_log(runs_dir, runs.DASHBOARD_LOGS, name)


def start_training(runs_dir: Path, name: str, command: list[str]) -> subprocess.Popen:
    """Start `command` (see `training_command`) so that it keeps training when the dashboard
    stops; its output goes to `training_log(runs_dir, name)`."""
    return launch(command, training_log(runs_dir, name))


def stop_training(run: Run) -> int:
    """Ask the process writing `run` to stop (SIGTERM: it saves a checkpoint and exits cleanly;
    on another host sharing the run directory, through the run's STOP file). Returns its pid."""
    if not (run.path / CONFIG_FILE).exists():
        raise RunError(f"{run.path} holds no run")
    info = run.info()
    if info.get("status") != "running" or not isinstance(info.get("pid"), int):
        raise RunError(f"{run.name} is not running (status: {info.get('status', 'unknown')})")
    if info.get("host", host_name()) != host_name():
        run.request_stop()
    else:
        os.kill(info["pid"], signal.SIGTERM)
    return info["pid"]
