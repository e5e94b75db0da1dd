"""Safety-Gymnasium navigation tasks observed as small RGB images, one or many at a time.

`make_env` gives one `PixelEnv`; `make_vector_env` gives N of them (one subprocess each).
safety_gymnasium and mujoco are imported lazily, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import importlib.util
import multiprocessing as mp
import os
import pickle
import re
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from workbench.config import EnvConfig
from workbench.tasks import NAV_TASKS as NAV_TASKS  # re-exported: the supported tasks
from workbench.tasks import TaskError as TaskError
from workbench.tasks import check_task

RENDER_CHOICES = ("fast", "stock")
CAMERA = "vision"
_SETUP_HINT = "Install it with `bash scripts/setup.sh` (it creates .venv) and use .venv/bin/python."


class RenderingError(RuntimeError):
    """MuJoCo could not open an OpenGL context to render with."""


# ---------------------------------------------------------------------------------------------
# Importing safety_gymnasium
# ---------------------------------------------------------------------------------------------


class _HashableArray(np.ndarray):
    """An ndarray that dataclasses accept as a field default (it has a __hash__)."""

    __hash__ = object.__hash__


def _configure_gl() -> None:
    """Render headless with EGL unless the user chose a backend or has a display."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"


def _silence_adroit_notice() -> None:
    """gymnasium-robotics 1.2.x prints a long Adroit notice to stderr on import: drop it."""
    try:
        from farama_notifications import notifications
    except ImportError:
        return
    notifications.pop("gymnasium_robotics", None)


def _patch_colors(package_dir: str) -> None:
    """Make safety_gymnasium's COLOR arrays hashable so its dataclasses load on Python >= 3.11.

    Python 3.11 rejects unhashable (mutable) dataclass field defaults, and safety_gymnasium's
    geom dataclasses use these arrays as defaults. Load color.py ourselves and register it under
    its own name, so the package's later `from ...color import COLOR` finds the patched one.
    """
    name = "safety_gymnasium.assets.color"
    module = sys.modules.get(name)
    if module is None:
        path = os.path.join(package_dir, "assets", "color.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    for key, value in module.COLOR.items():
        if isinstance(value, np.ndarray) and not isinstance(value, _HashableArray):
            module.COLOR[key] = value.view(_HashableArray)


def import_safety_gymnasium() -> ModuleType:
    """Import safety_gymnasium (with the Python-3.11 COLOR fix, quietly, headless-ready)."""
    if "safety_gymnasium" in sys.modules:
        return sys.modules["safety_gymnasium"]
    spec = importlib.util.find_spec("safety_gymnasium")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"safety_gymnasium is not installed. {_SETUP_HINT}")
    _configure_gl()
    _import_mujoco()
    _silence_adroit_notice()
    _patch_colors(spec.submodule_search_locations[0])
    import safety_gymnasium

    return safety_gymnasium


def _import_mujoco() -> None:
    """Import mujoco, which loads the MUJOCO_GL backend on import (and fails if it can't)."""
    try:
        import mujoco  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name == "mujoco":
            raise ImportError(f"mujoco is not installed. {_SETUP_HINT}") from exc
        raise _rendering_error(exc) from exc
    except Exception as exc:
        raise _rendering_error(exc) from exc


# ---------------------------------------------------------------------------------------------
# One environment
# ---------------------------------------------------------------------------------------------


def _rendering_error(exc: Exception) -> RenderingError:
    backend = os.environ.get("MUJOCO_GL", "<unset>")
    return RenderingError(
        f"MuJoCo cannot render here (MUJOCO_GL={backend}): {type(exc).__name__}: {exc}. "
        "On a headless machine set MUJOCO_GL=egl before mujoco is imported, and install the "
        "EGL/Mesa libraries (Debian: apt-get install libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri); "
        "for MUJOCO_GL=osmesa install libosmesa6."
    )


class _FastRenderer:
    """Renders the 'vision' camera through one persistent offscreen context.

    Shows the same geoms as safety_gymnasium's own render path (all geom groups on, the same
    camera, the same upright orientation), but without shadows, reflections and the skybox,
    which make it several times faster. It also skips the lidar markers and the cost
    indicator sphere that safety_gymnasium adds each frame: from the vision camera they are
    never visible (the markers float above the camera's view and the sphere encloses the
    camera, so its faces are culled), but building them costs Python time every frame.
    """

    def __init__(self, size: int) -> None:
        import mujoco

        self._mj = mujoco
        try:
            self._gl = mujoco.GLContext(size, size)
            self._gl.make_current()
            self._release()
        except Exception as exc:  # any backend failure means: cannot render here
            raise _rendering_error(exc) from exc
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = 1  # as the stock viewer: safety-gym puts geoms in groups 0-10
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, size, size)
        self._pixels = np.empty((size, size, 3), dtype=np.uint8)
        self._model = self._context = self._scene = None

    def _bind(self, model: Any) -> None:
        """Follow the new MjModel that safety_gymnasium compiles on every reset.

        Like its own viewer we keep the MjrContext (slow to create; the assets are the same in
        every rebuilt model) and only remake the cheap MjvScene.
        """
        mj = self._mj
        if self._context is None:
            self._context = mj.MjrContext(model, mj.mjtFontScale.mjFONTSCALE_50)
            mj.mjr_setBuffer(mj.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._scene = mj.MjvScene(model, maxgeom=1000)
        for flag in ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX"):
            self._scene.flags[getattr(mj.mjtRndFlag, flag)] = 0
        self._camera.fixedcamid = mj.mj_name2id(model, mj.mjtObj.mjOBJ_CAMERA, CAMERA)
        self._model = model

    def render(self, model: Any, data: Any) -> np.ndarray:
        """An upright uint8 (S, S, 3) image of the current state."""
        mj = self._mj
        self._gl.make_current()
        if model is not self._model:
            self._bind(model)
        cat_all = mj.mjtCatBit.mjCAT_ALL
        mj.mjv_updateScene(model, data, self._option, None, self._camera, cat_all, self._scene)
        mj.mjr_render(self._rect, self._scene, self._context)
        mj.mjr_readPixels(self._pixels, None, self._rect, self._context)
        self._release()
        return np.ascontiguousarray(self._pixels[::-1])  # OpenGL rows run bottom-up

    def _release(self) -> None:
        """Leave no EGL context current in this thread, so the next frame may be drawn from
        another (the engine's collector thread, `train.overlap`): EGL refuses to make a context
        current in one thread while it is current in another (EGL_BAD_ACCESS)."""
        if type(self._gl).__module__ != "mujoco.egl":
            return
        from mujoco.egl import EGL, EGL_DISPLAY

        EGL.eglMakeCurrent(EGL_DISPLAY, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)

    def close(self) -> None:
        """Free the OpenGL resources."""
        if self._context is not None:
            self._gl.make_current()
            self._context.free()
            self._context = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None


# Safety-Gymnasium's skybox is six ~3000x3000 PNGs that MuJoCo decodes on every reset (about
# 1.6 s and 190 MB per model). The fast path never draws the skybox, so while a fast env resets
# its world is compiled with a tiny flat one instead (resets take ~0.05 s; frames are unchanged).
_SKYBOX = re.compile(r'<texture\b[^>]*\btype="skybox"[^>]*?(/?)>')
_FLAT_SKYBOX = r'<texture type="skybox" builtin="flat" rgb1="0 0 0" width="8" height="8"\1>'
_flat_sky = contextvars.ContextVar("workbench_flat_sky", default=False)


def _install_flat_sky_hook() -> None:
    """Let World.build's `self.xml_string = ...` swap the skybox while `_flat_sky` is set."""
    from safety_gymnasium.world import World

    if isinstance(World.__dict__.get("xml_string"), property):
        return

    def set_xml(world: Any, text: str | None) -> None:
        if text is not None and _flat_sky.get():
            text = _SKYBOX.sub(_FLAT_SKYBOX, text)
        world.__dict__["xml_string"] = text

    World.xml_string = property(lambda world: world.__dict__.get("xml_string"), set_xml)


@contextlib.contextmanager
def _flat_skybox(enabled: bool):
    token = _flat_sky.set(enabled)
    try:
        yield
    finally:
        _flat_sky.reset(token)


@dataclass
class Step:
    """What one agent step returns (reward and cost summed over the action repeat)."""

    obs: np.ndarray
    reward: float
    cost: float
    terminated: bool
    truncated: bool
    info: dict
    hazard_distance: float = float("nan")
    """Ground truth after the step: distance from the agent to the nearest hazard's edge
    (negative inside one; NaN for tasks without hazards), see `PixelEnv.hazard_distance`."""


class PixelEnv:
    """One Safety-Gymnasium task observed as small RGB images from the 'vision' camera."""

    def __init__(self, config: EnvConfig, seed: int | None = None) -> None:
        _check(config)
        task, image_size, action_repeat = config.task, config.image_size, config.action_repeat
        time_limit, render = config.time_limit, config.render
        sg = import_safety_gymnasium()
        self._env = sg.make(
            task, render_mode="rgb_array", camera_name=CAMERA, width=image_size, height=image_size
        )
        self.task, self.image_size, self.action_repeat = task, image_size, action_repeat
        space = self._env.action_space
        self.action_dim = int(space.shape[0])
        self.action_low = space.low.astype(np.float32)
        self.action_high = space.high.astype(np.float32)
        self.obs_shape = (image_size, image_size, 3)
        self.time_limit = min(time_limit, self._env.spec.max_episode_steps or time_limit)
        self._renderer = _FastRenderer(image_size) if render == "fast" else None
        if self._renderer is not None:
            _install_flat_sky_hook()
        self._seed = seed
        self._steps = 0
        self._done = True
        self._frame = np.zeros(self.obs_shape, dtype=np.uint8)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode; the first reset uses the seed given to make_env if none is given."""
        seed, self._seed = (self._seed if seed is None else seed), None
        with _flat_skybox(self._renderer is not None):
            self._env.reset(seed=seed)
        self._steps, self._done = 0, False
        self._frame = self._render()
        return self._frame

    def step(self, action: np.ndarray) -> Step:
        """Apply `action` (clipped to bounds) for action_repeat physics steps, or until done."""
        if self._done:
            raise RuntimeError("The episode has ended (or never started): call reset() first.")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.action_dim,):
            raise ValueError(
                f"{self.task}: action must have shape ({self.action_dim},), got {action.shape}"
            )
        action = np.clip(action, self.action_low, self.action_high)
        reward = cost = 0.0
        for _ in range(self.action_repeat):
            _, r, c, terminated, truncated, info = self._env.step(action)
            self._steps += 1
            reward, cost = reward + float(r), cost + float(c)
            truncated = bool(truncated) or self._steps >= self.time_limit
            if terminated or truncated:
                break
        self._done = bool(terminated) or truncated
        self._frame = self._render()
        distance = self.hazard_distance()
        return Step(self._frame, reward, cost, bool(terminated), truncated, info, distance)

    def hazard_distance(self) -> float:
        """The simulator's distance (m, in the floor plane) from the agent to the edge of the
        nearest hazard: negative inside one, NaN for a task without hazards. Ground truth to
        check the cost head and the barrier against; the agent never sees it."""
        task = self._env.unwrapped.task
        hazards = getattr(task, "hazards", None)
        if hazards is None or not getattr(hazards, "num", 0):
            return float("nan")
        centres = np.asarray(hazards.pos)[:, :2]
        gaps = np.linalg.norm(centres - np.asarray(task.agent.pos)[:2], axis=-1) - hazards.size
        return float(gaps.min())

    def render(self) -> np.ndarray:
        """The current frame (the same image as the last observation)."""
        return self._frame.copy()

    def close(self) -> None:
        """Release the simulator and the renderer."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        task = self._env.unwrapped.task
        if getattr(task, "viewer", None) is not None:
            # safety_gymnasium never frees its viewer; left to interpreter exit, EGL errors out.
            task.viewer.make_context_current()
            task.viewer.con.free()
            task.viewer.free()
            task.viewer = None
        self._env.close()

    @property
    def physics(self) -> tuple[Any, Any]:
        """The current (MjModel, MjData); safety_gymnasium builds a new pair on every reset."""
        task = self._env.unwrapped.task
        return task.model, task.data

    def _render(self) -> np.ndarray:
        if self._renderer is not None:
            return self._renderer.render(*self.physics)
        viewer = getattr(self._env.unwrapped.task, "viewer", None)
        if viewer is not None:  # the stock viewer assumes its GL context is still current
            viewer.make_context_current()
        try:
            frame = self._env.render()
        except Exception as exc:
            if viewer is None:  # failed while opening its context
                raise _rendering_error(exc) from exc
            raise
        return np.ascontiguousarray(frame, dtype=np.uint8)


def _check(config: EnvConfig) -> None:
    check_task(config.task)
    if config.render not in RENDER_CHOICES:
        raise ValueError(f"render must be one of {RENDER_CHOICES}, got {config.render!r}")
    for name in ("image_size", "action_repeat", "time_limit", "num_envs"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")


def env_config(config: EnvConfig | str | None = None, **settings: Any) -> EnvConfig:
    """An `EnvConfig` (its defaults are the only ones) from a config or a task id, with
    `settings` (any of its fields) replacing its values."""
    if config is None or isinstance(config, str):
        return EnvConfig(**({"task": config} if config else {}), **settings)
    return dataclasses.replace(config, **settings)


def make_env(
    config: EnvConfig | str | None = None, *, seed: int | None = None, **settings: Any
) -> PixelEnv:
    """One pixel-observation env, as `config` (an `EnvConfig`, or a task id) describes it, with
    `settings` replacing its fields: `make_env(run.config.env)`, `make_env("SafetyCarGoal1-v0",
    time_limit=200)`. render: "fast" (a persistent renderer without shadows/reflections/skybox,
    same scene) or "stock" (safety_gymnasium's own). time_limit: physics steps per episode
    (capped at the task's own limit). seed: used by the first reset() that gets no seed.
    """
    return PixelEnv(env_config(config, **settings), seed)


# ---------------------------------------------------------------------------------------------
# Many environments
# ---------------------------------------------------------------------------------------------


@dataclass
class VectorStep:
    """One step of all N envs."""

    obs: np.ndarray
    reward: np.ndarray
    cost: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    hazard_distance: np.ndarray
    """Ground truth per env (see `PixelEnv.hazard_distance`)."""


def _worker(conn: Any, config: EnvConfig) -> None:
    """Subprocess loop: make the env, then serve (command, argument) requests until 'close'."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes us
    env = None
    try:
        env = PixelEnv(config)
        conn.send(("ok", (env.action_low, env.action_high)))
        while True:
            command, argument = conn.recv()
            if command == "close":
                break
            try:
                conn.send(("ok", getattr(env, command)(argument)))
            except Exception as exc:
                conn.send(("error", _portable(exc)))
    except (EOFError, BrokenPipeError):  # the parent went away
        pass
    except Exception as exc:  # make_env failed
        conn.send(("error", _portable(exc)))
    finally:
        if env is not None:
            env.close()
        conn.close()


def _portable(exc: Exception) -> Exception:
    """The exception with the worker's traceback as a note, made safe to pickle."""
    note = "Raised in a VectorEnv worker process:\n" + traceback.format_exc()
    try:
        exc = pickle.loads(pickle.dumps(exc))
    except Exception:
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    exc.add_note(note)
    return exc


_DIED = (
    "VectorEnv worker {i} died (see its traceback above). A script that makes a VectorEnv with "
    "num_envs > 1 must do so under `if __name__ == '__main__':` (workers start by 'forkserver')."
)


class VectorEnv:
    """N PixelEnvs: in-process when N == 1, otherwise one subprocess each, stepped in parallel.

    Workers start with 'forkserver' (MuJoCo's GL contexts do not survive fork), so scripts must
    create it under `if __name__ == "__main__":`. No auto-reset: call reset(i) for an env whose
    episode ended.
    """

    def __init__(self, config: EnvConfig) -> None:
        _check(config)
        self.num_envs = config.num_envs
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._local = PixelEnv(config) if self.num_envs == 1 else None
        if self._local is None:
            low, high = self._start_workers(config)
        else:
            low, high = self._local.action_low, self._local.action_high
        self.action_low, self.action_high = low, high
        self.action_dim = int(low.shape[0])
        self.obs_shape = (config.image_size, config.image_size, 3)

    def _start_workers(self, config: EnvConfig) -> tuple[np.ndarray, np.ndarray]:
        """Start one worker per env; return the action bounds they report."""
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        for _ in range(self.num_envs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, config), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        try:
            return self._gather(range(self.num_envs))[0]
        except BaseException:
            self.close()
            raise

    def _gather(self, indices: Any) -> list[Any]:
        """Receive one reply from each of `indices`; raise the first worker error."""
        replies = []
        for i in indices:
            try:
                replies.append(self._conns[i].recv())
            except EOFError:
                replies.append(("error", RuntimeError(_DIED.format(i=i))))
        for status, payload in replies:
            if status == "error":
                raise payload
        return [payload for _, payload in replies]

    def _call(self, index: int, command: str, argument: Any) -> Any:
        if self._local is not None:
            return getattr(self._local, command)(argument)
        self._conns[index].send((command, argument))
        return self._gather([index])[0]

    def reset_all(self, seed: int) -> np.ndarray:
        """Reset every env (env i with seed + i); (N, H, W, 3) uint8."""
        if self._local is not None:
            return self._local.reset(seed)[None]
        for i, conn in enumerate(self._conns):
            conn.send(("reset", seed + i))
        return np.stack(self._gather(range(self.num_envs)))

    def reset(self, index: int) -> np.ndarray:
        """Reset env `index` (unseeded: it continues its own random stream); (H, W, 3)."""
        return self._call(index, "reset", None)

    def step(self, actions: np.ndarray) -> VectorStep:
        """Step all envs with actions of shape (N, action_dim)."""
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim != 2 or actions.shape[0] != self.num_envs:
            raise ValueError(
                f"actions must have shape ({self.num_envs}, {self.action_dim}), got {actions.shape}"
            )
        if self._local is not None:
            steps = [self._local.step(actions[0])]
        else:
            for conn, action in zip(self._conns, actions, strict=True):
                conn.send(("step", action))
            steps = self._gather(range(self.num_envs))
        return VectorStep(
            obs=np.stack([s.obs for s in steps]),
            reward=np.array([s.reward for s in steps], dtype=np.float32),
            cost=np.array([s.cost for s in steps], dtype=np.float32),
            terminated=np.array([s.terminated for s in steps], dtype=bool),
            truncated=np.array([s.truncated for s in steps], dtype=bool),
            hazard_distance=np.array([s.hazard_distance for s in steps], dtype=np.float32),
        )

    def close(self) -> None:
        """Stop the workers (or close the in-process env). Safe to call twice."""
        if getattr(self, "_local", None) is not None:
            self._local.close()
            self._local = None
        for conn in getattr(self, "_conns", []):
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in getattr(self, "_procs", []):
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in getattr(self, "_conns", []):
            conn.close()
        self._conns, self._procs = [], []

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def make_vector_env(config: EnvConfig | str | None = None, **settings: Any) -> VectorEnv:
    """`num_envs` envs as `config` describes them (arguments as for `make_env`); subprocesses
    when there are more than one."""
    return VectorEnv(env_config(config, **settings))


# ---------------------------------------------------------------------------------------------
# Speed
# ---------------------------------------------------------------------------------------------


def physics_steps_per_second(task: str, steps: int) -> float:
    """Steps per second of the bare safety_gymnasium env (no image)."""
    env = import_safety_gymnasium().make(task)
    _install_flat_sky_hook()
    with _flat_skybox(True):  # no image is drawn: skip decoding the skybox
        env.reset(seed=0)
    space = env.action_space
    actions = np.random.default_rng(0).uniform(space.low, space.high, (steps, *space.shape))
    start = time.perf_counter()
    for action in actions:
        if any(env.step(action)[3:5]):
            with _flat_skybox(True):
                env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed
