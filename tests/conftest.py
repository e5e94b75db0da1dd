"""Shared fixtures: fast fake environments for unit tests, tiny configs, CPU-only torch."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from tests.fakes import FakeEnv, FakeVectorEnv

os.environ.setdefault("MUJOCO_GL", "egl")
torch.set_num_threads(1)  # the machine has 2 cores; env workers need the other


@pytest.fixture(autouse=True)
def restore_main_module():
    """Streamlit's AppTest runs a page as `__main__` and leaves it there; multiprocessing
    workers started later (forkserver) would then re-run that page and die."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture
def fake_envs(monkeypatch):
    """Route the engine (and evaluation) to the fast fake task instead of MuJoCo."""
    import workbench.engine
    import workbench.evaluation

    def make_vector_env(task, num_envs=1, **kwargs):
        return FakeVectorEnv(num_envs, **kwargs)

    def make_env(task="fake", **kwargs):
        return FakeEnv(**kwargs)

    monkeypatch.setattr(workbench.engine, "make_vector_env", make_vector_env)
    monkeypatch.setattr(workbench.engine, "make_env", make_env)
    monkeypatch.setattr(workbench.evaluation, "make_env", make_env)


@pytest.fixture
def tiny_config():
    """The `tiny` preset on CPU, short enough for unit tests."""
    from workbench.config import resolve

    return resolve("tiny", {"train.device": "cpu", "env.task": "SafetyPointGoal1-v0"})
