"""The training loop: collect, train the world model, imagine, update the agent; emit events.

    engine = Engine(config, "runs/demo")          # or Engine.resume("runs/demo")
    engine.train()

The engine is built from `Factories` (as DreamerV3's `train(make_agent, make_replay, make_env,
make_logger)`): its data source, the training envs, the evaluation env and the agent, so tests
and users pass their own. The data source (`Source`) is where each step and each update's batch
come from: envs the agent acts in (`collector.EnvSource`) or, for the offline algos, a dataset
(`offline.DatasetSource`); the loop is the same for both. The loop keeps the schedules: it saves
checkpoints, plays evaluation episodes and takes snapshots when they are due, and publishes every
stage as a typed event (`hooks.py`). Hooks only observe (metrics file, progress, live widgets,
yours); they never emit. One env step here is one agent step (`env.action_repeat` physics
steps), counted over all parallel envs.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from workbench import checkpoint
from workbench.agents import make_agent
from workbench.agents.base import Batch
from workbench.collector import EnvSource, updates_due
from workbench.config import OFFLINE_ALGOS, Config, EnvConfig
from workbench.device import autocast, resolve_device
from workbench.envs import make_env, make_vector_env
from workbench.evaluation import episode_summary, play_episodes, world_model_health
from workbench.hooks import (
    AgentUpdate,
    Checkpoint,
    DivergenceGuard,
    EnvStep,
    EpisodeEnd,
    Evaluation,
    Event,
    ExceptionEvent,
    HookBus,
    ImaginationEvent,
    MetricsWriter,
    ProgressBar,
    Snapshot,
    StopFile,
    TrainEnd,
    Trainer,
    TrainStart,
    WorldModelUpdate,
)
from workbench.offline import DatasetSource
from workbench.replay import Replay
from workbench.runs import CONFIG_FILE, RunError, RunWriter, read_json
from workbench.snapshots import Snapshotter
from workbench.world_model import WorldModel

EVAL_SEED_OFFSET = 10_000  # evaluation episodes during training: seeds apart from training's


class Every:
    """True each time a counter crosses a multiple of `period` (0 or less: never)."""

    def __init__(self, period: int, start: int = 0):
        self.period = period
        self.last = start // period if period > 0 else 0

    def __call__(self, count: int) -> bool:
        if self.period <= 0 or count // self.period == self.last:
            return False
        self.last = count // self.period
        return True


class Source(Protocol):
    """Where a run's data comes from: what the loop asks, step by step and update by update.
    Built from the run's config before anything is written; it may change the config (an
    offline run's env is its dataset's)."""

    config: Config
    action_dim: int
    replay: Replay

    def open(self, writer: RunWriter) -> None:
        """Make the replay (episodes it saves go to `writer`'s run directory)."""

    def start(self, trainer: Trainer) -> None:
        """As the loop starts (after a resume has restored the state)."""

    def next(self) -> list[Event]:
        """One step: its events in order (online: episode ends, then the EnvStep)."""

    def batch(self, update: int) -> Batch:
        """What update number `update` learns from."""

    def updated(self, update: int) -> None:
        """Update number `update` is done."""

    def paused(self) -> contextlib.AbstractContextManager:
        """A context in which nothing runs beside the learner (for checkpoints)."""

    def last_snapshot(self, snapshotter: Snapshotter) -> dict[str, np.ndarray] | None:
        """A snapshot to take as training finishes, if any."""

    def stop(self) -> None:
        """The loop is over."""

    def close(self) -> None:
        """Release what it holds (envs)."""


def make_source(config: Config, make_envs: Callable[[EnvConfig], Any]) -> Source:
    """The offline algos (`config.OFFLINE_ALGOS`) learn from `offline.dataset`; the others act
    in the envs `make_envs` makes."""
    if config.algo in OFFLINE_ALGOS:
        return DatasetSource(config)
    return EnvSource(config, make_envs)


@dataclass(frozen=True)
class Factories:
    """What the engine is built from; pass your own (tests pass fakes)."""

    source: Callable[[Config, Callable[[EnvConfig], Any]], Source] = make_source
    """The data source for a config, given the factory of training envs, as `make_source`."""
    envs: Callable[[EnvConfig], Any] = make_vector_env
    """The training envs (`num_envs` of them), as `envs.make_vector_env`."""
    eval_env: Callable[[EnvConfig], Any] = make_env
    """One env for evaluation episodes, as `envs.make_env`."""
    agent: Callable[..., Any] = make_agent
    """The agent for a config, world model and action size, as `agents.make_agent`."""


class Engine:
    factories = Factories()
    """The default factories (the command line's); an `Engine(..., factories=...)` overrides."""

    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        hooks: list[Any] | None = None,
        *,
        factories: Factories | None = None,
        resume: bool = False,
        progress: bool = True,
    ):
        self.factories = factories or self.factories
        self.run_dir = Path(run_dir)
        self.device = resolve_device(config.train.device)
        self.source = self.factories.source(config, self.factories.envs)
        self.config = config = self.source.config
        try:
            self.writer = RunWriter(self.run_dir, config=config.to_dict(), resume=resume)
        except BaseException:
            self.source.close()
            raise
        self.counters: dict[str, Any] = {
            "step": 0,
            "update": 0,
            "episode": 0,
            "cumulative_cost": 0.0,
        }
        self.rng = np.random.default_rng(config.train.seed)
        torch.manual_seed(config.train.seed)
        random.seed(config.train.seed)
        try:
            self._build(resume)
        except BaseException:
            self._abandon()
            raise
        built_in = [MetricsWriter(config.train.log_every), StopFile(), DivergenceGuard()]
        self.bus = HookBus(built_in + ([ProgressBar()] if progress else []) + list(hooks or []))
        self.snapshotter = Snapshotter(self) if config.train.snapshot_every > 0 else None

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        hooks: list[Any] | None = None,
        *,
        steps: int | None = None,
        device: str | None = None,
        progress: bool = True,
    ) -> Engine:
        """Continue a run from its newest checkpoint and its saved episodes (`steps` extends it,
        `device` moves it). Refuses, changing nothing, when no checkpoint can be resumed."""
        if not Path(run_dir).is_dir():
            raise RunError(f"--resume {run_dir}: no such folder")
        data = read_json(Path(run_dir) / CONFIG_FILE)
        if not data:
            raise RunError(f"cannot resume {run_dir}: it holds no run (no {CONFIG_FILE})")
        config = Config.from_dict(data)
        if config.algo in OFFLINE_ALGOS:
            raise RunError(f"{run_dir} is an offline run: train it again, into a new --run-dir")
        if steps is not None:
            config.train.steps = steps
        if device is not None:
            config.train.device = device
        return cls(config, run_dir, hooks, resume=True, progress=progress)

    def _build(self, resume: bool) -> None:
        cfg = self.config
        self.source.open(self.writer)
        self.replay = self.source.replay
        self.action_dim = self.source.action_dim
        self.world_model = WorldModel(cfg.model, self.action_dim, cfg.env.image_size).to(
            self.device
        )
        self.agent = self.factories.agent(cfg, self.world_model, self.action_dim).to(self.device)
        self.resumed = resume and self._restore()

    # --- the loop ---------------------------------------------------------------------------

    def train(self) -> str:
        """Train until `train.steps` env steps or a hook asks to stop. Returns the final status."""
        start = time.time()
        status = "finished"
        previous_handler = stop_on_sigterm()
        try:
            self.bus.emit(TrainStart(self.step, engine=self, resumed=self.resumed))
            self._start_schedules()
            self._loop()
            if self.bus.stop_requested:
                status = "stopped"
            else:
                self._last_snapshot()
        except KeyboardInterrupt:
            status = "stopped"
        except BaseException as error:
            status = "crashed"
            self.bus.emit(ExceptionEvent(self.step, error=error))
            raise
        finally:
            with contextlib.suppress(ValueError):  # not the main thread: nothing was changed
                signal.signal(signal.SIGTERM, previous_handler)
            with contextlib.suppress(Exception):
                self._finish(status)
                self.bus.emit(TrainEnd(self.step, status=status, wall_time=time.time() - start))
            self.close(status)
        return status

    # --- the schedules: checkpoints and evaluations on env steps, snapshots on updates ---------

    def _start_schedules(self) -> None:
        train = self.config.train
        self.checkpoint_due = Every(train.checkpoint_every, self.step)
        self.evaluation_due = Every(train.eval_every, self.step)
        self.last_evaluation: int | None = None

    def _run_schedules(self) -> None:
        """After an env step: a checkpoint, then evaluation episodes, when due."""
        if self.checkpoint_due(self.step):
            self.save_checkpoint()
        if self.evaluation_due(self.step):
            self.evaluate()

    def _finish(self, status: str) -> None:
        """As training ends: a last checkpoint (unless it crashed) and, when it finished, a last
        evaluation (unless one ran at this very step)."""
        if status != "crashed":
            self.save_checkpoint()
        if status == "finished" and self.last_evaluation != self.step:
            self.evaluate()

    def _loop(self) -> None:
        """Take steps from the source and train at the configured replay ratio: update k
        follows the step that brings the count to `prefill + k * train_every` (offline, where a
        step is an update, each step). Hooks hear every step's events in order, whether the
        source collects serially or in a thread (`train.overlap`, see `collector.py`)."""
        self.source.start(self)
        try:
            while self.step < self.config.train.steps and not self.bus.stop_requested:
                self._publish(self.source.next())
                while self.counters["update"] < updates_due(self.step, self.config):
                    self._train_once()
                    self.source.updated(self.counters["update"])
        finally:
            self.source.stop()

    def _publish(self, events: list) -> None:
        """Count and emit one collected step's events, in order; after the step itself, what
        its count makes due."""
        for event in events:
            if isinstance(event, EpisodeEnd):
                self.counters["episode"] = event.episode
                self.counters["cumulative_cost"] = event.cumulative_cost
                self.agent.episode_end(event.cost)
            else:
                self.counters["step"] = event.step
            self.bus.emit(event)
            if isinstance(event, EnvStep):
                self._run_schedules()

    def _train_once(self) -> None:
        """One update on the source's batch: the world model on its sequences (if it has any),
        then the agent."""
        update = self._count_update()
        batch = self.source.batch(update)
        posterior = None
        if batch.sequences is not None:
            posterior = self._train_world_model(batch.sequences)
        result = self.agent.learn(batch, posterior)
        if result.imagination is not None:
            self.bus.emit(
                ImaginationEvent(self.step, update=update, imagination=result.imagination)
            )
        self.bus.emit(AgentUpdate(self.step, update=update, metrics=result.metrics))

    def _train_world_model(self, batch: dict[str, torch.Tensor]) -> Any:
        """One world-model update on `batch`, published, then a snapshot if one is due; the
        batch's posterior latents."""
        cfg = self.config.train
        with autocast(self.device, cfg.precision):
            metrics, posterior = self.world_model.train_step(batch)
        update = self.counters["update"]
        self.bus.emit(
            WorldModelUpdate(
                self.step, update=update, metrics=metrics, batch=batch, posterior=posterior
            )
        )
        if self.snapshotter is not None and update % cfg.snapshot_every == 0:
            self.snapshot(self.snapshotter.take(batch, posterior))
        return posterior

    def _count_update(self) -> int:
        self.counters["update"] += 1
        return self.counters["update"]

    def _last_snapshot(self) -> None:
        """The source's snapshot as training finishes (offline: the agent's latent codes)."""
        if self.snapshotter is not None:
            arrays = self.source.last_snapshot(self.snapshotter)
            if arrays is not None:
                self.snapshot(arrays)

    # --- evaluation, checkpoints -------------------------------------------------------------

    @property
    def step(self) -> int:
        return self.counters["step"]

    def evaluate(self) -> list[dict[str, float]]:
        """Play `eval_episodes` episodes with the deterministic policy; save them with frames."""
        cfg = self.config
        played = play_episodes(
            cfg.env,
            self.world_model,
            self.agent,
            episodes=cfg.train.eval_episodes,
            seed=cfg.train.seed + EVAL_SEED_OFFSET,
            explore=False,
            make=self.factories.eval_env,
        )
        paths = [str(self.writer.save_eval(self.step, i, e)) for i, e in enumerate(played)]
        summaries = [episode_summary(episode) for episode in played]
        health = world_model_health(played)
        self.last_evaluation = self.step
        self.bus.emit(Evaluation(self.step, episodes=summaries, paths=paths, health=health))
        return summaries

    def snapshot(self, arrays: dict[str, np.ndarray]) -> Path:
        """Save a snapshot's arrays (`Snapshotter.take`) and emit `Snapshot`."""
        update = self.counters["update"]
        arrays.update(step=np.array(self.step, np.int64), update=np.array(update, np.int64))
        path = self.writer.save_snapshot(update, arrays)
        self.bus.emit(Snapshot(self.step, update=update, path=str(path)))
        return path

    def save_checkpoint(self) -> Path:
        """Save the state to resume from, with the collector thread (if any) between steps."""
        with self.source.paused():
            return self._save_checkpoint()

    def _save_checkpoint(self) -> Path:
        state = {
            "config": self.config.to_dict(),
            "counters": dict(self.counters),
            "action_dim": self.action_dim,
            "world_model": self.world_model.state_dict(),
            "agent": self.agent.state_dict(),
            "optimizers": {
                "world_model": self.world_model.optimizer.state_dict(),
                **{name: opt.state_dict() for name, opt in self.agent.optimizers().items()},
            },
            "rng": {
                "torch": torch.get_rng_state(),
                "engine": self.rng.bit_generator.state,
                "replay": self.replay.rng.bit_generator.state,
            },
        }
        path = checkpoint.save(self.run_dir, self.step, state, self.config.train.keep_checkpoints)
        self.bus.emit(Checkpoint(self.step, path=str(path)))
        return path

    def _restore(self) -> bool:
        """Load the newest readable checkpoint and the saved episodes. Without one, or when the
        run has nothing left to train, raise: restarting from step 0 would overwrite it."""
        try:
            state = checkpoint.load_latest(self.run_dir, self.device)
            checkpoint.check_resumable(state)
        except checkpoint.CheckpointError as error:
            raise checkpoint.CheckpointError(
                f"cannot resume {self.run_dir}: {error}. Nothing in it was changed; to start "
                "afresh, train into another --run-dir"
            ) from None
        if state["step"] >= self.config.train.steps:
            raise RunError(
                f"--resume {self.run_dir}: its checkpoint is at step {state['step']}, which "
                f"train.steps={self.config.train.steps} already reaches; give --steps N above "
                f"{state['step']} to train further"
            )
        self.world_model.load_state_dict(state["world_model"])
        self.agent.load_state_dict(state["agent"])
        self.world_model.optimizer.load_state_dict(state["optimizers"]["world_model"])
        for name, optimizer in self.agent.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.counters.update(state["counters"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.rng.bit_generator.state = state["rng"]["engine"]
        self.replay.rng.bit_generator.state = state["rng"]["replay"]
        self.replay.load()
        # Episodes saved after the checkpoint are kept (they are data), and counted.
        self.counters["episode"] = max(self.counters["episode"], self.replay.num_episodes)
        return True

    def close(self, status: str) -> None:
        self.source.close()
        self.writer.close(status)

    def _abandon(self) -> None:
        """Undo a start that failed: close what was built, leave the run directory as it was."""
        with contextlib.suppress(Exception):
            self.source.close()
        self.writer.abandon()


def stop_on_sigterm():
    """Turn SIGTERM (e.g. the dashboard's stop button) into a clean stop with a checkpoint."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a notebook running the engine in a thread)
        return signal.getsignal(signal.SIGTERM)
