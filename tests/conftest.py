"""Shared fixtures: fast fake environments for unit tests, tiny configs, CPU-only torch."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from tests.fakes import FAKE_FACTORIES, fake_env

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
    """Build engines (and `workbench eval`) on the fast fake task instead of MuJoCo, for code
    that builds them itself (the command line); a test building an engine passes
    `factories=FAKE_FACTORIES` instead."""
    import workbench.evaluation
    from workbench.engine import Engine

    monkeypatch.setattr(Engine, "factories", FAKE_FACTORIES)
    monkeypatch.setattr(workbench.evaluation, "make_env", fake_env)
    return FAKE_FACTORIES


@pytest.fixture
def tiny_config():
    """The `tiny` preset on CPU, short enough for unit tests."""
    from workbench.config import resolve

    return resolve("tiny", {"train.device": "cpu", "env.task": "SafetyPointGoal1-v0"})
