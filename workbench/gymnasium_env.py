"""A `gymnasium.Env` view of the workbench's fast pixel environment, so other libraries can
train on it: 64x64 RGB observations (`Box(0, 255, (64, 64, 3), uint8)`), Safety-Gymnasium's
continuous actions, and the step's cost in `info["cost"]` (with the simulator's
`info["hazard_distance"]`, ground truth an agent should not see).

Importing this module registers one id per navigation task, `workbench/<Task>Pixels-v0`
(e.g. `workbench/SafetyPointGoal1Pixels-v0`). Installed with pip, the workbench also declares
it as a Gymnasium plugin (the `gymnasium.envs` entry point), so a plain `import gymnasium` is
enough; without the install, name the module in the id:

    import gymnasium
    env = gymnasium.make("workbench.gymnasium_env:workbench/SafetyPointGoal1Pixels-v0")
    env = gymnasium.make("workbench/SafetyPointGoal1Pixels-v0", action_repeat=4, image_size=64)

Keyword arguments go to `workbench.envs.make_env` (action_repeat defaults to 1 here: one
Gymnasium step is one physics step, as in Safety-Gymnasium itself). Rendering is headless
(`MUJOCO_GL=egl`); `render()` returns the current frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Submodules, not `gymnasium.*` attributes: as a plugin this module loads while gymnasium is
# still importing itself.
from gymnasium.core import Env
from gymnasium.envs.registration import register, registry
from gymnasium.spaces import Box

NAMESPACE = "workbench"


def pixels_id(task: str) -> str:
    """The Gymnasium id of a task's pixel view: SafetyPointGoal1-v0 -> workbench/SafetyPointGoal1Pixels-v0."""
    name, _, version = task.rpartition("-")
    return f"{NAMESPACE}/{name}Pixels-{version}"


class SafetyPixelsEnv(Env):
    """One Safety-Gymnasium task seen through `workbench.envs.PixelEnv` (fast rendering)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        task: str = "SafetyPointGoal1-v0",
        render_mode: str | None = None,
        action_repeat: int = 1,
        **env_kwargs: Any,
    ) -> None:
        from workbench.envs import make_env

        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self._env = make_env(task, action_repeat=action_repeat, **env_kwargs)
        self.observation_space = Box(0, 255, self._env.obs_shape, dtype=np.uint8)
        self.action_space = Box(self._env.action_low, self._env.action_high, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs = self._env.reset(seed=seed)
        return obs, {"hazard_distance": self._env.hazard_distance()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        result = self._env.step(np.asarray(action, dtype=np.float32))
        info = {**result.info, "cost": result.cost, "hazard_distance": result.hazard_distance}
        return result.obs, result.reward, result.terminated, result.truncated, info

    # gymnasium types render() with a TypeVar bound per call, which no concrete override matches
    def render(self) -> np.ndarray | None:  # type: ignore[override]
        return self._env.render() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        self._env.close()


def register_all() -> None:
    """Register `workbench/<Task>Pixels-v0` for every navigation task (idempotent)."""
    from workbench.envs import NAV_TASKS

    for task in NAV_TASKS:
        env_id = pixels_id(task)
        if env_id not in registry:
            register(
                env_id,
                entry_point="workbench.gymnasium_env:SafetyPixelsEnv",
                kwargs={"task": task},
            )


register_all()
