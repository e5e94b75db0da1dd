"""One update of every algorithm on every device this machine has (CPU always; CUDA when present),
in the precision each device uses by default: a tensor built on the wrong device fails here.

On CPU the update runs with "meta" as torch's default device, so a tensor built inside it without
naming its device (CUDA's first-update crash: `torch.quantile`'s q on the CPU) fails here too."""

from __future__ import annotations

import contextlib

import pytest
import torch

from workbench.agents import make_agent
from workbench.config import ALGOS, OFFLINE_ALGOS, resolve
from workbench.device import autocast, resolve_device
from workbench.world_model import WorldModel

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
ONLINE = [algo for algo in ALGOS if algo not in OFFLINE_ALGOS]
ACTION_DIM = 2


def batch_on(device: torch.device, batch: int = 2, length: int = 8) -> dict[str, torch.Tensor]:
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    cost = (torch.rand(batch, length) < 0.3).float()
    arrays = {
        "obs": torch.randint(0, 256, (batch, length, 64, 64, 3), dtype=torch.uint8),
        "action": torch.rand(batch, length, ACTION_DIM) * 2 - 1,
        "reward": torch.randn(batch, length) * 0.1,
        "cost": cost,
        "is_first": is_first,
        "is_terminal": torch.zeros(batch, length, dtype=torch.bool),
    }
    return {key: value.to(device) for key, value in arrays.items()}


def off_default_device(device: torch.device):
    """A context in which a tensor built without a device lands on "meta" (not `device`), so
    mixing it with the update's tensors raises, even where `device` is the CPU."""
    return torch.device("meta") if device.type == "cpu" else contextlib.nullcontext()


def build(algo: str, device: torch.device, **overrides):
    config = resolve("tiny", {"algo": algo, "train.device": device.type, **overrides})
    world_model = WorldModel(config.model, ACTION_DIM, config.env.image_size).to(device)
    agent = make_agent(config, world_model, ACTION_DIM).to(device)
    return config, world_model, agent


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("algo", ONLINE)
def test_one_update_of_every_online_algo(algo: str, device_name: str) -> None:
    device = resolve_device(device_name)
    config, world_model, agent = build(algo, device)
    batch = batch_on(device)
    with autocast(device, config.train.precision), off_default_device(device):
        metrics, posterior = world_model.train_step(batch)
        latent = posterior.map(lambda x: x[:, -1])
        action = agent.act(latent, explore=True)
        agent.episode_end(5.0)
        result = agent.update(posterior, batch)
    assert action.device.type == device.type and action.shape == (2, ACTION_DIM)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert result.imagination.features.device.type == device.type
    assert result.metrics, "an update reports its metrics"


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("algo", OFFLINE_ALGOS)
def test_one_update_of_every_offline_algo(algo: str, device_name: str) -> None:
    device = resolve_device(device_name)
    config, world_model, agent = build(algo, device, **{"offline.dataset": "unused"})
    count = 16
    features = torch.randn(count, world_model.feature_dim, device=device)
    transitions = {
        "features": features,
        "action": torch.rand(count, ACTION_DIM, device=device) * 2 - 1,
        "reward": torch.randn(count, device=device),
        "cost": (torch.rand(count, device=device) < 0.3).float(),
        "next_features": torch.randn_like(features),
        "done": torch.zeros(count, device=device),
        "safe": (torch.rand(count, device=device) < 0.7).float(),
    }
    with autocast(device, config.train.precision), off_default_device(device):
        metrics = agent.update(transitions)
    assert metrics and all(v == v for v in metrics.values() if isinstance(v, float))
