"""The notebook widgets' Python side: their figures change when a run directory grows and when
training events arrive, and every widget change happens on the kernel's event loop."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import plotly.graph_objects as go
import pytest

from workbench import widgets
from workbench.config import resolve
from workbench.inspect import figures
from workbench.runs import RunWriter


def fake_snapshot(step: int, latents: int = 12, horizon: int = 3, rollouts: int = 2) -> dict:
    """A snapshot as `workbench.snapshots.Snapshotter` writes one, with a barrier agent's values."""
    rng = np.random.default_rng(step)
    unsafe = np.arange(latents) % 3 == 0
    return {
        "step": np.int64(step),
        "update": np.int64(step // 10),
        "features": rng.normal(size=(latents, 6)).astype(np.float16),
        "unsafe": unsafe,
        "cost": unsafe.astype(np.float32),
        "reward": rng.normal(size=latents).astype(np.float32),
        "pred_cost": unsafe * 0.8,
        "time": np.arange(latents, dtype=np.int32),
        "sequence": np.zeros(latents, np.int32),
        "frame": rng.integers(0, 255, (latents, 64, 64, 3), dtype=np.uint8),
        "disagreement": rng.random(latents).astype(np.float32),
        "barrier": np.where(unsafe, -0.5, 0.5).astype(np.float32),
        "imag_start": np.arange(rollouts, dtype=np.int32),
        "imag_reward": rng.normal(size=(horizon + 1, rollouts)).astype(np.float32),
        "imag_cost": rng.random((horizon + 1, rollouts)).astype(np.float32),
        "imag_disagreement": rng.random((horizon, rollouts)).astype(np.float32),
        "imag_barrier": rng.normal(size=(horizon + 1, rollouts)).astype(np.float32),
        "imag_frames": rng.integers(0, 255, (horizon + 1, rollouts, 64, 64, 3), dtype=np.uint8),
    }


def fake_episode(length: int = 6) -> dict:
    return {
        "frame": np.zeros((length, 64, 64, 3), np.uint8),
        "recon": np.full((length, 64, 64, 3), 128, np.uint8),
        "action": np.zeros((length, 2), np.float32),
        "reward": np.arange(length, dtype=np.float32),
        "cost": np.zeros(length, np.float32),
        "pred_cost": np.zeros(length, np.float32),
        "disagreement": np.ones(length, np.float32),
        "barrier": np.linspace(1, -1, length).astype(np.float32),
    }


@pytest.fixture
def cheap_map(monkeypatch):
    """The latent map's coordinates without fitting a UMAP (slow): two feature columns."""

    def coordinates(snapshot_path):
        return np.load(snapshot_path)["features"][:, :2].astype(np.float32)

    monkeypatch.setattr(widgets.board, "map_coordinates", coordinates)


def curve(board: widgets.Board, panel: int = 0) -> np.ndarray:
    return np.asarray(board.views["curves"].panels[panel][1].data[0].y)


def test_board_follows_a_run_directory_as_it_grows(tmp_path, cheap_map):
    writer = RunWriter(tmp_path / "run", config=resolve("tiny").to_dict())
    writer.log("episode", 50, {"return": 1.0, "cost": 3.0})
    board = widgets.Board(tmp_path / "run")  # no event loop here: updates apply at once
    assert list(curve(board)) == [1.0]
    assert board.data.snapshot is None and not board.views["episode"].plot.data

    writer.log("episode", 100, {"return": 2.0, "cost": 0.0})
    writer.log("train", 100, {"wm/disagreement": 0.3, "agent/disagreement": 0.5})
    writer.save_snapshot(10, fake_snapshot(100))
    writer.save_eval(100, 0, fake_episode())
    board.refresh()

    assert list(curve(board)) == [1.0, 2.0] and list(curve(board, 1)) == [3.0, 0.0]
    latent_map = board.views["latent map"]
    assert latent_map.coloring.value == "safety label"
    points = sum(len(trace.x) for trace in latent_map.plot.data)
    assert points == 12  # safe and unsafe traces
    latent_map.coloring.value = "barrier B(z)"
    assert list(latent_map.plot.data[0].marker.color[:3]) == [-0.5, 0.5, 0.5]
    imagination = board.views["imagination"]
    assert imagination.rollout.max == 1 and len(imagination.plot.data) > 0
    disagreement = board.views["disagreement"].plot.data
    assert [list(trace.y) for trace in disagreement] == [[0.3], [0.5]]
    assert board.views["episode"].step.max == 5

    writer.save_snapshot(20, fake_snapshot(200))  # a newer snapshot replaces the shown one
    board.refresh()
    assert "step 200" in latent_map.caption.value
    writer.close("finished")
    assert board.follower.poll() is False  # nothing more to follow


def test_views_redraw_when_their_controls_move():
    snapshot, episode = fake_snapshot(100), fake_episode()
    imagination = widgets.ImaginationView()
    imagination.show(widgets.BoardData(snapshot=snapshot), {"snapshot"})
    imagination.rollout.value = 1
    barrier_line = [t for t in imagination.plot.data if t.name == "rollout 1"][0]
    assert np.allclose(barrier_line.y, snapshot["imag_barrier"][:, 1])

    latent_map = widgets.LatentMapView()
    latent_map.show(widgets.BoardData(snapshot=snapshot, coords=np.zeros((12, 2))), {"snapshot"})
    unsafe_trace = latent_map.plot.data[1]
    latent_map.latent.value = int(unsafe_trace.customdata[1])  # the number read on hover
    assert latent_map.selected == 3
    assert "latent 3: unsafe" in latent_map.frame.layout.title.text
    assert latent_map.plot.data[-1].name == "selected"

    stepper = widgets.EpisodeView()
    stepper.show(widgets.BoardData(episode=episode), {"episode"})
    stepper.step.value = 4
    assert {shape.x0 for shape in stepper.plot.layout.shapes if shape.x0 == shape.x1} == {4}
    assert "step 4" in stepper.caption.value and "barrier B(z) -0.6" in stepper.caption.value


def test_inbox_applies_updates_from_other_threads_on_the_loop_in_batches():
    applied: list[tuple[int, list]] = []

    async def main() -> None:
        inbox = widgets.Inbox(lambda updates: applied.append((threading.get_ident(), updates)))
        producer = threading.Thread(target=lambda: [inbox.put("n", i) for i in range(100)])
        producer.start()
        producer.join()
        await asyncio.sleep(0.1)

    asyncio.run(main())
    assert {thread for thread, _ in applied} == {threading.get_ident()}
    assert [payload for _, batch in applied for _, payload in batch] == list(range(100))
    assert len(applied) < 100  # coalesced


def test_live_training_updates_the_board_on_the_event_loop(tmp_path, fake_envs, monkeypatch):
    config = resolve("tiny", {"train.device": "cpu", "train.snapshot_every": 2})
    config.algo = "barrier"
    drawn_on: set[int] = set()
    real_redraw = widgets.redraw

    def recording_redraw(widget, figure):
        drawn_on.add(threading.get_ident())
        real_redraw(widget, figure)

    monkeypatch.setattr(widgets.views, "redraw", recording_redraw)
    monkeypatch.setattr(
        widgets.board, "map_coordinates", lambda path: np.zeros((256, 2), np.float32)
    )

    async def main() -> widgets.Training:
        board = widgets.Board(min_interval=0.05)
        training = widgets.train_in_background(config, tmp_path / "run", board=board)
        while training.thread.is_alive():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the last updates, and the latent map's worker thread
        return training

    training = asyncio.run(main())
    assert training.wait() == "finished"
    board = training.board
    assert drawn_on == {threading.get_ident()}  # never from the training thread
    assert board.data.status == "finished"
    episodes = [r for r in board.data.records if r["kind"] == "episode"]
    assert len(curve(board)) == len(episodes) > 0
    assert board.data.snapshot is not None and board.data.coords is not None
    assert "barrier B(z)" in board.views["latent map"].coloring.options
    assert board.views["episode"].step.max > 0  # the final evaluation episode


def test_stop_ends_background_training_cleanly(tmp_path, fake_envs):
    config = resolve("tiny", {"train.device": "cpu", "train.steps": 100_000})
    training = widgets.train_in_background(config, tmp_path / "run")
    training.stop()
    assert training.wait(timeout=60) == "stopped"
    assert training.engine.step < 100_000


def test_episode_view_sets_the_learned_against_the_true_distance():
    episode = fake_episode()
    steps = len(episode["frame"])
    distance = np.linspace(-0.5, 1.0, steps)
    episode = {**episode, "hazard_distance": distance, "barrier": 2 * distance}
    stepper = widgets.EpisodeView()
    stepper.show(widgets.BoardData(episode=episode), {"episode"})
    titles = [a.text for a in stepper.truth.layout.annotations]
    assert titles[0] == "barrier B(z): correlation +1.00"
    assert "true hazard distance" in stepper.caption.value


def test_views_save_small_and_show_without_a_kernel():
    stepper = widgets.episode_view(fake_episode())
    copy = figures.saved_copy(widgets.view_html(stepper.view))["text/html"]
    if figures.figure_png(go.Figure()) is None:  # no kaleido or Chromium: plotly's HTML instead
        assert copy.count("plotly-graph-div") == 2 and "cdn.plot.ly" in copy
    else:
        assert copy.count('<img src="data:image/png;base64,') == 2  # frames, per-step values
        assert "<script" not in copy  # no plotly.js, not even fetched
    saved = sum(len(json.dumps(w.get_state(), default=str)) for w in stepper.view.widget.children)
    plot_state = json.dumps(stepper.view.plot.get_state(), default=str)
    assert len(plot_state) < 200_000 and "application/vnd.plotly.v1+json" in plot_state
    assert saved < 1_000_000  # a FigureWidget's state alone held plotly.js, 5 MB


def test_a_board_on_a_run_directory_shows_its_state_from_the_start(tmp_path, cheap_map):
    writer = RunWriter(tmp_path / "run", config=resolve("tiny").to_dict())
    writer.log("episode", 50, {"return": 1.0, "cost": 3.0})

    async def in_a_kernel() -> widgets.Board:  # an event loop runs: the board follows in a task
        board = widgets.Board(tmp_path / "run")
        board.close()
        return board

    board = asyncio.run(in_a_kernel())
    assert "step 50" in board.header.value  # read when made, not "waiting for the run..."
    assert board.header.value in board.static_html()
    assert list(curve(board)) == [1.0]
    cost = board.views["curves"].panels[1][1]
    assert resolve("tiny").agent.cost_limit in [shape.y0 for shape in cost.layout.shapes]


def test_viewers_never_write_into_the_shipped_runs():
    from workbench.inspect.projection import SHIPPED_RUNS, default_cache
    from workbench.lessons import pretrained_run

    cache = default_cache(pretrained_run())
    assert not cache.resolve().is_relative_to(SHIPPED_RUNS)
