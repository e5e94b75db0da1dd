"""What every page of the dashboard shares: the runs folder, the run picker in the sidebar, live
refresh, cached readers and clear messages instead of tracebacks.

Reading is incremental and never blocks: each session keeps one `Run` per path (its `metrics()`
reads only the lines appended since the last call), finished files are cached by path and size,
and UMAP projections run in a background thread while the page says so.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import streamlit as st

from workbench.dashboard import RUNS_DIR_VARIABLE
from workbench.runs import (
    COMPARISON_FILE,
    EVAL_IMAGES,
    Artifact,
    Run,
    RunError,
    find_runs,
    load_arrays,
)

READ_ERRORS = (RunError, OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile)
"""What reading a run that is empty, partial, crashed or corrupt may raise."""


def runs_root() -> Path:
    return Path(os.environ.get(RUNS_DIR_VARIABLE, "runs"))


def markdown_table(rows: list[dict]) -> str:
    """Rows as a markdown table (st.table and st.dataframe need pyarrow, which this numpy < 2
    environment cannot import)."""
    columns = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def unreadable(what: str, error: BaseException) -> None:
    """A clear message in place of what could not be read."""
    st.warning(f"Could not read {what}: {error}", icon="⚠️")


# ---------------------------------------------------------------------------------------------
# Runs and the sidebar.


def available_runs() -> dict[str, Path]:
    """Runs under the root, and those inside comparison folders there, by a readable label."""
    root = runs_root()
    found = {run.name: run.path for run in find_runs(root)}
    for comparison in comparisons():
        for run in find_runs(comparison / "runs"):
            found[f"{comparison.name}/{run.name}"] = run.path
    return found


def comparisons() -> list[Path]:
    """Folders under the root (or the root itself) written by `workbench compare`."""
    root = runs_root()
    candidates = [
        root,
        *_subfolders(root),
        *(sub for f in _subfolders(root) for sub in _subfolders(f)),
    ]
    return [folder for folder in candidates if (folder / COMPARISON_FILE).is_file()]


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def open_run(path: Path) -> Run:
    """This session's reader of the run at `path` (kept, so metrics are read incrementally)."""
    readers = st.session_state.setdefault("_readers", {})
    key = str(path)
    if key not in readers:
        readers[key] = Run(path)
    return readers[key]


def sidebar() -> None:
    """Runs to show and live-refresh settings (the widgets live in the main script, so their
    state holds across pages). Runs that appear in the folder meanwhile, written by any process,
    are announced and offered (chosen at once when none was); see `watch_folder`."""
    st.sidebar.caption(f"Watching `{runs_root().resolve()}`")
    labels = list(available_runs())
    announce_new_runs(labels)
    st.sidebar.multiselect(
        "Runs",
        labels,
        key="runs",
        help="The Runs page overlays them; the other pages show one of them.",
    )
    st.sidebar.toggle("Live", value=True, key="live", help="Follow runs as they are written.")
    st.sidebar.slider(
        "Refresh every (s)", 1, 30, 3, key="refresh", disabled=not st.session_state.live
    )
    watch_folder()


def announce_new_runs(labels: list[str]) -> None:
    """Keep the chosen runs that still exist (the newest when nothing was chosen yet), and say
    which runs appeared since this session last looked, choosing the first that appears when no
    run is chosen. Sets the `runs` widget's state, so call it before the widget is drawn."""
    known = st.session_state.get("_known_runs")
    st.session_state["_known_runs"] = labels
    if "runs" not in st.session_state:  # a new session: the newest run
        st.session_state["runs"] = labels[:1]
        return
    chosen = [label for label in st.session_state["runs"] if label in labels]
    appeared = [label for label in labels if known is not None and label not in known]
    for label in appeared:
        st.toast(f"New run in the folder: **{label}**", icon=":material/fiber_new:")
    if appeared and not chosen:
        chosen = appeared[:1]
    if appeared:
        st.session_state["_appeared"] = appeared
    st.session_state["runs"] = chosen
    if st.session_state.get("_appeared"):
        st.sidebar.caption("New: " + ", ".join(f"`{a}`" for a in st.session_state["_appeared"]))


def watch_folder() -> None:
    """Rerun the page when runs appear in (or leave) the watched folder, every refresh period."""
    rerun_when_changed(lambda: tuple(available_runs()), "_runs_in_folder")


def refresh_every() -> float | None:
    """How often live pages look for changes, or None when live updates are off."""
    return float(st.session_state.get("refresh", 3)) if st.session_state.get("live", True) else None


def rerun_when_changed(signature: Callable[[], Hashable], key: str) -> None:
    """Follow runs without redrawing what is on screen: every refresh period a small fragment
    computes `signature()` and reruns the page only when it changed. (Redrawing costs the browser
    time, and a chart redrawn while the user clicks on it loses the click.)"""

    @st.fragment(run_every=refresh_every())
    def watch() -> None:
        value, seen = signature(), st.session_state.get(key)
        st.session_state[key] = value
        if seen is not None and seen != value:
            st.rerun()

    watch()


def follow(runs: list[Run], key: str) -> None:
    """Rerun the page whenever one of `runs` has been written to (see `rerun_when_changed`)."""
    rerun_when_changed(lambda: tuple(progress(run) for run in runs), key)


def progress(run: Run) -> tuple | None:
    """What changes as a run is written: its metric records, status, snapshots, evaluations."""
    try:
        return len(run.metrics()), run.status, len(run.snapshots()), len(run.evaluations())
    except READ_ERRORS:
        return None


def selected_runs() -> list[Run]:
    found = available_runs()
    return [open_run(found[label]) for label in st.session_state.get("runs", []) if label in found]


def pick_run(key: str) -> Run | None:
    """One of the runs chosen in the sidebar (a selectbox, keyed `key`, when there are several),
    or None with a message saying what to do."""
    runs = selected_runs()
    if not runs:
        st.info(
            f"No run chosen. Pick one in the sidebar, or start one on the Train page "
            f"(runs are read from `{runs_root()}`)."
        )
        return None
    if len(runs) == 1:
        return runs[0]
    names = [run.name for run in runs]
    return runs[names.index(st.selectbox("Run", names, key=key))]


def pick_snapshot(snapshots: list[Artifact], key: str) -> Artifact:
    """A slider over the snapshots (by update); with 'follow newest' it stays on the last."""
    numbers = [artifact.number for artifact in snapshots]
    left, right = st.columns([4, 1])
    follow = right.toggle("Follow newest", value=True, key=f"{key}_follow")
    if follow or st.session_state.get(key) not in numbers:
        st.session_state[key] = numbers[-1]
    if len(numbers) == 1:
        left.caption(f"One snapshot so far, at update {numbers[0]}.")
    else:
        left.select_slider("Snapshot (update)", numbers, key=key, disabled=follow)
    return snapshots[numbers.index(st.session_state[key])]


def chosen_snapshot(run: Run, key: str) -> tuple[Artifact, dict] | None:
    """The snapshot chosen on the slider `key` (`pick_snapshot`) and its arrays; None when the
    run has none yet or it cannot be read (a message says what to do, or why)."""
    snapshots = run.snapshots()
    if not snapshots:
        st.info(
            f"{run.name} has no snapshots yet (latents and imagined rollouts). They are written "
            "every `train.snapshot_every` updates (set it above 0, e.g. "
            "`--set train.snapshot_every=50`), once training starts."
        )
        return None
    artifact = pick_snapshot(snapshots, key)
    try:
        return artifact, load_snapshot(artifact)
    except READ_ERRORS as error:
        unreadable(f"snapshot {artifact.path.name}", error)
        return None


def status_line(run: Run) -> str:
    """One line on a run: status, algo, task, steps, episodes; or what is wrong with it."""
    try:
        info = run.info()
        episodes = run.metrics("episode")
    except READ_ERRORS as error:
        return f"**{run.name}**: unreadable ({error})"
    status = info.get("status", "empty")
    step = max(
        (r.get("step", 0) for r in run.metrics() if isinstance(r.get("step"), int)), default=0
    )
    line = (
        f"**{run.name}**: {status} · {info.get('algo', '?')} on {info.get('task', '?')} · "
        f"step {step} · {len(episodes)} episodes"
    )
    if episodes:
        last = episodes[-1]
        line += (
            f" · last return {last.get('return', float('nan')):.2f}, cost {last.get('cost', 0):.0f}"
        )
    if run.skipped_lines:
        line += f" · {run.skipped_lines} unreadable metric lines skipped"
    return line


STATUS_NOTES = {
    "crashed": "The process writing it died without finishing; what it wrote is shown.",
    "stopped": "It was stopped; continue it with `workbench train --resume`.",
    "empty": "It holds no run.json yet: still starting, or not a run.",
}


# ---------------------------------------------------------------------------------------------
# Cached readers of finished files (snapshots, evaluation episodes).


def load_episode(artifact: Artifact, images: bool = True) -> dict[str, np.ndarray]:
    """An evaluation episode's arrays. Without its images (`EVAL_IMAGES`: nearly all of its
    bytes) it is cached apart, so a page can keep many such beside the one episode it plays."""
    read = _episode if images else _episode_without_images
    return read(str(artifact.path), artifact.path.stat().st_size)


def load_snapshot(artifact: Artifact) -> dict[str, np.ndarray]:
    return _snapshot(str(artifact.path), artifact.path.stat().st_size)


def probe_accuracy(artifact: Artifact) -> float | None:
    """Held-out accuracy of a linear probe telling the snapshot's safe from unsafe latents."""
    return _probe(str(artifact.path), artifact.path.stat().st_size)


# Files are written whole and renamed into place, so (path, size) names their content. A page
# plays one episode and maps one snapshot: small caches keep the server's memory flat while a run
# grows (an evaluation episode with its frames is about 12 MB, a snapshot about 5 MB).


@st.cache_resource(max_entries=2, show_spinner=False)
def _episode(path: str, size: int) -> dict[str, np.ndarray]:
    return load_arrays(Path(path))


@st.cache_resource(max_entries=16, show_spinner=False)
def _episode_without_images(path: str, size: int) -> dict[str, np.ndarray]:
    return load_arrays(Path(path), skip=EVAL_IMAGES)


@st.cache_resource(max_entries=2, show_spinner=False)
def _snapshot(path: str, size: int) -> dict[str, np.ndarray]:
    from workbench.inspect.projection import load_snapshot

    return load_snapshot(Path(path))


@st.cache_resource(max_entries=64, show_spinner=False)
def _probe(path: str, size: int) -> float | None:
    from workbench.inspect.projection import load_snapshot, probe_accuracy

    arrays = load_snapshot(Path(path), ("features", "unsafe"))
    return probe_accuracy(arrays["features"], arrays["unsafe"])


# ---------------------------------------------------------------------------------------------
# UMAP projections, off the script thread.


@st.cache_resource
def _projections() -> tuple[ThreadPoolExecutor, dict[tuple[str, str], Future]]:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="umap"), {}


def projection(run: Run, snapshot: Artifact) -> np.ndarray | None:
    """The snapshot's 2-D map coordinates [M, 2], or None while they are being computed (the
    first projection of a run fits UMAP, tens of seconds; later ones reuse the fitted map)."""
    from workbench.inspect.projection import coordinates

    executor, futures = _projections()
    key = (str(run.path), snapshot.path.name)
    if key not in futures:
        futures[key] = executor.submit(coordinates, run.path, snapshot)
    future = futures[key]
    return future.result() if future.done() else None  # a failure stays until "Refit the map"


def projecting(run: Run) -> bool:
    """Whether some projection of this run is still being computed."""
    _, futures = _projections()
    return any(not f.done() for key, f in list(futures.items()) if key[0] == str(run.path))


def refit(run: Run) -> None:
    """Fit the run's map again on its newest snapshots (in the background), aligned to the old
    one; snapshots are placed anew as they are shown."""
    from workbench.inspect.projection import projection as run_projection

    executor, futures = _projections()
    for key in [key for key in futures if key[0] == str(run.path)]:
        del futures[key]
    executor.submit(run_projection(run.path).refit)
