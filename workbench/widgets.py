"""Live notebook views of a run, drawn with the dashboard's own figures (`workbench.inspect`):
training curves, the latent map, barrier and cost along imagined rollouts, ensemble
disagreement, and a real episode step by step.

    from workbench import widgets
    board = widgets.Board("checkpoints/pointgoal1-barrier")   # any run directory, followed as it grows
    board                                                      # shows the views as tabs

    training = widgets.train_in_background(config, "runs/nb")   # train in this kernel, watched live
    training            # its board;  training.stop() ends it cleanly, training.wait() joins it

    widgets.episode_view(episode)        # one view on its own: a played episode, a snapshot ...

How updates travel. A widget must be changed on the kernel's own thread (ipykernel >= 7 handles
messages on another thread, so changing widgets from the training thread can fail or lose
output). So:
1. the training thread's hook (`BoardHook`) only turns each event into a small update and puts
   it in the board's `Inbox`; a board on a run directory polls it (`workbench.runs.Run` reads
   only what was appended) and puts what is new in the same inbox;
2. the inbox asks the kernel's event loop, captured when the board is made, to drain it
   (`call_soon_threadsafe`), at most once every `min_interval` seconds;
3. on that loop the board applies the updates to its data and redraws the views once.
Slow work (fitting the UMAP of the latent map) runs in a worker thread and comes back through
the inbox too. Outside a running event loop (a script, a test) updates are applied at once.
"""

from __future__ import annotations

import asyncio
import html
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as ipw
import numpy as np
import plotly.graph_objects as go

from workbench.hooks import (
    AgentUpdate,
    EnvStep,
    EpisodeEnd,
    Evaluation,
    Hook,
    Snapshot,
    TrainEnd,
    TrainStart,
    WorldModelUpdate,
)
from workbench.inspect import figures
from workbench.runs import Run, load_arrays, run_of

if TYPE_CHECKING:
    from workbench.config import Config
    from workbench.engine import Engine

COPY_EVERY = 10.0
"""Least seconds between refreshes of a board's HTML copy (see `Board._refresh_copy`)."""

Update = tuple[str, Any]
"""(kind, payload): records (new metric records), metrics (all of them, replacing those seen),
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
        if self.loop is None:
            self.drain()
            return
        with self._lock:
            if self._due:
                return
            self._due = True
        self.loop.call_soon_threadsafe(self._schedule_drain)

    def _schedule_drain(self) -> None:
        wait = self._last_drain + self.min_interval - time.monotonic()
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


class FigureView(ipw.Output):
    """A plotly figure in an Output widget. Its widget state holds the figure as plotly's JSON,
    not a copy of plotly.js as a `go.FigureWidget`'s does (5 MB each), so a saved notebook stays
    small. (Its image, for reading without a kernel, is in the board's saved copy: `Board`.)
    `data` and `layout` are those of the figure shown."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.figure = go.Figure()

    @property
    def data(self) -> tuple:
        return self.figure.data

    @property
    def layout(self) -> go.Layout:
        return self.figure.layout

    def show(self, figure: go.Figure) -> None:
        """Show `figure` in place of the one shown (works from any callback on the loop)."""
        self.figure = figure
        self.outputs = (
            {
                "output_type": "display_data",
                "data": figures.figure_bundle(figure, image=False),
                "metadata": {},
            },
        )


def redraw(widget: FigureView, figure: go.Figure) -> None:
    """Make `widget` show `figure`."""
    widget.show(figure)


# ---------------------------------------------------------------------------------------------
# Where updates come from: training in this kernel, or a run directory.


class BoardHook(Hook):
    """The training thread's side of a board: turns events into updates, and does nothing else.
    Training metrics are sent every `train.log_every` updates (those of that update)."""

    def __init__(self, inbox: Inbox):
        self.inbox = inbox
        self.world_model_metrics: dict[str, float] = {}

    def on_train_start(self, event: TrainStart) -> None:
        self.every = event.engine.config.train.log_every
        self.inbox.put("cost_limit", event.engine.config.agent.cost_limit)
        self.inbox.put("status", "running")

    def on_episode_end(self, event: EpisodeEnd) -> None:
        record = {"return": event.ret, "cost": event.cost, "length": event.length}
        self.inbox.put("records", [_record("episode", event.step, record)])

    def on_world_model_update(self, event: WorldModelUpdate) -> None:
        if event.update % self.every == 0:
            self.world_model_metrics = event.metrics

    def on_agent_update(self, event: AgentUpdate) -> None:
        if event.update % self.every == 0:
            values = {**self.world_model_metrics, **event.metrics, "update": event.update}
            self.inbox.put("records", [_record("train", event.step, values)])

    def on_evaluation(self, event: Evaluation) -> None:
        keys = event.episodes[0].keys() if event.episodes else ()
        means = {key: np.mean([episode[key] for episode in event.episodes]) for key in keys}
        self.inbox.put("records", [_record("eval", event.step, means)])
        if event.paths:
            self.inbox.put("episode", event.paths[-1])

    def on_snapshot(self, event: Snapshot) -> None:
        self.inbox.put("snapshot", event.path)

    def on_train_end(self, event: TrainEnd) -> None:
        self.inbox.put("status", event.status)


def _record(kind: str, step: int, values: dict[str, Any]) -> dict[str, Any]:
    """A metrics record as the run directory holds them (plain floats; no value: left out)."""
    numbers = {key: float(value) for key, value in values.items() if value is not None}
    return {"kind": kind, "step": step, **numbers}


class RunFollower:
    """Puts what is new in a run directory into an inbox, every `interval` seconds on the loop
    while the run is being written (`follow`), or when asked (`poll`)."""

    def __init__(self, run: Run, inbox: Inbox, interval: float = 2.0):
        self.run = run
        self.inbox = inbox
        self.interval = interval
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
            self.inbox.put("metrics", records)
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

    async def follow(self) -> None:
        while self.poll():
            await asyncio.sleep(self.interval)


# ---------------------------------------------------------------------------------------------
# The views. Each draws from `BoardData` what changed; none reads files or runs models.


@dataclass
class BoardData:
    """What a board has seen of its run so far."""

    records: list[dict[str, Any]] = field(default_factory=list)
    snapshot: dict[str, np.ndarray] | None = None
    snapshot_path: Path | None = None
    coords: np.ndarray | None = None
    """The latent map's coordinates [M, 2] of the snapshot's latents (None until fitted)."""
    episode: dict[str, np.ndarray] | None = None
    status: str = "empty"
    cost_limit: float | None = None
    """The run's episode cost budget, drawn on the cost curve."""


class CurvesView:
    """Metrics against env steps, one panel per key (each with a menu to pick another);
    evaluation episodes as a second line."""

    def __init__(self, keys: Iterable[str] = ("return", "cost")):
        self.records: list[dict[str, Any]] = []
        self.cost_limit: float | None = None
        self.panels = []
        for key in keys:
            menu = ipw.Dropdown(options=[key], value=key, description="metric")
            panel = (menu, FigureView())
            menu.observe(lambda _, panel=panel: self._draw(*panel), names="value")
            self.panels.append(panel)
        self.widget = ipw.HBox([ipw.VBox([menu, plot]) for menu, plot in self.panels])

    def show(self, data: BoardData, changed: set[str]) -> None:
        if "records" not in changed:
            return
        self.records, self.cost_limit = data.records, data.cost_limit
        keys = figures.metric_keys(self.records)
        for menu, plot in self.panels:
            if len(keys) != len(menu.options):
                chosen = menu.value
                menu.options = sorted({*keys, chosen})
                menu.value = chosen
            self._draw(menu, plot)

    def figures(self) -> list[go.Figure]:
        return [plot.figure for _, plot in self.panels]

    def _draw(self, menu: ipw.Dropdown, plot: FigureView) -> None:
        runs = {"training": [r for r in self.records if r.get("kind") in ("episode", "train")]}
        evaluations = [r for r in self.records if r.get("kind") == "eval"]
        if evaluations:
            runs["evaluation"] = evaluations
        redraw(plot, figures.curves(runs, menu.value, height=320, cost_limit=self.cost_limit))


class LatentMapView:
    """The newest snapshot's latents on the latent map, coloured by a choice of quantity; pick a
    latent by its number (hover over a point to read it) to see its frame."""

    def __init__(self):
        self.coloring = ipw.Dropdown(description="colour by")
        self.coloring.observe(lambda _: self._draw(), names="value")
        self.latent = ipw.BoundedIntText(description="latent", min=-1, max=-1, value=-1)
        self.latent.observe(lambda change: self.select(change["new"]), names="value")
        self.plot = FigureView()
        self.frame = FigureView()
        self.caption = ipw.HTML("no snapshot yet (train with train.snapshot_every > 0)")
        self.selected: int | None = None
        self.data = BoardData()
        controls = ipw.HBox([self.coloring, self.latent])
        self.widget = ipw.VBox([self.caption, controls, ipw.HBox([self.plot, self.frame])])

    def show(self, data: BoardData, changed: set[str]) -> None:
        self.data = data
        if data.snapshot is None or not changed & {"snapshot", "coords"}:
            return
        choices = list(figures.color_choices(data.snapshot))
        if list(self.coloring.options) != choices:
            chosen = self.coloring.value
            self.coloring.options = choices
            self.coloring.value = chosen if chosen in choices else choices[0]
        self.caption.value = _snapshot_caption(data.snapshot) + (
            "" if data.coords is not None else " &mdash; fitting the latent map (UMAP)..."
        )
        self.latent.max = len(data.snapshot["unsafe"]) - 1
        self.selected = None
        self._draw()

    def _draw(self) -> None:
        snapshot, coords = self.data.snapshot, self.data.coords
        if snapshot is None or coords is None or self.coloring.value is None:
            return
        values = figures.color_choices(snapshot)[self.coloring.value]
        redraw(
            self.plot,
            figures.latent_map(coords, values, self.coloring.value, selected=self.selected),
        )

    def select(self, index: int) -> None:
        """Ring latent `index` on the map and show its frame (-1: none)."""
        snapshot = self.data.snapshot
        if snapshot is None or not 0 <= index < len(snapshot["unsafe"]):
            return
        self.selected = index
        label = "unsafe" if snapshot["unsafe"][index] else "safe"
        title = f"latent {index}: {label}, cost {snapshot['cost'][index]:.2f}"
        redraw(
            self.frame, figures.frame_strip([snapshot["frame"][index]], [""], scale=4, title=title)
        )
        self._draw()

    def figures(self) -> list[go.Figure]:
        return [self.plot.figure, self.frame.figure]


def _snapshot_caption(snapshot: dict[str, np.ndarray]) -> str:
    unsafe = int(np.sum(snapshot["unsafe"]))
    return (
        f"snapshot at step {int(snapshot['step'])} (update {int(snapshot['update'])}): "
        f"{len(snapshot['unsafe'])} latents, {unsafe} unsafe"
    )


class ImaginationView:
    """Barrier, predicted cost, disagreement and reward along the newest snapshot's imagined
    rollouts (one chosen with the slider, over the band of all of them), and its decoded frames."""

    def __init__(self):
        self.rollout = ipw.IntSlider(description="rollout", min=0, max=0)
        self.rollout.observe(lambda _: self._draw(), names="value")
        self.plot = FigureView()
        self.frames = FigureView()
        self.caption = ipw.HTML("no snapshot yet (train with train.snapshot_every > 0)")
        self.snapshot: dict[str, np.ndarray] | None = None
        self.widget = ipw.VBox([self.caption, self.rollout, self.frames, self.plot])

    def show(self, data: BoardData, changed: set[str]) -> None:
        if "snapshot" not in changed or data.snapshot is None:
            return
        self.snapshot = data.snapshot
        self.caption.value = _snapshot_caption(data.snapshot)
        self.rollout.max = len(data.snapshot["imag_start"]) - 1
        self._draw()

    def _draw(self) -> None:
        if self.snapshot is None:
            return
        index = self.rollout.value
        frames = self.snapshot["imag_frames"][:, index]
        labels = [f"t={t}" for t in range(len(frames))]
        grid = figures.frame_grid(
            frames, labels, columns=8, scale=2, title="decoded imagined frames"
        )
        redraw(self.frames, grid)
        redraw(self.plot, figures.imagination_figure(self.snapshot, index))

    def figures(self) -> list[go.Figure]:
        return [self.frames.figure, self.plot.figure]


class DisagreementView:
    """Ensemble disagreement over training: on the replay's real transitions and along the
    agent's imagined rollouts (where the policy can drift off the data)."""

    SOURCES = {"real transitions": "wm/disagreement", "imagined rollouts": "agent/disagreement"}

    def __init__(self):
        self.plot = FigureView()
        self.widget = ipw.VBox([self.plot])

    def show(self, data: BoardData, changed: set[str]) -> None:
        if "records" not in changed:
            return
        train = [r for r in data.records if r.get("kind") == "train"]
        runs = {
            name: [{"step": r["step"], "disagreement": r.get(key)} for r in train]
            for name, key in self.SOURCES.items()
        }
        redraw(self.plot, figures.curves(runs, "disagreement", height=360))

    def figures(self) -> list[go.Figure]:
        return [self.plot.figure]


class EpisodeView:
    """A real episode step by step: the frame beside the world model's reconstruction, and the
    per-step values with a marker at the step (Play, or drag the slider)."""

    def __init__(self):
        self.step = ipw.IntSlider(description="step", min=0, max=0)
        self.play = ipw.Play(interval=200, min=0, max=0)
        ipw.jslink((self.play, "value"), (self.step, "value"))
        self.step.observe(lambda _: self._draw(), names="value")
        self.images = FigureView()
        self.plot = FigureView()
        self.truth = FigureView()
        self.caption = ipw.HTML("no evaluation episode yet")
        self.episode: dict[str, np.ndarray] | None = None
        self.widget = ipw.VBox(
            [ipw.HBox([self.play, self.step]), self.caption, self.images, self.plot, self.truth]
        )

    def show(self, data: BoardData, changed: set[str]) -> None:
        if "episode" not in changed or data.episode is None:
            return
        self.episode = data.episode
        last = len(data.episode["frame"]) - 1
        self.play.max = self.step.max = last
        self.step.value = min(self.step.value, last)
        if figures.has_true_distance(data.episode):  # the learned against the true
            redraw(self.truth, figures.true_distance_figure([data.episode]))
        self._draw()

    def _draw(self) -> None:
        if self.episode is None:
            return
        t = self.step.value
        pictures = [self.episode["frame"][t]]
        if "recon" in self.episode:
            pictures.append(self.episode["recon"][t])
        strip = figures.frame_strip(pictures, ["real", "reconstruction"][: len(pictures)], scale=3)
        redraw(self.images, strip)
        redraw(self.plot, figures.episode_figure(self.episode, t))
        self.caption.value = _step_caption(self.episode, t)

    def figures(self) -> list[go.Figure]:
        return [self.images.figure, self.plot.figure, self.truth.figure]


def _step_caption(episode: dict[str, np.ndarray], t: int) -> str:
    parts = [f"step {t}"]
    for key in ("reward", "cost", "pred_cost", "barrier", "hazard_distance", "disagreement"):
        if key in episode:
            parts.append(f"{key} {float(episode[key][t]):.3g}")
    if "action" in episode:
        parts.append("action " + np.array2string(np.asarray(episode["action"][t]), precision=2))
    return " &nbsp;|&nbsp; ".join(parts)


# ---------------------------------------------------------------------------------------------
# The board: every view of one run, as tabs.


class Board:
    """Every view of one run, as tabs: of a run directory (followed while it is being written)
    or of training in this kernel (`train_in_background`, or pass `board.hook()` to an Engine).

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
        self.data = BoardData()
        self.inbox = Inbox(self._apply, min_interval)
        self.views = {
            "curves": CurvesView(),
            "latent map": LatentMapView(),
            "imagination": ImaginationView(),
            "disagreement": DisagreementView(),
            "episode": EpisodeView(),
        }
        self.header = ipw.HTML("waiting for the run...")
        self.errors = ipw.Output()
        tabs = ipw.Tab(children=[v.widget for v in self.views.values()], titles=list(self.views))
        self.widget = ipw.VBox([self.header, tabs, self.errors])
        self.follower: RunFollower | None = None
        self.task: asyncio.Task | None = None
        self.projecting: threading.Thread | None = None
        if run_dir is not None:
            self.follower = RunFollower(Run(run_dir), self.inbox, interval)
            self.inbox.put("cost_limit", _cost_limit(self.follower.run))
            self.refresh()  # what the run holds now, shown from the start
            if wait and self.projecting is not None:
                self.projecting.join()
                self.inbox.drain()
            if self.inbox.loop is not None:
                self.task = self.inbox.loop.create_task(self.follower.follow())

    def hook(self) -> BoardHook:
        """A hook to pass to an `Engine` so this board shows its training live."""
        return BoardHook(self.inbox)

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
                data.records.extend(payload)
            elif kind == "metrics":
                data.records = list(payload)
                kind = "records"  # to the views, the records changed
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


# ---------------------------------------------------------------------------------------------
# One view on its own, and training in the background.


class Shown:
    """A view as a notebook shows it: the live widget, and below it (for a notebook read or
    exported without a kernel) what it shows, as images. `widget` is the view's widget."""

    def __init__(self, view: Any, title: str = ""):
        self.view, self.widget, self.title = view, view.widget, title

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
        display(figures.saved_copy(view_html(self.view, self.title)), raw=True)


def view_html(view: Any, title: str = "") -> str:
    """A view's caption and figures as self-contained HTML (images: `figures.figure_html`)."""
    parts = [f"<h4>{html.escape(title)}</h4>"] if title else []
    caption = getattr(view, "caption", None)
    if caption is not None:
        parts.append(f"<p>{caption.value}</p>")
    parts += [figures.figure_html(figure) for figure in view.figures() if figure.data]
    return "\n".join(parts)


def _single(view: Any, **data: Any) -> Shown:
    view.show(BoardData(**data), set(data))
    return Shown(view)


def episode_view(episode: dict[str, np.ndarray]) -> Shown:
    """Step through one played episode (`workbench.evaluation.play_episode`, or an eval file)."""
    return _single(EpisodeView(), episode=episode)


def imagination_view(snapshot: dict[str, np.ndarray]) -> Shown:
    """A snapshot's imagined rollouts, one at a time."""
    return _single(ImaginationView(), snapshot=snapshot)


def latent_map_view(snapshot: dict[str, np.ndarray], coords: np.ndarray) -> Shown:
    """A snapshot's latents at the given map coordinates [M, 2]."""
    return _single(LatentMapView(), snapshot=snapshot, coords=coords)


class _StopWhenAsked(Hook):
    def __init__(self, stop: threading.Event):
        self.stop = stop

    def on_env_step(self, event: EnvStep) -> bool:
        return not self.stop.is_set()


class Training:
    """Training in a background thread of this kernel, shown live on `board`.

    The engine is built in that thread too, since MuJoCo's rendering (EGL) context works only in
    the thread that made it; `build` gets the hooks this class adds and returns the engine."""

    def __init__(self, build: Callable[[list[Any]], Engine], board: Board):
        self.board = board
        self.engine: Engine | None = None
        self.status: str | None = None
        """finished, stopped or crashed once training is over; None while it runs."""
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._built = threading.Event()
        hooks = [board.hook(), _StopWhenAsked(self._stop)]
        self.thread = threading.Thread(
            target=self._run, args=(build, hooks), daemon=True, name="workbench-training"
        )
        self.thread.start()
        self._built.wait()
        if self.engine is None:  # the config or the run directory was refused: say so here
            raise self.error

    def _run(self, build: Callable[[list[Any]], Engine], hooks: list[Any]) -> None:
        try:
            self.engine = build(hooks)
        except BaseException as error:
            self.error = error
        self._built.set()
        if self.engine is None:
            return
        try:
            self.status = self.engine.train()
        except BaseException as error:  # kept for `wait` to raise in the notebook's thread
            self.error, self.status = error, "crashed"

    def stop(self) -> None:
        """Ask training to stop after the current step (it saves a checkpoint)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until training ends (or `timeout` seconds pass); its status. Re-raises a crash.
        The board shows where training got to at once (in a notebook's last cell, a later
        update would not be saved)."""
        self.thread.join(timeout)
        self.board.inbox.drain()
        if self.error is not None:
            raise self.error
        return self.status

    def _ipython_display_(self) -> None:
        self.board._ipython_display_()


def train_in_background(
    config: Config,
    run_dir: str | Path,
    *,
    hooks: Iterable[Any] = (),
    board: Board | None = None,
) -> Training:
    """Start training `config` into `run_dir` in a background thread (offline algos learn from
    `offline.dataset`), watched live on a board (a new one unless given). Returns once the engine
    is built; display the result to see the board."""
    from workbench.config import OFFLINE_ALGOS
    from workbench.engine import Engine
    from workbench.offline import OfflineEngine

    engine = OfflineEngine if config.algo in OFFLINE_ALGOS else Engine
    board = board or Board()
    return Training(lambda own: engine(config, run_dir, [*own, *hooks], progress=False), board)
