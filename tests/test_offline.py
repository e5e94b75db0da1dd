"""Offline safe RL: the dataset format, LSPC's parts, and the offline loop end to end."""

from __future__ import annotations

import copy
import json
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import workbench.envs
from tests.fakes import Recorder, fake_env
from tests.test_barrier_cerl import DEVICES, DeviceCheck
from workbench.cli import main
from workbench.config import resolve
from workbench.datasets import (
    VERSION,
    Behaviour,
    DatasetError,
    DatasetWriter,
    build_dataset,
    load_dataset,
    summarise,
)
from workbench.engine import Engine
from workbench.runs import Run

ENV = {"image_size": 64, "action_repeat": 2, "time_limit": 100, "render": "fast"}


def hand_made_episode(rewards: list[float], costs: list[float]) -> dict[str, np.ndarray]:
    """An episode in replay conventions whose step t+1 received rewards[t] and costs[t]."""
    length = len(rewards) + 1
    return {
        "obs": np.zeros((length, 64, 64, 3), np.uint8),
        "action": np.zeros((length, 2), np.float32),
        "reward": np.array([0.0, *rewards], np.float32),
        "cost": np.array([0.0, *costs], np.float32),
        "is_first": np.arange(length) == 0,
        "is_terminal": np.zeros(length, bool),
    }


@pytest.fixture
def small_dataset(tmp_path):
    writer = DatasetWriter(tmp_path / "data", "SafetyPointGoal1-v0", ENV, action_dim=2)
    writer.add(hand_made_episode([1, 1, 1, 1], [0, 1, 0, 2]), "random", 0.0, seed=0)
    writer.add(hand_made_episode([2, 2], [0, 0]), "checkpoint:runs/a@10", 0.3, seed=1)
    writer.add(hand_made_episode([0, 3, 0], [1, 1, 1]), "random", 0.0, seed=2)
    return tmp_path / "data"


# --- the dataset format ----------------------------------------------------------------------


def test_info_numbers_on_a_hand_made_dataset(small_dataset, capsys):
    summary = summarise(small_dataset)
    assert summary["episodes"] == 3 and summary["steps"] == 9
    assert summary["return"]["mean"] == pytest.approx(11 / 3)  # returns 4, 4 and 3
    assert summary["return"]["median"] == pytest.approx(4.0)
    assert summary["cost"]["max"] == pytest.approx(3.0) and summary["cost"]["min"] == 0.0
    assert summary["unsafe_step_fraction"] == pytest.approx(5 / 9)  # 2 + 0 + 3 unsafe steps
    assert summary["behaviours"]["random"] == {"episodes": 2, "return_mean": 3.5, "cost_mean": 3.0}
    assert summary["behaviours"]["checkpoint:runs/a@10 +noise 0.3"]["episodes"] == 1
    assert main(["dataset", "info", str(small_dataset), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unsafe_step_fraction"] == pytest.approx(5 / 9)


def test_episodes_load_back_with_their_provenance(small_dataset):
    dataset = load_dataset(small_dataset)
    assert len(dataset) == 3 and dataset.task == "SafetyPointGoal1-v0" and dataset.env == ENV
    episode = dataset.episode(0)
    np.testing.assert_array_equal(episode["cost"], [0, 0, 1, 0, 2])
    assert dataset.records[1]["policy"] == "checkpoint:runs/a@10"
    assert dataset.records[1]["noise"] == 0.3 and dataset.records[1]["seed"] == 1


def test_loading_checks_the_format_and_its_version(small_dataset):
    meta_path = small_dataset / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "version": VERSION + 1}))
    with pytest.raises(DatasetError, match="update the workbench"):
        load_dataset(small_dataset)
    meta_path.write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(DatasetError, match="not a workbench dataset"):
        load_dataset(small_dataset)
    meta_path.write_text(json.dumps(meta)[:50])
    with pytest.raises(DatasetError, match="damaged"):
        load_dataset(small_dataset)


def test_damaged_or_missing_episode_files_are_clear_errors(small_dataset):
    first = small_dataset / "episodes" / "ep_000000.npz"
    first.write_bytes(first.read_bytes()[:200])  # truncated, as by a full disk
    with pytest.raises(DatasetError, match="ep_000000.npz is damaged"):
        load_dataset(small_dataset).episode(0)
    (small_dataset / "episodes" / "ep_000001.npz").unlink()
    with pytest.raises(DatasetError, match="partial"):
        load_dataset(small_dataset)
    with pytest.raises(DatasetError, match="no dataset"):
        load_dataset(small_dataset / "nowhere")


def test_behaviour_specs_parse_or_say_what_is_expected(tmp_path):
    assert Behaviour.parse("random") == Behaviour(None)
    assert Behaviour.parse(f"{tmp_path}:0.25") == Behaviour(tmp_path, 0.25)
    with pytest.raises(DatasetError, match="RUN:NOISE"):
        Behaviour.parse(f"{tmp_path}:loud")
    with pytest.raises(DatasetError, match="no run or checkpoint"):
        Behaviour.parse(str(tmp_path / "missing"))


# --- LSPC's parts ----------------------------------------------------------------------------


def test_expectile_loss_matches_its_definition():
    from workbench.agents.lspc import expectile_loss

    difference = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    expected = (0.3 * 4 + 0.3 * 0.25 + 0.0 + 0.7 * 1 + 0.7 * 9) / 5
    assert expectile_loss(difference, 0.7).item() == pytest.approx(expected)
    assert expectile_loss(difference, 0.5).item() == pytest.approx(0.5 * difference.square().mean())
    # Its minimiser over a constant is the expectile: above the mean for tau > 0.5.
    targets = torch.tensor([0.0, 0.0, 0.0, 1.0])
    grid = torch.linspace(0, 1, 1001)
    losses = torch.stack([expectile_loss(targets - c, 0.9) for c in grid])
    assert grid[losses.argmin()].item() == pytest.approx(0.75, abs=1e-3)  # 0.9 (1-c) = 3 (0.1 c)


def lspc_agent(**overrides):
    from workbench.agents.lspc import LSPC

    torch.manual_seed(0)
    settings = {"algo": "lspc", "offline.dataset": "unused", "agent.hidden": 64, **overrides}
    config = resolve("tiny", settings)
    return LSPC(config, SimpleNamespace(feature_dim=4), action_dim=2)


def bandit(count: int, seed: int) -> dict[str, torch.Tensor]:
    """One-step transitions from random states. Actions are uniform in [-1, 1]^2; the reward is
    the first action's value; actions with a[0] > 0.5 cost 1 (and their episodes are unsafe)."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(count, 4, generator=generator)
    action = torch.rand(count, 2, generator=generator) * 2 - 1
    cost = (action[:, 0] > 0.5).float()
    return {
        "features": features,
        "next_features": torch.randn(count, 4, generator=generator),
        "action": action,
        "reward": action[:, 0],
        "cost": cost,
        "done": torch.ones(count),
        "safe": 1 - cost,
    }


def test_cvae_reconstructs_held_out_safe_actions_better_than_its_prior():
    agent = lspc_agent()
    generator = torch.Generator().manual_seed(1)

    def safe_actions(count):  # two modes per state: the state alone cannot tell which
        features = torch.randn(count, 4, generator=generator)
        sign = torch.randint(0, 2, (count, 1), generator=generator) * 2 - 1
        return features, (0.3 * features[:, :2] + 0.6 * sign).clamp(-1, 1)

    features, action = safe_actions(2048)
    for _ in range(400):
        index = torch.randint(0, 2048, (128,), generator=generator)
        recon, kl = agent.cvae.losses(features[index], action[index])
        agent.step(agent.cvae_optimizer, (recon + agent.config.lspc.beta * kl).mean())
    features, action = safe_actions(512)  # held out
    with torch.no_grad():
        codes = agent.cvae.encode(features, action).mean
        error_with_code = (agent.cvae.decode(features, codes) - action).square().sum(-1).mean()
        prior = torch.randn(512, agent.cvae.latent_dim, generator=generator)
        error_with_prior = (agent.cvae.decode(features, prior) - action).square().sum(-1).mean()
    assert error_with_code < 0.3 * error_with_prior


def test_the_latent_action_stays_within_its_bound():
    agent = lspc_agent(**{"lspc.latent_bound": 0.5})
    transitions = bandit(256, seed=0)
    with torch.no_grad():
        agent.actor.net[-1].bias.fill_(50.0)  # the network asks for latents far outside
    agent.update(transitions)
    actor = agent.actor
    assert actor.scale.min() < 0.999, "the bound follows the spread of the safe codes"
    offset = (actor.latent(transitions["features"]) - actor.center) / actor.scale
    assert offset.abs().max().item() <= 0.5 + 1e-6
    assert offset.abs().max().item() > 0.49, "the test should push against the bound"
    assert agent.actor.mode(transitions["features"]).abs().max().item() <= 1  # decoded actions


def test_lspc_takes_the_best_safe_actions_where_bc_safe_imitates_them_all():
    from workbench.agents.bc import SafeBehaviourCloning

    lspc = lspc_agent(**{"agent.cost_limit": 1.0})
    bc_safe = SafeBehaviourCloning(lspc.config, SimpleNamespace(feature_dim=4), action_dim=2)
    for update in range(500):
        batch = bandit(128, seed=update)
        lspc.update(batch)
        bc_safe.update(batch)
    test_states = bandit(512, seed=10_000)["features"]
    with torch.no_grad():
        lspc_first = lspc.actor.mode(test_states)[:, 0]
        bc_first = bc_safe.actor.mode(test_states)[:, 0]
    assert bc_first.mean() == pytest.approx(-0.25, abs=0.1)  # the mean of the safe actions
    assert lspc_first.mean() > bc_first.mean() + 0.3, "LSPC should seek reward"
    assert (lspc_first > 0.65).float().mean() < 0.1, "and stay near safe behaviour"


def test_lspc_learns_its_cvae_from_the_safest_data_when_no_episode_is_safe():
    """d = 2 on a weak dataset: not one episode within the limit. The CVAE still learns, from
    each batch's safest tenth by the cost critic, and says so."""
    agent = lspc_agent()

    def unsafe_bandit(count: int, seed: int) -> dict[str, torch.Tensor]:
        return {**bandit(count, seed), "safe": torch.zeros(count)}

    before = copy.deepcopy(agent.cvae.state_dict())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = agent.update(unsafe_bandit(256, seed=0))
    after = agent.cvae.state_dict()
    assert any(not torch.equal(value, after[key]) for key, value in before.items()), (
        "the CVAE learnt nothing"
    )
    assert metrics["lspc/cvae_fallback"] == 1 and metrics["lspc/episode_safe_fraction"] == 0
    assert any("safest 10%" in str(warning.message) for warning in caught)
    for update in range(1, 300):
        agent.update(unsafe_bandit(128, seed=update))
    batch = unsafe_bandit(512, seed=10_000)
    chosen, fallback = agent.cvae_data(batch)
    assert fallback and chosen.sum() == math.ceil(0.1 * 512)
    assert batch["cost"].mean() > 0.2  # a quarter of the actions cost 1
    assert batch["cost"][chosen > 0].mean() < 0.05, "the CVAE should learn the safest actions"


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.mark.parametrize("safe", [1.0, 0.0])
def test_lspc_update_creates_every_tensor_on_its_device(device, safe):
    agent = lspc_agent().to(device)
    batch = {key: value.to(device) for key, value in bandit(64, seed=0).items()}
    batch["safe"] = torch.full_like(batch["safe"], safe)
    with DeviceCheck(device) as check, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):  # the second step finds Adam's state in place
            agent.update(batch)
    assert not check.strays, check.strays[:5]


# --- the offline loop ------------------------------------------------------------------------


@pytest.fixture
def fake_dataset(fake_envs, monkeypatch, tmp_path):
    """A dataset of random behaviour collected from the fast fake task (2 episodes x 50 steps)."""
    monkeypatch.setattr(workbench.envs, "make_env", fake_env)
    return build_dataset(
        "SafetyPointGoal1-v0",
        tmp_path / "data",
        2,
        [Behaviour(None)],
        time_limit=100,
        progress=False,
    )


def offline_config(dataset, algo: str = "lspc", **overrides):
    return resolve(
        "tiny", {"algo": algo, "offline.dataset": str(dataset), "train.device": "cpu", **overrides}
    )


def test_offline_training_publishes_like_the_engine(fake_dataset, tmp_path):
    from workbench.checkpoint import load_agent

    config = offline_config(fake_dataset, **{"train.snapshot_every": 3})
    recorder = Recorder()
    engine = Engine(config, tmp_path / "run", [recorder], progress=False)
    assert engine.train() == "finished"
    calls = recorder.calls
    model, agent = config.offline.model_updates, config.lspc.updates
    assert calls[0] == "on_train_start" and calls[-1] == "on_train_end"
    assert calls.count("on_world_model_update") == model
    assert calls.count("on_agent_update") == model + agent
    # Snapshots while the world model learns, one after the agent has, then checkpoint and eval.
    assert calls.count("on_snapshot") == model // 3 + 1
    assert calls[-4:-1] == ["on_snapshot", "on_checkpoint", "on_evaluation"]

    run = Run(tmp_path / "run")
    assert run.status == "finished" and run.config()["env"]["time_limit"] == 100
    assert run.metrics("eval") and run.evaluations() and run.checkpoints()
    loaded = load_agent(tmp_path / "run")  # what `workbench eval` and the viewers load
    assert type(loaded.agent).__name__ == "LSPC" and loaded.step == model + agent
    snapshot = run.snapshots()[-1].load()
    assert {"unsafe", "cost", "value", "cost_value", "imag_frames"} <= set(snapshot)
    assert snapshot["cvae_latent"].shape == (len(snapshot["features"]), config.lspc.latent_dim)
    actor = loaded.agent.actor
    offset = (snapshot["policy_latent"] - actor.center.numpy()) / actor.scale.numpy()
    assert np.abs(offset).max() <= config.lspc.latent_bound + 1e-5


def test_baselines_can_reuse_the_world_model_of_another_offline_run(fake_dataset, tmp_path):

    Engine(offline_config(fake_dataset, "bc-all"), tmp_path / "a", progress=False).train()
    config = offline_config(fake_dataset, "bc-safe", **{"offline.world_model": str(tmp_path / "a")})
    engine = Engine(config, tmp_path / "b", progress=False)
    assert engine.train() == "finished"
    first, second = (torch.load(Run(tmp_path / r).checkpoints()[-1].path) for r in "ab")
    for key, value in first["world_model"].items():
        torch.testing.assert_close(second["world_model"][key], value)
    assert second["step"] == config.lspc.updates  # no world-model updates this time


def test_train_asks_for_a_dataset_exactly_when_the_algo_needs_one(fake_dataset, tmp_path, capsys):
    assert main(["train", "--algo", "lspc", "--preset", "tiny"]) == 2
    assert "give --dataset PATH" in capsys.readouterr().err
    args = ["train", "--algo", "dreamer", "--preset", "tiny", "--dataset", str(fake_dataset)]
    assert main(args) == 2
    assert "learns online" in capsys.readouterr().err
    args = [
        "train",
        "--algo",
        "bc-all",
        "--dataset",
        str(fake_dataset),
        "--task",
        "SafetyCarGoal1-v0",
    ]
    assert main(args) == 2
    assert "collected on SafetyPointGoal1-v0" in capsys.readouterr().err


@pytest.mark.real
def test_end_to_end_on_the_real_task(tmp_path):
    """Build a small dataset from SafetyPointGoal1 pixels, train LSPC briefly, evaluate it."""
    from workbench.evaluation import evaluate_run

    data = build_dataset(
        "SafetyPointGoal1-v0",
        tmp_path / "data",
        2,
        [Behaviour(None)],
        action_repeat=2,
        time_limit=60,
        progress=False,
    )
    assert summarise(data)["steps"] == 60
    engine = Engine(offline_config(data), tmp_path / "run", progress=False)
    assert engine.train() == "finished"
    evaluation = Run(tmp_path / "run").metrics("eval")[-1]
    assert evaluation["length"] == 31  # 30 steps and the final frame
    report = evaluate_run(tmp_path / "run", episodes=1)
    assert report["episodes"] == 1 and np.isfinite(report["return_mean"])
