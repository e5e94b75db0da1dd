"""`python -m tests.kill_target ARGS...`: `workbench ARGS...` on the fast fake task, for the
kill campaign (tests/test_kill_campaign.py), which SIGKILLs it at random moments.

With WORKBENCH_SLOW_CHECKPOINTS=1 every checkpoint is written in two halves a moment apart,
so a kill can land in the middle of the write."""

from __future__ import annotations

import io
import os
import sys
import time

import torch

import workbench.checkpoint
import workbench.engine
import workbench.evaluation
from tests.fakes import FAKE_FACTORIES, fake_env
from workbench.cli import main

PAUSE_MID_CHECKPOINT = 0.3
"""Seconds a slow checkpoint write waits with half its bytes on disk."""


def _slow_write(payload: dict, tmp) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    with open(tmp, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(PAUSE_MID_CHECKPOINT)
        f.write(data[len(data) // 2 :])


def _use_fake_envs() -> None:
    workbench.engine.Engine.factories = FAKE_FACTORIES
    workbench.evaluation.make_env = fake_env


if __name__ == "__main__":
    torch.set_num_threads(1)
    _use_fake_envs()
    if os.environ.get("WORKBENCH_SLOW_CHECKPOINTS") == "1":
        workbench.checkpoint._write = _slow_write
    sys.exit(main(sys.argv[1:]))
