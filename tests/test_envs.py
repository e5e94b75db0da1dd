"""workbench.envs: pixel observations, action repeat, cost labels, rendering paths, vector envs."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from workbench.bench import bench_envs
from workbench.envs import (
    NAV_TASKS,
    TaskError,
    import_safety_gymnasium,
    make_env,
    make_vector_env,
)

TASK = "SafetyPointGoal1-v0"
SPIN = np.array([0.0, 1.0], dtype=np.float32)  # Point: no thrust, full turn -> the view pans


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def _skybox_width(env) -> int:
    import mujoco

    model = env.physics[0]
    return int(model.tex_width[model.tex_type == mujoco.mjtTexture.mjTEXTURE_SKYBOX][0])


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def env():
    """One fast-rendering PointGoal1 env shared by the tests (each resets it with a seed)."""
    env = make_env(TASK, action_repeat=2, time_limit=1000)
    yield env
    env.close()


# --- no simulator needed ----------------------------------------------------------------------


def test_nav_tasks_cover_three_robots_four_tasks_three_levels():
    assert len(NAV_TASKS) == 36
    assert {"SafetyPointGoal1-v0", "SafetyCarPush2-v0", "SafetyRacecarCircle0-v0"} <= set(NAV_TASKS)


def test_unknown_task_suggests_close_match_and_how_to_list():
    with pytest.raises(TaskError, match="SafetyPointGoal1-v0") as info:
        make_env("SafetyPointGoal7-v0")
    assert "NAV_TASKS" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_render_value_names_the_choices():
    with pytest.raises(ValueError, match="fast.*stock"):
        make_env(TASK, render="fancy")
    with pytest.raises(ValueError, match="num_envs"):
        make_vector_env(TASK, num_envs=0)


def test_importing_the_module_does_not_import_the_simulator():
    out = _python(
        "import sys, workbench.envs; print('mujoco' in sys.modules, 'safety_gymnasium' in sys.modules)"
    )
    assert out.stdout.split() == ["False", "False"], out.stderr


# --- the real environment ---------------------------------------------------------------------


@pytest.mark.real
def test_import_fix_makes_color_arrays_hashable_and_is_cheap_the_second_time():
    sg = import_safety_gymnasium()
    colors = sys.modules["safety_gymnasium.assets.color"].COLOR
    assert all(isinstance(hash(value), int) for value in colors.values())
    assert np.allclose(colors["hazard"], [0, 0, 1, 0.25])
    start = time.perf_counter()
    assert import_safety_gymnasium() is sg
    assert time.perf_counter() - start < 0.01
    assert os.environ.get("MUJOCO_GL") or os.environ.get("DISPLAY")


@pytest.mark.real
def test_frames_are_upright_uint8_images_that_change_when_the_agent_turns(env):
    first = env.reset(seed=1)
    assert first.dtype == np.uint8 and first.shape == (64, 64, 3) == env.obs_shape
    assert first[:8].mean() < first[-8:].mean()  # dark sky on top, floor and agent below
    for _ in range(10):
        step = env.step(SPIN)
    assert isinstance(step.reward, float) and isinstance(step.cost, float)
    assert step.obs.shape == (64, 64, 3) and step.obs.dtype == np.uint8
    assert _mean_abs_diff(first, step.obs) > 3.0
    assert np.array_equal(env.render(), step.obs)


@pytest.mark.real
def test_episode_truncates_after_time_limit_over_action_repeat_steps():
    env = make_env(TASK, action_repeat=4, time_limit=40, seed=0)
    try:
        env.reset()
        ends = [env.step(SPIN).truncated for _ in range(10)]
        assert ends == [False] * 9 + [True]
        with pytest.raises(RuntimeError, match="reset"):
            env.step(SPIN)
    finally:
        env.close()


@pytest.mark.real
def test_action_repeat_sums_rewards_of_the_clipped_action(env):
    raw = import_safety_gymnasium().make(TASK)
    raw.reset(seed=3)
    env.reset(seed=3)
    too_big = np.array([5.0, -0.5], dtype=np.float32)  # clipped to [1, -0.5]
    for _ in range(5):
        step = env.step(too_big)
        rewards = [raw.step(np.array([1.0, -0.5]))[1] for _ in range(env.action_repeat)]
        assert step.reward == pytest.approx(sum(rewards), abs=1e-9)
    assert any(r != 0 for r in rewards)
    raw.close()


@pytest.mark.real
def test_cost_labels_hazard_contact_and_equals_safety_gymnasium_cost():
    env = make_env(TASK, action_repeat=1, seed=0)
    costs = []
    try:
        for seed in range(4):  # drive straight ahead: PointGoal1 hazards are hit within a few seeds
            env.reset(seed=seed)
            for _ in range(300):
                step = env.step(np.array([1.0, 0.1]))
                assert step.cost == step.info["cost_sum"]
                costs.append(step.cost)
                if step.terminated or step.truncated:
                    break
            if max(costs) > 0:
                break
    finally:
        env.close()
    assert max(costs) > 0, "no hazard contact seen"
    assert min(costs) == 0


@pytest.mark.real
def test_fast_and_stock_rendering_show_the_same_scene(env):
    stock = make_env(TASK, action_repeat=2, render="stock")
    try:
        frames = []
        for e in (env, stock):
            e.reset(seed=1)
            frames.append(np.stack([e.step(SPIN).obs for _ in range(12)]))
        assert _skybox_width(env) == 8 and _skybox_width(stock) > 1000  # fast skips the HD sky
    finally:
        stock.close()
    fast, slow = frames
    assert min(f.std() for f in slow) > 20  # real images, not blank
    # Same state: only floor reflections and shadows differ (measured <= 0.7 here).
    assert max(_mean_abs_diff(a, b) for a, b in zip(fast, slow, strict=True)) < 2.0
    # A different state differs much more (measured ~9-13), so the bound above can fail.
    assert _mean_abs_diff(fast[0], slow[-1]) > 4.0


@pytest.mark.real
def test_vector_env_steps_in_parallel_and_propagates_worker_errors():
    with make_vector_env(TASK, num_envs=2, action_repeat=2) as venv:
        assert (venv.num_envs, venv.action_dim, venv.obs_shape) == (2, 2, (64, 64, 3))
        obs = venv.reset_all(seed=0)
        assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
        assert _mean_abs_diff(obs[0], obs[1]) > 1.0  # different seeds, different layouts
        out = venv.step(np.tile(SPIN, (2, 1)))
        assert out.obs.shape == (2, 64, 64, 3)
        assert out.reward.dtype == out.cost.dtype == np.float32 and out.reward.shape == (2,)
        assert out.terminated.dtype == out.truncated.dtype == bool
        assert venv.reset(1).shape == (64, 64, 3)
        with pytest.raises(ValueError, match=r"action must have shape \(2,\)") as info:
            venv.step(np.zeros((2, 3)))
        assert "worker" in "".join(getattr(info.value, "__notes__", []))
        assert venv.step(np.zeros((2, 2))).obs.shape == (2, 64, 64, 3)  # still usable
        workers = list(venv._procs)
    assert not any(p.is_alive() for p in workers)
    assert mp.active_children() == []


@pytest.mark.real
def test_single_vector_env_runs_in_process():
    with make_vector_env(TASK, num_envs=1) as venv:
        assert venv.reset_all(seed=0).shape == (1, 64, 64, 3)
        assert venv.step(np.zeros((1, 2))).reward.shape == (1,)
        assert mp.active_children() == []


@pytest.mark.real
def test_broken_gl_backend_raises_rendering_error_with_advice():
    out = _python("from workbench.envs import make_env; make_env()", MUJOCO_GL="bogus")
    assert out.returncode != 0
    assert "RenderingError" in out.stderr and "MUJOCO_GL=egl" in out.stderr


@pytest.mark.real
def test_bench_envs_reports_every_rate():
    result = bench_envs(TASK, steps=4, num_envs=2)
    keys = {"env_sps_stock_1", "env_sps_fast_1", "env_sps_fast_N", "env_sps_stock_N"}
    assert keys | {"num_envs", "physics_only_sps"} == set(result)
    assert all(result[k] > 0 for k in keys | {"physics_only_sps"})


@pytest.mark.real
def test_bench_training_reports_end_to_end_speed_and_optimisations():
    from workbench.bench import bench_training, optimisations, peak_rss_mb
    from workbench.config import resolve

    result = bench_training("tiny", "cpu", updates=2)
    assert result["train_env_steps_per_s"] > 0 and result["replay_ratio"] == 2 * 8 / 10
    on = optimisations(resolve("cpu", {"train.overlap": True}), __import__("torch").device("cpu"))
    assert on["overlapped_collection"] and on["torch_threads"] == 1
    off = optimisations(resolve("cpu"), __import__("torch").device("cpu"))
    assert not off["overlapped_collection"]
    assert peak_rss_mb() > 0


@pytest.mark.real
def test_overlapped_collection_renders_from_its_thread(tmp_path):
    """The collector thread draws frames with a GL context made in the engine's thread."""
    from workbench.config import resolve
    from workbench.engine import Engine

    config = resolve("tiny", {"train.device": "cpu", "train.overlap": True, "train.steps": 80})
    assert Engine(config, tmp_path / "run", progress=False).train() == "finished"
