"""Checkpoints: atomic, loaded without executing code, damaged ones skipped, not lost."""

from __future__ import annotations

import os
import pickle
import warnings

import pytest
import torch

from workbench import checkpoint
from workbench.checkpoint import CheckpointError, load_agent
from workbench.engine import Engine


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/workbench-exploit-ran",))


def test_loading_never_executes_code(tmp_path):
    path = tmp_path / "ckpt_000000001.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "workbench-checkpoint", "payload": Exploit()}, f)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(path)
    assert not os.path.exists("/tmp/workbench-exploit-ran")


def test_damaged_latest_checkpoint_falls_back_to_previous(tmp_path):
    for step in (10, 20):
        checkpoint.save(tmp_path, step, {"weights": torch.ones(3) * step}, keep=3)
    latest = tmp_path / "checkpoints" / "ckpt_000000020.pt"
    latest.write_bytes(latest.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.warns(UserWarning, match="damaged"):
        payload = checkpoint.load_latest(tmp_path)
    assert payload["step"] == 10
    assert latest.exists(), "a damaged checkpoint is reported, never deleted"


def test_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        checkpoint.load_latest(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt_000000005.pt").write_text("not a checkpoint")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the one error names the damaged files: no warnings too
        with pytest.raises(CheckpointError, match="could be read.*ckpt_000000005.pt"):
            checkpoint.load_latest(tmp_path)


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    for step in (1, 2, 3, 4):
        checkpoint.save(tmp_path, step, {}, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["ckpt_000000003.pt", "ckpt_000000004.pt"]


def test_load_agent_for_inspection_restores_the_trained_weights(fake_envs, tiny_config, tmp_path):
    engine = Engine(tiny_config, tmp_path / "run", progress=False)
    engine.train()
    loaded = load_agent(tmp_path / "run")
    assert loaded.step == tiny_config.train.steps and not loaded.agent.training
    for name, value in engine.world_model.state_dict().items():
        assert torch.equal(value, loaded.world_model.state_dict()[name]), name
