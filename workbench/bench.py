"""`workbench bench`: how fast the pieces run on this machine, in numbers.

Env steps/s (pixels; 1 and N envs; stock and fast rendering), world-model updates/s and
samples/s (sequence steps per second), imagination steps/s (latent states per second) and agent
updates/s, for a preset's sizes on a device.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from workbench.agents import make_agent
from workbench.config import resolve
from workbench.device import autocast, resolve_device
from workbench.envs import bench_envs
from workbench.world_model import WorldModel


def run_bench(preset: str = "cpu", device: str = "auto", num_envs: int = 2) -> dict[str, Any]:
    config = resolve(preset, {"train.device": device})
    dev = resolve_device(device)
    results: dict[str, Any] = {
        "preset": preset,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "batch": f"{config.train.batch_size}x{config.train.batch_length}",
        "horizon": config.agent.horizon,
    }
    results.update(bench_envs(config.env.task, num_envs=num_envs, image_size=config.env.image_size))
    results.update(_bench_learning(config, dev))
    return results


def _bench_learning(config, device: torch.device, repeats: int = 5) -> dict[str, float]:
    action_dim = 2
    world_model = WorldModel(config.model, action_dim, config.env.image_size).to(device)
    agent = make_agent(config, world_model, action_dim).to(device)
    batch = _random_batch(config, action_dim, device)
    precision = config.train.precision

    def wm_step():
        with autocast(device, precision):
            return world_model.train_step(batch)[1]

    def agent_step():
        with autocast(device, precision):
            agent.update(posterior, batch)

    def imagine():
        with torch.no_grad(), autocast(device, precision):
            agent.imagine(posterior)

    posterior = wm_step()  # warm-up (and a posterior to start imagination from)
    agent_step()
    samples = config.train.batch_size * config.train.batch_length
    starts = config.agent.imagine_starts or samples
    wm_rate = _rate(wm_step, repeats, device)
    return {
        "wm_updates_per_s": wm_rate,
        "wm_samples_per_s": wm_rate * samples,
        "imagination_steps_per_s": _rate(imagine, repeats, device) * starts * config.agent.horizon,
        "agent_updates_per_s": _rate(agent_step, repeats, device),
    }


def _rate(fn, repeats: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats / (time.perf_counter() - start)


def _random_batch(config, action_dim: int, device: torch.device) -> dict[str, torch.Tensor]:
    b, t, s = config.train.batch_size, config.train.batch_length, config.env.image_size
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    batch = {
        "obs": torch.randint(0, 255, (b, t, s, s, 3), dtype=torch.uint8),
        "action": torch.rand(b, t, action_dim) * 2 - 1,
        "reward": torch.rand(b, t),
        "cost": (torch.rand(b, t) < 0.1).float(),
        "is_first": is_first,
        "is_terminal": torch.zeros(b, t, dtype=torch.bool),
    }
    return {key: value.to(device) for key, value in batch.items()}
