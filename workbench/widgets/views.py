"""The views of a run, each drawn with the dashboard's own figures (`workbench.inspect`) from
what a board has seen (`BoardData`): training curves, the latent map, barrier and cost along
imagined rollouts, ensemble disagreement, and a real episode step by step. None reads files or
runs models; each redraws only what changed. `episode_view` and its kin show one on its own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as ipw
import numpy as np
import plotly.graph_objects as go

from workbench.inspect import figures
from workbench.widgets.display import FigureView, Shown, redraw


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
            menu = ipw.Dropdown(options=_named([key]), value=key, description="metric")
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
                menu.options = _named(sorted({*keys, chosen}))
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


def _named(keys: Iterable[str]) -> list[tuple[str, str]]:
    """A menu's options: each key shown by its name (`figures.label`)."""
    return [(figures.label(key), key) for key in keys]


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

    SOURCES = ("wm/disagreement", "agent/disagreement")

    def __init__(self):
        self.plot = FigureView()
        self.widget = ipw.VBox([self.plot])

    def show(self, data: BoardData, changed: set[str]) -> None:
        if "records" not in changed:
            return
        train = [r for r in data.records if r.get("kind") == "train"]
        runs = {
            figures.label(key): [{"step": r["step"], "disagreement": r.get(key)} for r in train]
            for key in self.SOURCES
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
            parts.append(f"{figures.label(key)} {float(episode[key][t]):.3g}")
    if "action" in episode:
        parts.append(
            figures.label("action")
            + " "
            + np.array2string(np.asarray(episode["action"][t]), precision=2)
        )
    return " &nbsp;|&nbsp; ".join(parts)


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
