"""Collection: act in the envs, step them, store the steps; serially or in a thread of its own.

`Collector.collect()` does one env step of every env (act with the posterior, step, store the
transition in the replay, save episodes that ended) and returns what happened as events
(an `EpisodeEnd` per finished episode, then `EnvStep`) for the engine to publish. It never
emits them itself: hooks are called from the engine's thread only, in the order of collection.

`CollectorThread` runs `collect()` in a background thread (DreamerV3's driver beside its
learner): MuJoCo and torch release the GIL, so stepping, rendering and acting use one core
while the learner trains on the other. It acts with its own copy of the world model and agent,
refreshed after each update (`sync`), so an update never changes weights under a running action.
Its pace is tied to the learner's: it collects the step that makes `steps` env steps only while
the learner has done at least `updates_due(steps) - 1` updates, so it is at most one update's
worth of steps ahead, and the replay ratio stays the configured one, whatever the machine's speed.

`EnvSource` is the engine's data source for online runs (`engine.Source`): the envs, the replay
they fill, and a collector (in a thread with `train.overlap`); `offline.DatasetSource` is the
other one.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from workbench.agents.base import Batch
from workbench.config import Config, EnvConfig
from workbench.device import autocast, single_threaded
from workbench.hooks import EnvStep, EpisodeEnd, Event, Trainer
from workbench.replay import Replay
from workbench.runs import RunWriter
from workbench.snapshots import Snapshotter


@dataclass
class EpisodeTracker:
    """Running return, cost and length of each env's current episode."""

    num_envs: int
    ret: np.ndarray = field(init=False)
    cost: np.ndarray = field(init=False)
    length: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.ret, self.cost = np.zeros(self.num_envs), np.zeros(self.num_envs)
        self.length = np.zeros(self.num_envs, dtype=int)

    def add(self, reward: np.ndarray, cost: np.ndarray) -> None:
        self.ret += reward
        self.cost += cost
        self.length += 1

    def pop(self, index: int) -> tuple[float, float, int]:
        result = (float(self.ret[index]), float(self.cost[index]), int(self.length[index]))
        self.ret[index] = self.cost[index] = self.length[index] = 0
        return result


def updates_due(step: int, config: Config) -> int:
    """Updates that must have happened once `step` env steps are collected: one every
    `train_every` steps after the prefill."""
    return max(0, (step - config.train.prefill) // config.train.train_every)


class Collector:
    """The envs, the replay they fill, and the acting state (latent, last action) between steps."""

    def __init__(
        self,
        config: Config,
        envs,
        replay: Replay,
        agent,
        rng: np.random.Generator,
        counters: dict[str, Any],
    ) -> None:
        self.config, self.envs, self.replay, self.agent, self.rng = config, envs, replay, agent, rng
        self.step = counters["step"]
        self.episode = counters["episode"]
        self.cumulative_cost = counters["cumulative_cost"]
        self.lock = threading.Lock()
        """Held while the replay changes (collecting, sampling) and while weights are synced."""
        self.tracker = EpisodeTracker(envs.num_envs)
        self.device = agent.world_model.device
        self.action_dim = envs.action_dim
        self.obs = envs.reset_all(seed=config.train.seed + 1000 * self.episode)
        for index in range(envs.num_envs):
            self._add_first(index, self.obs[index])
        self.is_first = torch.ones(envs.num_envs, dtype=torch.bool, device=self.device)
        self.action = torch.zeros(envs.num_envs, self.action_dim, device=self.device)
        self.latent = agent.world_model.initial(envs.num_envs)

    def collect(self) -> list[Event]:
        """One step of every env; the events it makes: an EpisodeEnd per finished episode (at
        the step count before this step), then the EnvStep."""
        # 1. Act: update the posterior with the newest frame, then ask the agent (or sample
        #    random actions while the replay is being prefilled).
        with torch.no_grad(), single_threaded():
            frames = torch.as_tensor(self.obs, device=self.device)
            self.latent = self.agent.world_model.observe_step(
                self.latent, self.action, frames, self.is_first
            )
            self.action = self._choose_action()
        # 2. Step every env; store the transition; finish episodes that ended.
        result = self.envs.step(self._to_env_action(self.action))
        self.tracker.add(result.reward, result.cost)
        self.obs = result.obs.copy()
        self.is_first[:] = False
        ends: list[Event] = []
        with self.lock:
            for index in range(self.envs.num_envs):
                self.replay.add(index, self._record(result, index))
                if result.terminated[index] or result.truncated[index]:
                    ends.append(self._end_episode(index))
        self.action = torch.where(
            self.is_first[:, None], torch.zeros_like(self.action), self.action
        )
        self.step += self.envs.num_envs
        return [*ends, EnvStep(self.step, reward=result.reward, cost=result.cost)]

    def _choose_action(self) -> torch.Tensor:
        if self.step < self.config.train.prefill:
            shape = (self.envs.num_envs, self.action_dim)
            return torch.as_tensor(
                self.rng.uniform(-1, 1, shape), dtype=torch.float32, device=self.device
            )
        with autocast(self.device, self.config.train.precision):
            return self.agent.act(self.latent, explore=True).float()

    def _to_env_action(self, action: torch.Tensor) -> np.ndarray:
        """Map actions in [-1, 1] to the env's bounds."""
        low, high = self.envs.action_low, self.envs.action_high
        return low + (action.cpu().numpy() + 1) / 2 * (high - low)

    def _record(self, result, index: int) -> dict[str, np.ndarray | np.generic]:
        return {
            "obs": result.obs[index],
            "action": self.action[index].cpu().numpy(),
            "reward": np.float32(result.reward[index]),
            "cost": np.float32(result.cost[index]),
            "is_first": np.bool_(False),
            "is_terminal": np.bool_(result.terminated[index]),
            "hazard_distance": np.float32(result.hazard_distance[index]),
        }

    def _add_first(self, index: int, frame: np.ndarray) -> None:
        self.replay.add(index, {
            "obs": frame,
            "action": np.zeros(self.action_dim, np.float32),
            "reward": np.float32(0),
            "cost": np.float32(0),
            "is_first": np.bool_(True),
            "is_terminal": np.bool_(False),
            "hazard_distance": np.float32(np.nan),  # not asked of the env at reset
        })  # fmt: skip

    def _end_episode(self, index: int) -> EpisodeEnd:
        """Save env `index`'s episode and reset the env; the event that says so."""
        self.replay.finish_episode(index)
        ret, cost, length = self.tracker.pop(index)
        self.episode += 1
        self.cumulative_cost += cost
        self.obs[index] = self.envs.reset(index)
        self._add_first(index, self.obs[index])
        self.is_first[index] = True
        return EpisodeEnd(
            self.step,
            episode=self.episode,
            env_index=index,
            ret=ret,
            cost=cost,
            length=length,
            cumulative_cost=self.cumulative_cost,
        )

    def sample(self, batch_size: int, length: int) -> dict[str, np.ndarray]:
        """A training batch from the replay (under the lock: the replay may be growing)."""
        with self.lock:
            return self.replay.sample(batch_size, length)


class CollectorThread:
    """`collector.collect()` in a background thread, at most one update's worth ahead of the
    learner; its events wait in a queue for the engine's thread (`next_events`)."""

    def __init__(self, collector: Collector, learner_agent, config: Config, updates: int) -> None:
        self.collector, self.config, self.learner_agent = collector, config, learner_agent
        collector.agent = copy.deepcopy(learner_agent)  # its world model comes along
        self.updates = updates
        self.changed = threading.Condition()
        self.events: queue.Queue[list[Event] | BaseException] = queue.Queue()
        self.stopping = False
        self.stepping = threading.Lock()
        """Held for each whole step collected (see `paused`)."""
        self.thread = threading.Thread(target=self._run, name="collector", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping and self.collector.step < self.config.train.steps:
                with self.changed:
                    self.changed.wait_for(self._may_collect)
                if self.stopping:
                    return
                with self.stepping:
                    events = self.collector.collect()
                self.events.put(events)
        except BaseException as error:  # handed to the engine's thread, which raises it
            self.events.put(error)

    def _may_collect(self) -> bool:
        """Collecting the next step keeps us at most one update ahead of the learner."""
        next_step = self.collector.step + self.collector.envs.num_envs
        return self.stopping or self.updates >= updates_due(next_step, self.config) - 1

    def paused(self) -> threading.Lock:
        """A context in which the thread is between steps (for a checkpoint of a quiet state)."""
        return self.stepping

    def next_events(self) -> list[Event]:
        """The events of the next collected step, in order (raises what the thread raised)."""
        item = self.events.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def updated(self, updates: int) -> None:
        """The learner finished update `updates`: copy its weights for acting, let it go on."""
        with self.collector.lock:
            copy_weights(self.learner_agent.world_model, self.collector.agent.world_model)
            copy_weights(self.learner_agent, self.collector.agent)
        with self.changed:
            self.updates = updates
            self.changed.notify_all()

    def stop(self) -> None:
        """Stop after the step in progress and wait for the thread."""
        with self.changed:
            self.stopping = True
            self.changed.notify_all()
        self.thread.join()


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy every parameter and buffer of `source` into `target` (the same architecture)."""
    targets = target.state_dict()
    with torch.no_grad():
        for name, value in source.state_dict().items():
            targets[name].copy_(value)


class EnvSource:
    """Online data: the agent acts in `config.env.num_envs` envs (from `make_envs`), whose steps
    fill the replay; each update learns from a batch of sequences sampled from it."""

    def __init__(self, config: Config, make_envs: Callable[[EnvConfig], Any]) -> None:
        self.config = config
        self.envs = make_envs(config.env)
        self.action_dim: int = self.envs.action_dim
        self.background: CollectorThread | None = None

    def open(self, writer: RunWriter) -> None:
        """The replay, saving each finished episode into the run directory."""
        train = self.config.train
        self.replay = Replay(writer, self.config.env.num_envs, train.seed, train.replay_capacity)

    def start(self, trainer: Trainer) -> None:
        """Reset the envs and start collecting (in a thread with `train.overlap`, torch keeping
        one thread each: two processes of work on two cores fight over a bigger pool)."""
        self.device = trainer.device
        self.collector = Collector(
            self.config, self.envs, self.replay, trainer.agent, trainer.rng, trainer.counters
        )
        if self.config.train.overlap:
            self.threads = torch.get_num_threads()
            torch.set_num_threads(1)
            self.background = CollectorThread(
                self.collector, trainer.agent, self.config, trainer.counters["update"]
            )
            self.background.start()

    def next(self) -> list[Event]:
        """One env step of every env: its events (episode ends, then the EnvStep)."""
        if self.background is not None:
            return self.background.next_events()
        return self.collector.collect()

    def batch(self, update: int) -> Batch:
        """`batch_size` sequences of `batch_length` steps from the replay."""
        train = self.config.train
        arrays = self.collector.sample(train.batch_size, train.batch_length)
        return Batch(
            sequences={k: torch.as_tensor(v, device=self.device) for k, v in arrays.items()}
        )

    def updated(self, update: int) -> None:
        """The learner finished update `update` (the collecting thread acts with it now)."""
        if self.background is not None:
            self.background.updated(update)

    def paused(self) -> contextlib.AbstractContextManager:
        """A context in which no env is being stepped (for a checkpoint of a quiet state)."""
        return self.background.paused() if self.background else contextlib.nullcontext()

    def last_snapshot(self, snapshotter: Snapshotter) -> None:
        """Online runs take their snapshots as they go."""

    def stop(self) -> None:
        """Stop collecting (after the step in progress)."""
        if self.background is not None:
            self.background.stop()
            self.background = None
            torch.set_num_threads(self.threads)

    def close(self) -> None:
        self.envs.close()
