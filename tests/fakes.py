"""A fast stand-in for a Safety-Gymnasium pixel task, with the same API as `workbench.envs`.

A white square moves on a dark 64x64 image (the action is its velocity). A blue disc in the
middle is the hazard: cost 1 while the square is inside it. Reward: progress toward a corner.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from workbench.config import EnvConfig
from workbench.engine import Factories
from workbench.envs import Step, VectorStep
from workbench.hooks import Hook


class FakeEnv:
    def __init__(
        self,
        image_size: int = 64,
        action_repeat: int = 2,
        time_limit: int = 100,
        seed: int | None = None,
        **_,
    ):
        self.image_size = image_size
        self.action_repeat = action_repeat
        self.max_steps = max(time_limit // action_repeat, 1)
        self.action_dim = 2
        self.action_low = -np.ones(2, np.float32)
        self.action_high = np.ones(2, np.float32)
        self.obs_shape = (image_size, image_size, 3)
        self.rng = np.random.default_rng(seed)
        self.reset(seed)

    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.position = self.rng.uniform(0.1, 0.9, 2)
        self.steps = 0
        return self.render()

    def hazard_distance(self) -> float:
        return float(np.linalg.norm(self.position - 0.5)) - 0.2

    def in_hazard(self) -> bool:
        return self.hazard_distance() < 0

    def step(self, action: np.ndarray) -> Step:
        action = np.clip(np.asarray(action, np.float32), -1, 1)
        before = np.linalg.norm(self.position - 0.9)
        self.position = np.clip(self.position + 0.05 * action, 0.0, 1.0)
        self.steps += 1
        reward = float(before - np.linalg.norm(self.position - 0.9))
        cost = float(self.in_hazard())
        truncated = self.steps >= self.max_steps
        info = {"cost_sum": cost}
        return Step(self.render(), reward, cost, False, truncated, info, self.hazard_distance())

    def render(self) -> np.ndarray:
        size = self.image_size
        frame = np.zeros((size, size, 3), np.uint8)
        y, x = np.mgrid[:size, :size] / size
        frame[(x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.04] = (40, 60, 200)
        cx, cy = (self.position * (size - 6)).astype(int)
        frame[cy : cy + 6, cx : cx + 6] = 255
        return frame

    def close(self) -> None:
        pass


class FakeVectorEnv:
    def __init__(self, num_envs: int = 1, **kwargs):
        self.envs = [FakeEnv(**kwargs) for _ in range(num_envs)]
        self.num_envs = num_envs
        first = self.envs[0]
        self.action_dim, self.obs_shape = first.action_dim, first.obs_shape
        self.action_low, self.action_high = first.action_low, first.action_high
        self.closed = False

    def reset_all(self, seed: int) -> np.ndarray:
        return np.stack([env.reset(seed + i) for i, env in enumerate(self.envs)])

    def reset(self, index: int) -> np.ndarray:
        return self.envs[index].reset()

    def step(self, actions: np.ndarray) -> VectorStep:
        steps = [env.step(a) for env, a in zip(self.envs, actions, strict=True)]
        return VectorStep(
            obs=np.stack([s.obs for s in steps]),
            reward=np.array([s.reward for s in steps], np.float32),
            cost=np.array([s.cost for s in steps], np.float32),
            terminated=np.array([s.terminated for s in steps]),
            truncated=np.array([s.truncated for s in steps]),
            hazard_distance=np.array([s.hazard_distance for s in steps], np.float32),
        )

    def close(self) -> None:
        self.closed = True


class Recorder(Hook):
    """Records the name of every event it receives, in order."""

    def __init__(self):
        self.calls: list[str] = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            return lambda event: self.calls.append(name)
        return super().__getattribute__(name)


def fake_env(config: EnvConfig | str | None = None, **settings) -> FakeEnv:
    """`envs.make_env`'s stand-in: the fast fake task, sized as an `EnvConfig` says."""
    return FakeEnv(**_fields(config, settings))


def fake_vector_env(config: EnvConfig | str | None = None, **settings) -> FakeVectorEnv:
    """`envs.make_vector_env`'s stand-in."""
    fields = _fields(config, settings)
    return FakeVectorEnv(fields.pop("num_envs"), **fields)


def _fields(config: EnvConfig | str | None, settings: dict) -> dict:
    from workbench.envs import env_config

    return dataclasses.asdict(env_config(config, **settings))


FAKE_FACTORIES = Factories(envs=fake_vector_env, eval_env=fake_env)
"""The engine built on the fake task: `Engine(config, run_dir, factories=FAKE_FACTORIES)`."""
