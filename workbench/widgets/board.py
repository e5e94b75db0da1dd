"""The board: every view of one run, as tabs, following its run directory through
`workbench.runs.Run` like every other viewer; and the plumbing that brings what is new to the
kernel's event loop.

How updates travel. A widget must be changed on the kernel's own thread (ipykernel >= 7 handles
messages on another thread, so changing widgets from another thread can fail or lose output). So:
1. a `RunFollower` polls the run directory (`Run` reads only what was appended) on the loop,
   every `interval` seconds or at once when nudged (training in this kernel nudges it whenever
   the engine has written something), and puts what is new in the board's `Inbox`;
2. the inbox asks the kernel's event loop, captured when the board is made, to drain it
   (`call_soon_threadsafe`), at most once every `min_interval` seconds;
3. on that loop the board applies the updates to its data and redraws the views once.
Slow work (fitting the UMAP of the latent map) runs in a worker thread and comes back through
the inbox too. Outside a running event loop (a script, a test) updates are applied at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as ipw
import numpy as np

from workbench.inspect import figures
from workbench.runs import Run, load_arrays, run_of
from workbench.widgets import views
from workbench.widgets.display import view_html

COPY_EVERY = 10.0
"""Least seconds between refreshes of a board's HTML copy (see `Board._refresh_copy`)."""

Update = tuple[str, Any]
"""(kind, payload): records (all metric records so far, replacing those seen), cost_limit,
snapshot (path), episode (path), status, coords ((snapshot path, [M, 2])), error (text)."""


# ---------------------------------------------------------------------------------------------
# From any thread to the kernel's event loop.


class Inbox:
    """Updates handed over from any thread, applied in batches on the event loop that was
    running where the inbox was made (at once, in the caller's thread, if none was)."""

    def __init__(self, apply: Callable[[list[Update]], None], min_interval: float = 0.5):
        self.apply = apply
        self.min_interval = min_interval
        self.loop = _running_loop()
        self._queue: queue.SimpleQueue[Update] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._due = False
        self._last_drain = 0.0

    def put(self, kind: str, payload: Any = None) -> None:
        """Queue an update (any thread) and make sure a drain is due on the loop."""
        self._queue.put((kind, payload))
        if self.loop is None or self.loop.is_closed():  # no loop (left): apply at once
            self.drain()
            return
        with self._lock:
            if self._due:
                return
            self._due = True
        self.loop.call_soon_threadsafe(self._schedule_drain)

    def _schedule_drain(self) -> None:
        wait = self._last_drain + self.min_interval - time.monotonic()
        assert self.loop is not None  # scheduled through the loop only
        self.loop.call_later(max(wait, 0.0), self.drain)

    def drain(self) -> None:
        """Apply everything queued so far, in one batch (on the loop)."""
        with self._lock:
            self._due = False
        updates = []
        while not self._queue.empty():
            updates.append(self._queue.get())
        self._last_drain = time.monotonic()
        if updates:
            self.apply(updates)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class RunFollower:
    """Puts what is new in a run directory into an inbox: on the loop while the run is being
    written (`follow`: every `interval` seconds, and at once when nudged), or when asked (`poll`)."""

    def __init__(self, run: Run, inbox: Inbox, interval: float = 2.0):
        self.run = run
        self.inbox = inbox
        self.interval = interval
        self._nudged = asyncio.Event()
        self.records: list[dict[str, Any]] = []
        self.latest: dict[str, Path | str | None] = {
            "snapshot": None,
            "episode": None,
            "status": None,
        }

    def poll(self) -> bool:
        """Queue what appeared since the last poll; False once the run is no longer written
        (a folder whose run has not started yet counts as being written)."""
        records = self.run.metrics()
        if records != self.records:  # sent whole: a resumed session may supersede old records
            self.inbox.put("records", records)
            self.records = records
        snapshots, evaluations = self.run.snapshots(), self.run.evaluations()
        self._put_if_new("snapshot", snapshots[-1].path if snapshots else None)
        self._put_if_new("episode", evaluations[-1].path if evaluations else None)
        status = self.run.status
        self._put_if_new("status", status)
        return status in ("running", "empty")

    def _put_if_new(self, kind: str, value: Path | str | None) -> None:
        if value is not None and value != self.latest[kind]:
            self.latest[kind] = value
            self.inbox.put(kind, value)

    def nudge(self) -> None:
        """Poll now (from any thread): on the loop, where `follow` polls; at once without one."""
        if self.inbox.loop is None:
            self.poll()
        else:
            self.inbox.loop.call_soon_threadsafe(self._nudged.set)

    async def follow(self) -> None:
        """Poll every `interval` seconds, or sooner when nudged, until the run is no longer
        written."""
        while self.poll():
            self._nudged.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), self.interval)


# ---------------------------------------------------------------------------------------------
# The board: every view of one run, as tabs.


class Board:
    """Every view of one run, as tabs: of a run directory, followed while it is being written
    (given here, or later to `follow`: `train_in_background` does so for training in this kernel).

    `min_interval`: least seconds between redraws; `interval`: seconds between polls of the run
    directory; `wait`: return only once the run's newest snapshot is on the latent map (seconds
    the first time a run is opened, at once after: the map is cached), so that a board on a
    finished run is complete when shown, and in a notebook saved right after."""

    def __init__(
        self,
        run_dir: str | Path | None = None,
        *,
        min_interval: float = 0.5,
        interval: float = 2.0,
        wait: bool = False,
    ):
        self.data = views.BoardData()
        self.inbox = Inbox(self._apply, min_interval)
        self.views: dict[str, Any] = {  # each with .widget and .show(data, changed)
            "curves": views.CurvesView(),
            "latent map": views.LatentMapView(),
            "imagination": views.ImaginationView(),
            "disagreement": views.DisagreementView(),
            "episode": views.EpisodeView(),
        }
        self.header = ipw.HTML("waiting for the run...")
        self.errors = ipw.Output()
        tabs = ipw.Tab(children=[v.widget for v in self.views.values()], titles=list(self.views))
        self.widget = ipw.VBox([self.header, tabs, self.errors])
        self.interval = interval
        self.follower: RunFollower | None = None
        self.task: asyncio.Task | None = None
        self.projecting: threading.Thread | None = None
        if run_dir is not None:
            self.follow(run_dir, wait=wait)

    def follow(self, run_dir: str | Path, *, wait: bool = False) -> None:
        """Show the run at `run_dir` from what it holds now, and follow it while it is being
        written (call on the notebook's thread; `wait` as in the class docstring)."""
        self.close()
        self.follower = RunFollower(Run(run_dir), self.inbox, self.interval)
        self.inbox.put("cost_limit", _cost_limit(self.follower.run))
        self.refresh()
        if wait and self.projecting is not None:
            self.projecting.join()
            self.inbox.drain()
        if self.inbox.loop is not None:
            self.task = self.inbox.loop.create_task(self.follower.follow())

    def nudge(self) -> None:
        """Read the run directory now (from any thread): its writer has just written to it."""
        if self.follower is not None:
            self.follower.nudge()

    def refresh(self) -> None:
        """Read what is new in the run directory now (and apply it, outside an event loop)."""
        if self.follower is not None:
            self.follower.poll()
        self.inbox.drain()

    def close(self) -> None:
        """Stop following the run directory."""
        if self.task is not None:
            self.task.cancel()

    def _ipython_display_(self) -> None:
        """The live board, and below it a copy of its views as images for a notebook read
        without a kernel; the copy is brought up to date as the board changes (`_refresh_copy`)."""
        from IPython.display import display

        display(self.widget)
        self._handle = display(self._bundle(), raw=True, display_id=True)
        self._copied_at = time.monotonic()

    def _bundle(self) -> dict[str, Any]:
        return figures.saved_copy(self.static_html())

    def static_html(self) -> str:
        """The board's last state as self-contained HTML: its header and every view."""
        views = [view_html(view, name) for name, view in self.views.items()]
        return "\n".join([f"<p>{self.header.value}</p>", *views])

    def _refresh_copy(self, now: bool = False) -> None:
        """Bring the displayed HTML copy up to date: at once on a change of status, otherwise
        at most every COPY_EVERY seconds, the last change always included (a redisplayed
        widget view flickers, so not on every redraw)."""
        handle = getattr(self, "_handle", None)
        if handle is None:
            return
        wait = self._copied_at + COPY_EVERY - time.monotonic()
        if now or wait <= 0 or self.inbox.loop is None:
            self._copy_due = False
            self._copied_at = time.monotonic()
            handle.update(self._bundle(), raw=True)
        elif not getattr(self, "_copy_due", False):
            self._copy_due = True
            self.inbox.loop.call_later(wait, self._refresh_copy, True)

    def _apply(self, updates: list[Update]) -> None:
        """On the loop: take in a batch of updates, then let every view redraw what changed."""
        try:
            changed = self._take(updates)
            steps = [record["step"] for record in self.data.records]
            self.header.value = f"<b>{self.data.status}</b>, step {max(steps, default=0)}"
            for view in self.views.values():
                view.show(self.data, changed)
            self._refresh_copy(now="status" in changed)
        except Exception:  # shown in the notebook, not lost in the kernel's log
            self.errors.append_stderr(traceback.format_exc())

    def _take(self, updates: list[Update]) -> set[str]:
        data, changed = self.data, set()
        newest: dict[str, Any] = {}  # of several snapshots or episodes, only the last is loaded
        for kind, payload in updates:
            if kind == "records":
                data.records = list(payload)
            elif kind in ("snapshot", "episode"):
                newest[kind] = payload
            elif kind == "coords":
                path, coords = payload
                if path != data.snapshot_path:
                    continue  # a newer snapshot came in meanwhile
                data.coords = coords
            elif kind == "status":
                data.status = payload
            elif kind == "cost_limit":
                data.cost_limit, kind = payload, "records"  # the cost curve is drawn anew
            elif kind == "error":
                self.errors.append_stderr(payload)
            changed.add(kind)
        if "episode" in newest:
            data.episode = load_arrays(newest["episode"])
        if "snapshot" in newest:
            from workbench.inspect.projection import load_snapshot

            data.snapshot_path = Path(newest["snapshot"])
            data.snapshot, data.coords = load_snapshot(data.snapshot_path), None
            if self.inbox.loop is None:
                data.coords = map_coordinates(data.snapshot_path)
                changed.add("coords")
            else:
                _import_before_threads()
                self.projecting = threading.Thread(
                    target=self._project, args=(data.snapshot_path,), daemon=True
                )
                self.projecting.start()
        return changed

    def _project(self, snapshot_path: Path) -> None:
        """In a worker thread: place the snapshot on its run's latent map (fitting the UMAP the
        first time takes seconds); the coordinates come back through the inbox."""
        try:
            self.inbox.put("coords", (snapshot_path, map_coordinates(snapshot_path)))
        except Exception:
            self.inbox.put("error", traceback.format_exc())


def _cost_limit(run: Run) -> float | None:
    """The run's cost limit, or None while its config cannot be read."""
    try:
        return float(run.config()["agent"]["cost_limit"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None


def _import_before_threads() -> None:
    """Import pandas on this thread before a worker thread's imports load it too: plotly takes a
    module from sys.modules as it finds it, and one half imported by another thread fails
    ('partially initialized module', seen once executing lesson 00)."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        pass


def map_coordinates(snapshot_path: Path) -> np.ndarray:
    """A snapshot's latents on its run's map, cached on disk."""
    from workbench.inspect.projection import coordinates

    return coordinates(run_of(snapshot_path), snapshot_path)
