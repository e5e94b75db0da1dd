"""workbench.gymnasium_env: the pixel env as a registered `gymnasium.Env` that passes
Gymnasium's own checker, with the cost in `info`."""

from __future__ import annotations

import tomllib
import warnings
from importlib import import_module
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from workbench.envs import NAV_TASKS, TaskError
from workbench.gymnasium_env import SafetyPixelsEnv, pixels_id

ENV_ID = "workbench/SafetyPointGoal1Pixels-v0"


def test_every_navigation_task_has_a_pixels_id():
    assert pixels_id("SafetyPointGoal1-v0") == ENV_ID
    assert all(pixels_id(task) in gymnasium.registry for task in NAV_TASKS)
    assert len({pixels_id(task) for task in NAV_TASKS}) == len(NAV_TASKS)


def test_pyproject_declares_the_gymnasium_plugin():
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"]["gymnasium.envs"]["__root__"]
    module, _, function = target.partition(":")
    getattr(import_module(module), function)()  # idempotent: registering twice is fine


def test_bad_arguments_are_one_clear_error():
    with pytest.raises(TaskError, match="SafetyPointGoal1-v0"):
        gymnasium.make("workbench/SafetyPointGoal1Pixels-v0", task="SafetyPointGoal9-v0")
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array'"):
        SafetyPixelsEnv(render_mode="human")


@pytest.mark.real
def test_passes_gymnasium_check_env_on_the_real_task():
    env = gymnasium.make(ENV_ID, render_mode="rgb_array")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any checker warning fails the test
            check_env(env.unwrapped)
        assert env.observation_space == gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        first, info = env.reset(seed=3)
        assert np.array_equal(first, env.reset(seed=3)[0]) and "hazard_distance" in info
        costs = []
        for _ in range(20):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs) and isinstance(reward, float)
            costs.append(info["cost"])
        assert all(isinstance(cost, float) and cost >= 0 for cost in costs)
        assert np.array_equal(env.render(), obs)
    finally:
        env.close()
