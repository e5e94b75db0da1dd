"""The training loop: collect, train the world model, imagine, update the agent; emit events.

    engine = Engine(config, "runs/demo")          # or Engine.resume("runs/demo")
    engine.train()

Every stage publishes a typed event (see `hooks.py`); the run directory, checkpoints, progress,
evaluation, snapshots and live widgets are all hooks. One env step here is one agent step
(`env.action_repeat` physics steps), counted over all parallel envs.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench import checkpoint
from workbench.agents import make_agent
from workbench.config import Config
from workbench.device import autocast, resolve_device, single_threaded
from workbench.envs import make_env, make_vector_env
from workbench.evaluation import episode_summary, play_episode, world_model_health
from workbench.hooks import (
    AgentUpdate,
    Checkpoint,
    Checkpointer,
    EnvStep,
    EpisodeEnd,
    Evaluation,
    Evaluator,
    ExceptionEvent,
    HookBus,
    ImaginationEvent,
    MetricsWriter,
    ProgressBar,
    StopFile,
    TrainEnd,
    TrainStart,
    WorldModelUpdate,
)
from workbench.replay import Replay
from workbench.runs import CONFIG_FILE, RunError, RunWriter, read_json
from workbench.world_model import WorldModel


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


class Engine:
    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        hooks: list[Any] | None = None,
        *,
        resume: bool = False,
        progress: bool = True,
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = resolve_device(config.train.device)
        self.writer = RunWriter(self.run_dir, config=config.to_dict(), resume=resume)
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
        except BaseException as error:
            self.writer.close("stopped" if isinstance(error, KeyboardInterrupt) else "crashed")
            raise
        built_in = [MetricsWriter(config.train.log_every), Checkpointer(), Evaluator(), StopFile()]
        if config.train.snapshot_every > 0:
            from workbench.snapshots import SnapshotHook

            built_in.append(SnapshotHook(config.train.snapshot_every))
        self.bus = HookBus(built_in + ([ProgressBar()] if progress else []) + list(hooks or []))

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        hooks: list[Any] | None = None,
        *,
        steps: int | None = None,
        progress: bool = True,
    ) -> Engine:
        """Continue a run from its newest checkpoint and its saved episodes (`steps` extends it)."""
        data = read_json(Path(run_dir) / CONFIG_FILE)
        if not data:
            raise RunError(f"cannot resume {run_dir}: it holds no run (no {CONFIG_FILE})")
        config = Config.from_dict(data)
        if steps is not None:
            config.train.steps = steps
        return cls(config, run_dir, hooks, resume=True, progress=progress)

    def _build(self, resume: bool) -> None:
        cfg = self.config
        env_kwargs = dict(
            image_size=cfg.env.image_size,
            action_repeat=cfg.env.action_repeat,
            render=cfg.env.render,
            time_limit=cfg.env.time_limit,
        )
        self.envs = make_vector_env(cfg.env.task, cfg.env.num_envs, **env_kwargs)
        self.env_kwargs = env_kwargs
        self.action_dim = self.envs.action_dim
        self.world_model = WorldModel(cfg.model, self.action_dim, cfg.env.image_size).to(
            self.device
        )
        self.agent = make_agent(cfg, self.world_model, self.action_dim).to(self.device)
        self.replay = Replay(
            self.writer, cfg.env.num_envs, cfg.train.seed, cfg.train.replay_capacity
        )
        self.resumed = resume and self._restore()

    # --- the loop ---------------------------------------------------------------------------

    def train(self) -> str:
        """Train until `train.steps` env steps or a hook asks to stop. Returns the final status."""
        start = time.time()
        status = "finished"
        previous_handler = stop_on_sigterm()
        try:
            self.bus.emit(TrainStart(self.step, engine=self, resumed=self.resumed))
            self._collect_and_train()
            if self.bus.stop_requested:
                status = "stopped"
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
                self.bus.emit(TrainEnd(self.step, status=status, wall_time=time.time() - start))
            self.close(status)
        return status

    def _collect_and_train(self) -> None:
        cfg = self.config.train
        envs = self.envs
        tracker = EpisodeTracker(envs.num_envs)
        obs = envs.reset_all(seed=cfg.seed + 1000 * self.counters["episode"])
        for index in range(envs.num_envs):
            self._add_first(index, obs[index])
        is_first = torch.ones(envs.num_envs, dtype=torch.bool, device=self.device)
        action = torch.zeros(envs.num_envs, self.action_dim, device=self.device)
        latent = self.world_model.initial(envs.num_envs)

        while self.step < cfg.steps and not self.bus.stop_requested:
            # 1. Act: update the posterior with the newest frame, then ask the agent (or sample
            #    random actions while the replay is being prefilled).
            with torch.no_grad(), single_threaded():
                frames = torch.as_tensor(obs, device=self.device)
                latent = self.world_model.observe_step(latent, action, frames, is_first)
                action = self._choose_action(latent)
            # 2. Step every env; store the transition; finish episodes that ended.
            result = envs.step(self._to_env_action(action))
            tracker.add(result.reward, result.cost)
            obs = result.obs.copy()
            is_first[:] = False
            for index in range(envs.num_envs):
                self.replay.add(index, self._record(result, index, action))
                if result.terminated[index] or result.truncated[index]:
                    self._end_episode(index, tracker)
                    obs[index] = envs.reset(index)
                    self._add_first(index, obs[index])
                    is_first[index] = True
            action = torch.where(is_first[:, None], torch.zeros_like(action), action)
            self.counters["step"] += envs.num_envs
            self.bus.emit(EnvStep(self.step, reward=result.reward, cost=result.cost))
            # 3. Train: one update every `train_every` env steps after the prefill.
            while self.counters["update"] < (self.step - cfg.prefill) // cfg.train_every:
                self._train_once()

    def _choose_action(self, latent) -> torch.Tensor:
        if self.step < self.config.train.prefill:
            shape = (self.envs.num_envs, self.action_dim)
            return torch.as_tensor(
                self.rng.uniform(-1, 1, shape), dtype=torch.float32, device=self.device
            )
        with autocast(self.device, self.config.train.precision):
            return self.agent.act(latent, explore=True).float()

    def _to_env_action(self, action: torch.Tensor) -> np.ndarray:
        """Map actions in [-1, 1] to the env's bounds."""
        low, high = self.envs.action_low, self.envs.action_high
        return low + (action.cpu().numpy() + 1) / 2 * (high - low)

    def _record(self, result, index: int, action: torch.Tensor) -> dict[str, np.ndarray]:
        return {
            "obs": result.obs[index],
            "action": action[index].cpu().numpy(),
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

    def _end_episode(self, index: int, tracker: EpisodeTracker) -> None:
        self.replay.finish_episode(index)
        ret, cost, length = tracker.pop(index)
        self.counters["episode"] += 1
        self.counters["cumulative_cost"] += cost
        self.agent.episode_end(cost)
        self.bus.emit(
            EpisodeEnd(
                self.step,
                episode=self.counters["episode"],
                env_index=index,
                ret=ret,
                cost=cost,
                length=length,
                cumulative_cost=self.counters["cumulative_cost"],
            )
        )

    def _train_once(self) -> None:
        cfg = self.config.train
        batch = self.replay.sample(cfg.batch_size, cfg.batch_length)
        batch = {key: torch.as_tensor(value, device=self.device) for key, value in batch.items()}
        with autocast(self.device, cfg.precision):
            metrics, posterior = self.world_model.train_step(batch)
        self.counters["update"] += 1
        update = self.counters["update"]
        self.bus.emit(
            WorldModelUpdate(
                self.step, update=update, metrics=metrics, batch=batch, posterior=posterior
            )
        )
        with autocast(self.device, cfg.precision):
            result = self.agent.update(posterior, batch)
        self.bus.emit(ImaginationEvent(self.step, update=update, imagination=result.imagination))
        self.bus.emit(AgentUpdate(self.step, update=update, metrics=result.metrics))

    # --- evaluation, checkpoints -------------------------------------------------------------

    @property
    def step(self) -> int:
        return self.counters["step"]

    def evaluate(self) -> list[dict[str, float]]:
        """Play `eval_episodes` episodes with the deterministic policy; save them with frames."""
        cfg = self.config
        env = make_env(cfg.env.task, seed=cfg.train.seed + 10_000, **self.env_kwargs)
        summaries, paths, played = [], [], []
        try:
            for index in range(cfg.train.eval_episodes):
                episode = play_episode(
                    env,
                    self.world_model,
                    self.agent,
                    explore=False,
                    seed=cfg.train.seed + 10_000 + index,
                )
                paths.append(str(self.writer.save_eval(self.step, index, episode)))
                summaries.append(episode_summary(episode))
                played.append(episode)
        finally:
            env.close()
        health = world_model_health(played)
        self.bus.emit(Evaluation(self.step, episodes=summaries, paths=paths, health=health))
        return summaries

    def save_checkpoint(self) -> Path:
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
        """Load the newest checkpoint and the saved episodes; False if there is no checkpoint."""
        try:
            state = checkpoint.load_latest(self.run_dir, self.device)
        except checkpoint.CheckpointError:
            return False
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
        self.envs.close()
        self.writer.close(status)


def stop_on_sigterm():
    """Turn SIGTERM (e.g. the dashboard's stop button) into a clean stop with a checkpoint."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a notebook running the engine in a thread)
        return signal.getsignal(signal.SIGTERM)
