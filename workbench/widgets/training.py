"""Training in a background thread of this kernel, shown live on a board that follows its run
directory (`train_in_background`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.hooks import EnvStep, EpisodeEnd, Evaluation, Hook, Snapshot
from workbench.widgets.board import Board

if TYPE_CHECKING:
    from workbench.config import Config
    from workbench.engine import Engine


class _NotebookSide(Hook):
    """The training thread's link to the notebook: stops when asked, and nudges the board to read
    the run directory when the engine has written to it (it never reads or sends data itself)."""

    def __init__(self, stop: threading.Event, board: Board):
        self.stop, self.board = stop, board

    def on_env_step(self, event: EnvStep) -> bool:
        return not self.stop.is_set()

    def on_episode_end(self, event: EpisodeEnd) -> None:
        self.board.nudge()

    def on_evaluation(self, event: Evaluation) -> None:
        self.board.nudge()

    def on_snapshot(self, event: Snapshot) -> None:
        self.board.nudge()


class Training:
    """Training in a background thread of this kernel, shown live on `board`, which follows the
    run directory from before the first step.

    The engine is built in that thread too, since MuJoCo's rendering (EGL) context works only in
    the thread that made it; `build` gets the hooks this class adds and returns the engine."""

    def __init__(self, build: Callable[[list[Any]], Engine], board: Board):
        self.board = board
        self.engine: Engine | None = None
        self.status: str | None = None
        """finished, stopped or crashed once training is over; None while it runs."""
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._built, self._followed = threading.Event(), threading.Event()
        hooks = [_NotebookSide(self._stop, board)]
        self.thread = threading.Thread(
            target=self._run, args=(build, hooks), daemon=True, name="workbench-training"
        )
        self.thread.start()
        self._built.wait()
        if self.engine is None:  # the config or the run directory was refused: say so here
            assert self.error is not None
            raise self.error
        try:
            board.follow(self.engine.writer.path)
        finally:
            self._followed.set()

    def _run(self, build: Callable[[list[Any]], Engine], hooks: list[Any]) -> None:
        try:
            self.engine = build(hooks)
        except BaseException as error:
            self.error = error
        self._built.set()
        if self.engine is None:
            return
        self._followed.wait()
        try:
            self.status = self.engine.train()
        except BaseException as error:  # kept for `wait` to raise in the notebook's thread
            self.error, self.status = error, "crashed"
        finally:
            self.board.nudge()  # the run's final status

    def stop(self) -> None:
        """Ask training to stop after the current step (it saves a checkpoint)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until training ends (or `timeout` seconds pass); its status. Re-raises a crash.
        The board shows where training got to at once (in a notebook's last cell, a later
        update would not be saved)."""
        self.thread.join(timeout)
        self.board.refresh()
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
    from workbench.engine import Engine

    board = board or Board()
    return Training(lambda own: Engine(config, run_dir, [*own, *hooks], progress=False), board)
