"""`workbench export`: safetensors + config JSON + a model card; `load_agent` reads the export
without unpickling anything, and the exported agent acts exactly as the original run."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch
import yaml

from tests.fakes import FakeEnv
from workbench import checkpoint
from workbench.checkpoint import CheckpointError, load_agent
from workbench.cli import main
from workbench.engine import Engine
from workbench.evaluation import evaluate_run, play_episode


@pytest.fixture
def trained(fake_envs, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    Engine(tiny_config, run_dir, progress=False).train()
    return run_dir


def _no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("loading an export must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def _actions(loaded, explore: bool) -> np.ndarray:
    torch.manual_seed(7)
    episode = play_episode(FakeEnv(), loaded.world_model, loaded.agent, explore=explore, seed=123)
    return episode["action"]


def test_export_then_load_acts_exactly_as_the_run(trained, tmp_path, monkeypatch, capsys):
    out = tmp_path / "export"
    assert main(["export", str(trained), "--out", str(out), "--episodes", "2"]) == 0
    assert "exported" in capsys.readouterr().out
    assert sorted(path.name for path in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    original = load_agent(trained)
    with monkeypatch.context() as patch:
        _no_unpickling(patch)
        exported = load_agent(out)
    assert exported.step == original.step and exported.config == original.config
    for name, value in original.agent.state_dict().items():
        assert torch.equal(value, exported.agent.state_dict()[name]), name
    for explore in (False, True):
        assert np.array_equal(_actions(original, explore), _actions(exported, explore))
    # The same held-out evaluation, through the same entry point.
    ours, theirs = evaluate_run(trained, episodes=2), evaluate_run(out, episodes=2)
    assert (ours["return_mean"], ours["cost_mean"]) == (theirs["return_mean"], theirs["cost_mean"])


def test_model_card_front_matter(trained, tmp_path, tiny_config):
    from workbench.export import export_run

    card = export_run(trained, tmp_path / "export", episodes=2)
    text = (tmp_path / "export" / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["task"] == "SafetyPointGoal1-v0" and front["algorithm"] == tiny_config.algo
    assert front["cost_limit"] == tiny_config.agent.cost_limit
    assert front["env_steps"] == tiny_config.train.steps
    (result,) = front["model-index"][0]["results"]
    metrics = {metric["type"]: metric["value"] for metric in result["metrics"]}
    report = evaluate_run(tmp_path / "export", episodes=2)
    assert metrics["mean_reward"] == f"{report['return_mean']:.2f} +/- {report['return_std']:.2f}"
    assert metrics["mean_cost"] == card["mean_cost"] and " +/- " in metrics["mean_cost"]
    assert "workbench train --task SafetyPointGoal1-v0" in text  # how it was made


def test_a_damaged_or_foreign_export_is_one_clear_error(trained, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(trained), "--out", str(out), "--episodes", "1"]) == 0
    weights = out / checkpoint.EXPORT_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_agent(out)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(weights), metadata={"format": "other"})
    with pytest.raises(CheckpointError, match="not a workbench export"):
        load_agent(out)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_run_may_keep_its_agent_as_an_export(trained, tmp_path, monkeypatch):
    """As the shipped runs do: the export's files in the run directory instead of checkpoints."""
    from workbench.export import export_run
    from workbench.runs import CHECKPOINTS, EXPORT_WEIGHTS, Run

    step = Run(trained).checkpoints()[-1].number
    export_run(trained, tmp_path / "export", episodes=1)
    shutil.rmtree(trained / CHECKPOINTS)
    for path in (tmp_path / "export").iterdir():
        shutil.copy(path, trained / path.name)

    assert [(w.path.name, w.number) for w in Run(trained).weights()] == [(EXPORT_WEIGHTS, step)]
    with monkeypatch.context() as patch:
        _no_unpickling(patch)
        assert load_agent(trained).step == step
