"""Lifecycle events with typed payloads, the bus that delivers them, and the built-in hooks.

A hook is any object with some of the `on_<event>` methods below (subclass `Hook` for the
full set). Hooks run in the order given; any hook that returns False from a handler asks the
engine to stop, and the engine stops cleanly after the current step (saving a checkpoint).

    class PrintCost(Hook):
        def on_episode_end(self, event: EpisodeEnd):
            print(event.cost)
"""

from __future__ import annotations

import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from workbench.runs import DivergenceError, Run

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from workbench.agents.base import AgentLike
    from workbench.config import Config
    from workbench.runs import RunWriter
    from workbench.world_model import Imagination, Latent, WorldModel


class Trainer(Protocol):
    """What a hook (`TrainStart.engine`) or a data source may read of the engine that trains:
    its config, counters, random generator, run writer, device and models. Hooks observe; the
    engine acts."""

    config: Config
    counters: dict[str, Any]
    rng: np.random.Generator
    writer: RunWriter
    device: torch.device
    world_model: WorldModel
    agent: AgentLike


@dataclass
class Event:
    step: int
    """Environment steps (agent steps, summed over envs) so far."""
    handler: ClassVar[str] = ""
    """Name of the hook method that receives this event, e.g. `on_episode_end`."""


@dataclass
class TrainStart(Event):
    handler: ClassVar[str] = "on_train_start"
    engine: Trainer
    resumed: bool


@dataclass
class EnvStep(Event):
    handler: ClassVar[str] = "on_env_step"
    reward: np.ndarray
    """Rewards of this step, one per env."""
    cost: np.ndarray
    """Costs of this step, one per env."""


@dataclass
class EpisodeEnd(Event):
    handler: ClassVar[str] = "on_episode_end"
    episode: int
    env_index: int
    ret: float
    cost: float
    length: int
    cumulative_cost: float
    """Cost of every training episode so far, this one included (counted by the engine)."""


@dataclass
class WorldModelUpdate(Event):
    handler: ClassVar[str] = "on_world_model_update"
    update: int
    metrics: dict[str, float]
    batch: dict[str, Tensor]
    """The training batch (obs, action, reward, cost, is_first, is_terminal), [B, T, ...]."""
    posterior: Latent
    """The world model's posterior latents of the batch, [B, T] (detached)."""


@dataclass
class ImaginationEvent(Event):
    handler: ClassVar[str] = "on_imagination_event"
    update: int
    imagination: Imagination


@dataclass
class AgentUpdate(Event):
    handler: ClassVar[str] = "on_agent_update"
    update: int
    metrics: dict[str, float]


@dataclass
class Evaluation(Event):
    handler: ClassVar[str] = "on_evaluation"
    episodes: list[dict[str, float]]
    paths: list[str]
    health: dict[str, Any] = field(default_factory=dict)
    """The world model's health on these episodes (`evaluation.world_model_health`)."""


@dataclass
class Checkpoint(Event):
    handler: ClassVar[str] = "on_checkpoint"
    path: str


@dataclass
class Snapshot(Event):
    handler: ClassVar[str] = "on_snapshot"
    update: int
    path: str


@dataclass
class ExceptionEvent(Event):
    handler: ClassVar[str] = "on_exception_event"
    error: BaseException


@dataclass
class TrainEnd(Event):
    handler: ClassVar[str] = "on_train_end"
    status: str
    """finished, stopped (a hook returned False) or crashed."""
    wall_time: float


class Hook:
    """Base class with a no-op handler per event (its `handler`); override the ones you need.
    Any handler may return False to ask the engine to stop."""

    def on_train_start(self, event: TrainStart) -> bool | None:
        """Training starts (or resumes) at `event.step`; `event.engine` is what a hook may use."""

    def on_env_step(self, event: EnvStep) -> bool | None:
        """Every env took one step: its reward and cost."""

    def on_episode_end(self, event: EpisodeEnd) -> bool | None:
        """A training episode ended: its return, cost, length and the cumulative cost so far."""

    def on_world_model_update(self, event: WorldModelUpdate) -> bool | None:
        """The world model took a gradient step: its losses, batch and posterior latents."""

    def on_imagination_event(self, event: ImaginationEvent) -> bool | None:
        """The agent imagined rollouts from the posterior latents, for its update."""

    def on_agent_update(self, event: AgentUpdate) -> bool | None:
        """The agent took a gradient step: its losses and its own metrics."""

    def on_evaluation(self, event: Evaluation) -> bool | None:
        """Evaluation episodes were played and saved: their summaries, files and health."""

    def on_checkpoint(self, event: Checkpoint) -> bool | None:
        """A checkpoint was written to `event.path`."""

    def on_snapshot(self, event: Snapshot) -> bool | None:
        """A snapshot (latents, imagined rollouts) was written to `event.path`."""

    def on_exception_event(self, event: ExceptionEvent) -> bool | None:
        """Training raised `event.error`; it ends as crashed."""

    def on_train_end(self, event: TrainEnd) -> bool | None:
        """Training ended: finished, stopped or crashed, after `event.wall_time` seconds."""


class HookBus:
    """Delivers each event to every hook that handles it; remembers whether one asked to stop.
    Hooks only observe: one emitting an event while it handles another is an error."""

    def __init__(self, hooks: list[Any] | None = None):
        self.hooks = list(hooks or [])
        self.stop_requested = False
        self.delivering: Event | None = None

    def emit(self, event: Event) -> bool:
        """Deliver `event`; False when some hook (now or earlier) asked to stop."""
        if self.delivering is not None:
            raise RuntimeError(
                f"{type(event).__name__} emitted while hooks handle "
                f"{type(self.delivering).__name__}: hooks observe, only the engine emits"
            )
        self.delivering = event
        try:
            for hook in self.hooks:
                handler = getattr(hook, event.handler, None)
                if handler is not None and handler(event) is False:
                    self.stop_requested = True
        finally:
            self.delivering = None
        return not self.stop_requested


# ---------------------------------------------------------------------------------------------
# Built-in hooks.


class MetricsWriter(Hook):
    """Appends metrics to the run directory: each episode, and training metrics averaged over
    `log_every` updates (so the file stays small and every line is a complete record).

    Each training session starts with a `start` record at the step it starts from. A resumed run
    replays from its checkpoint, so records at or after a `start`'s step that came before that
    `start` are superseded (the interrupted process logged them past its last checkpoint;
    `Run.metrics` drops them)."""

    def __init__(self, log_every: int):
        self.log_every = log_every
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.last_time = time.time()

    def on_train_start(self, event: TrainStart) -> None:
        self.writer = event.engine.writer
        self.last_step = event.step
        self.writer.log("start", event.step, {"resumed": event.resumed})

    def on_episode_end(self, event: EpisodeEnd) -> None:
        values = {"return": event.ret, "cost": event.cost, "length": event.length}
        values.update(episode=event.episode, cumulative_cost=event.cumulative_cost)
        self.writer.log("episode", event.step, values)

    def on_world_model_update(self, event: WorldModelUpdate) -> None:
        self._accumulate(event.metrics)

    def on_agent_update(self, event: AgentUpdate) -> None:
        self._accumulate(event.metrics)
        if event.update % self.log_every == 0:
            now = time.time()
            averages = {key: self.sums[key] / self.counts[key] for key in self.sums}
            averages["update"] = event.update
            averages["fps"] = (event.step - self.last_step) / max(now - self.last_time, 1e-9)
            self.writer.log("train", event.step, averages)
            self.sums.clear()
            self.counts.clear()
            self.last_time, self.last_step = now, event.step

    def _accumulate(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if value is not None and np.isfinite(value):
                self.sums[key] += float(value)
                self.counts[key] += 1

    def on_evaluation(self, event: Evaluation) -> None:
        keys = event.episodes[0].keys() if event.episodes else []
        means = {key: float(np.mean([e[key] for e in event.episodes])) for key in keys}
        health = {f"health/{k}": v for k, v in event.health.items() if isinstance(v, float)}
        self.writer.log("eval", event.step, means | health)


class ProgressBar(Hook):
    """A tqdm bar over steps (env steps; offline, updates), showing the latest episode return
    and cost, and the world model's reconstruction loss or the agent's actor loss."""

    def on_train_start(self, event: TrainStart) -> None:
        from tqdm.auto import tqdm

        total = event.engine.config.train.steps
        self.bar = tqdm(total=total, initial=event.step, unit="step", dynamic_ncols=True)
        self.bar.set_description(event.engine.config.algo)
        self.last = event.step
        self.postfix: dict[str, str] = {}

    def _advance(self, step: int) -> None:
        self.bar.update(step - self.last)
        self.last = step

    def on_episode_end(self, event: EpisodeEnd) -> None:
        self.postfix.update(ret=f"{event.ret:.1f}", cost=f"{event.cost:.0f}")
        self.bar.set_postfix(self.postfix, refresh=False)
        self._advance(event.step)

    def on_world_model_update(self, event: WorldModelUpdate) -> None:
        self.postfix["recon"] = f"{event.metrics.get('wm/recon', float('nan')):.0f}"
        self._advance(event.step)

    def on_agent_update(self, event: AgentUpdate) -> None:
        if "agent/actor_loss" in event.metrics:
            self.postfix["actor_loss"] = f"{event.metrics['agent/actor_loss']:.3g}"
            self.bar.set_postfix(self.postfix, refresh=False)
        self._advance(event.step)

    def on_train_end(self, event: TrainEnd) -> None:
        self._advance(event.step)
        self.bar.close()


class DivergenceGuard(Hook):
    """Stops training at a non-finite loss, gradient or parameter, naming it and the step: the
    run keeps its last good checkpoint (none is saved after a crash) instead of training on
    NaNs. With `train.skip_bad_updates` N, the first N updates with a non-finite loss or
    gradient are skipped with a warning instead (their non-finite gradients were never applied:
    `world_model.py`, `agents/base.py`). Costs one reduction over the weights per update."""

    def on_train_start(self, event: TrainStart) -> None:
        self.engine = event.engine
        self.allowed = event.engine.config.train.skip_bad_updates
        self.skipped: set[int] = set()  # update numbers

    def on_world_model_update(self, event: WorldModelUpdate) -> None:
        self._check_metrics(event.metrics, event.step, event.update)

    def on_agent_update(self, event: AgentUpdate) -> None:
        self._check_metrics(event.metrics, event.step, event.update)
        for part in ("world_model", "agent"):
            name = _non_finite_parameter(getattr(self.engine, part))
            if name is not None:
                self._stop(f"parameter {part}.{name}", "not finite", event.step, event.update)

    def _check_metrics(self, metrics: dict[str, float], step: int, update: int) -> None:
        for key, value in metrics.items():
            watched = "loss" in key or "grad_norm" in key
            if watched and value is not None and not np.isfinite(float(value)):
                self._bad_update(key, f"became {float(value)}", step, update)
                return

    def _bad_update(self, what: str, how: str, step: int, update: int) -> None:
        self.skipped.add(update)
        if len(self.skipped) > self.allowed:
            self._stop(what, how, step, update)
        warnings.warn(
            f"{what} {how} at step {step} (update {update}): update skipped, "
            f"{len(self.skipped)} of train.skip_bad_updates={self.allowed}",
            stacklevel=2,
        )

    def _stop(self, what: str, how: str, step: int, update: int) -> None:
        skipped = f" after {self.allowed} skipped updates" if self.allowed else ""
        raise DivergenceError(
            f"{what} {how} at step {step} (update {update}){skipped}: training stopped; "
            f"{_last_checkpoint(self.engine)}. Try a lower learning rate (--set model.lr=...), "
            "another --seed or --set train.skip_bad_updates=N, in a new --run-dir"
        )


def _non_finite_parameter(module: torch.nn.Module) -> str | None:
    """The name of the first non-finite parameter of `module`, or None (one sync when all are
    finite)."""
    import torch

    parameters = [p.detach() for p in module.parameters()]
    if not parameters or torch.isfinite(torch.stack([p.float().sum() for p in parameters]).sum()):
        return None
    for name, parameter in module.named_parameters():
        if not torch.isfinite(parameter.detach()).all():
            return name
    return None


def _last_checkpoint(engine: Trainer) -> str:
    found = Run(engine.writer.path).checkpoints()
    return f"its last checkpoint is {found[-1].path}" if found else "no checkpoint was saved yet"


class StopFile(Hook):
    """Stops training cleanly when the run's STOP file appears (`Run.request_stop`, from any
    host sharing the run directory); looks at most every `every` seconds."""

    every = 2.0

    def on_train_start(self, event: TrainStart) -> None:
        self.writer = event.engine.writer
        self.last = 0.0

    def on_env_step(self, event: EnvStep) -> bool:
        if time.time() - self.last < self.every:
            return True
        self.last = time.time()
        return not self.writer.stop_requested()


@dataclass
class StopAfter(Hook):
    """Stops training after `updates` agent updates (an example of a hook returning False)."""

    updates: int
    seen: list[int] = field(default_factory=list)

    def on_agent_update(self, event: AgentUpdate) -> bool:
        self.seen.append(event.update)
        return event.update < self.updates
