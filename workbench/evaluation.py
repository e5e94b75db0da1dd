"""Real episodes, step by step, and what they say about a trained run: return, cost, and how
well the world model knows the task (`world_model_health`).

`play_episode` is the one loop that plays an episode with a world model and an agent; the engine's
evaluation, `workbench eval`, dataset building and the viewers all use it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.agents.base import AgentLike
from workbench.config import EnvConfig
from workbench.device import single_threaded
from workbench.envs import PixelEnv, make_env
from workbench.world_model import WorldModel

HELD_OUT_SEED = 20_000  # training uses seeds below this; evaluation episodes never trained on


@torch.no_grad()
@single_threaded()
def play_episode(
    env: PixelEnv,
    world_model: WorldModel,
    agent: AgentLike,
    *,
    explore: bool,
    seed: int | None = None,
    noise: float = 0.0,
) -> dict[str, np.ndarray]:
    """Play one episode, recording per frame: the frame, its reconstruction, the action chosen
    there, the reward and cost received on arriving there and their predictions, whether the
    episode terminated there, the simulator's distance to the nearest hazard (ground truth),
    ensemble disagreement, and the agent's own values (`inspect`).
    `noise`: standard deviation of Gaussian noise added to every action (behaviour datasets)."""
    device = next(world_model.parameters()).device
    obs = env.reset(seed=seed)
    latent = world_model.initial(1)
    action = torch.zeros(1, env.action_dim, device=device)
    is_first = torch.ones(1, dtype=torch.bool, device=device)
    steps: list[dict[str, np.ndarray]] = []
    reward = cost = 0.0
    done = terminal = False
    while True:
        frame = torch.as_tensor(obs[None], device=device)
        latent = world_model.observe_step(latent, action, frame, is_first)
        features = latent.features()
        action = agent.act(latent, explore=explore).float()
        if noise:
            action = (action + noise * torch.randn_like(action)).clamp(-1, 1)
        steps.append({
            "frame": obs,
            "recon": (world_model.decode(features)[0].clamp(0, 1) * 255).byte().cpu().numpy(),
            "action": action[0].cpu().numpy(),
            "reward": np.float32(reward),
            "cost": np.float32(cost),
            "terminal": np.bool_(terminal),
            "hazard_distance": np.float32(env.hazard_distance()),
            "pred_reward": world_model.reward(features)[0].cpu().numpy(),
            "pred_cost": world_model.cost(features)[0].cpu().numpy(),
            "disagreement": world_model.disagreement(latent, action)[0].cpu().numpy(),
            **{k: v[0].cpu().numpy() for k, v in agent.inspect(features).items()},
        })  # fmt: skip
        if done:
            break  # the final frame is recorded; its action is never taken
        low, high = env.action_low, env.action_high
        result = env.step(low + (action[0].cpu().numpy() + 1) / 2 * (high - low))
        obs, reward, cost = result.obs, result.reward, result.cost
        terminal, done = result.terminated, result.terminated or result.truncated
        is_first[:] = False
    return {key: np.stack([s[key] for s in steps]) for key in steps[0]}


def play_episodes(
    env_config: EnvConfig,
    world_model: WorldModel,
    agent: AgentLike,
    *,
    episodes: int,
    seed: int,
    explore: bool,
    make: Callable[[EnvConfig], PixelEnv] | None = None,
) -> list[dict[str, np.ndarray]]:
    """`episodes` episodes (seeds `seed`, `seed + 1`, ...) in one env that `make` builds
    (by default `make_env`)."""
    env = (make or make_env)(env_config)
    try:
        return [
            play_episode(env, world_model, agent, explore=explore, seed=seed + index)
            for index in range(episodes)
        ]
    finally:
        env.close()


def episode_summary(episode: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        "return": float(episode["reward"].sum()),
        "cost": float(episode["cost"].sum()),
        "length": float(len(episode["reward"])),
    }


def evaluate_run(
    run_dir: str | Path,
    episodes: int = 3,
    device: str = "cpu",
    explore: bool = True,
    make: Callable[[EnvConfig], PixelEnv] | None = None,
) -> dict[str, Any]:
    """Play `episodes` held-out episodes with the run's newest checkpoint; their return and cost
    and the world model's health on them."""
    from workbench.checkpoint import load_agent

    loaded = load_agent(run_dir, device)
    torch.manual_seed(HELD_OUT_SEED)  # sampled actions too: the same command, the same numbers
    config = loaded.config
    played = play_episodes(
        config.env,
        loaded.world_model,
        loaded.agent,
        episodes=episodes,
        seed=HELD_OUT_SEED,
        explore=explore,
        make=make,
    )
    summaries = [episode_summary(episode) for episode in played]
    return {
        "checkpoint_step": loaded.step,
        "episodes": episodes,
        "cost_limit": config.agent.cost_limit,
        **_spread("return", [s["return"] for s in summaries]),
        **_spread("cost", [s["cost"] for s in summaries]),
        **world_model_health(played),
    }


def world_model_health(episodes: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """How well the world model knows the task, on played episodes (`play_episode`):

    - reward_r2 = 1 - MSE / Var of the reward head against the real reward, reward_corr their
      correlation, reward_spread the ratio of their standard deviations (a flat head: ~0);
    - cost_auroc of the cost head against the safety label (cost > 0), unsafe_pred_cost its mean
      prediction on unsafe steps (unsafe_true_cost: the real mean there);
    - recon_mse per pixel, and object_error: the mean absolute error of the reconstruction on the
      pixels of hazards and the goal (`object_mask`), the objects the agent must see;
    - action_std: the spread of the actor's actions over the episodes (0: one fixed action);
    - hazard_corr_*: correlation of the predicted cost (and of every agent value, such as the
      barrier) with the simulator's distance to the nearest hazard, where it was recorded.
    None where a number is undefined (no unsafe step, no object in view, no variance).
    """
    from sklearn.metrics import roc_auc_score

    def cat(key: str) -> np.ndarray:
        return np.concatenate([np.asarray(e[key], dtype=np.float64) for e in episodes])

    reward, pred_reward = cat("reward"), cat("pred_reward")
    cost, pred_cost = cat("cost"), cat("pred_cost")
    unsafe = cost > 0
    frames = np.concatenate([e["frame"] for e in episodes])
    recons = np.concatenate([e["recon"] for e in episodes])
    mask = object_mask(frames)
    error = np.abs(frames.astype(np.float32) - recons.astype(np.float32)).mean(-1) / 255
    health: dict[str, Any] = {
        "steps": int(len(reward)),
        "unsafe_steps": int(unsafe.sum()),
        "reward_r2": _r2(reward, pred_reward),
        "reward_corr": _corr(reward, pred_reward),
        "reward_spread": float(pred_reward.std() / reward.std()) if reward.std() > 0 else None,
        "cost_auroc": float(roc_auc_score(unsafe, pred_cost))
        if 0 < unsafe.sum() < len(unsafe)
        else None,
        "unsafe_pred_cost": float(pred_cost[unsafe].mean()) if unsafe.any() else None,
        "unsafe_true_cost": float(cost[unsafe].mean()) if unsafe.any() else None,
        "recon_mse": float(np.mean(((frames - recons.astype(np.float32)) / 255) ** 2)),
        "object_error": float(error[mask].mean()) if mask.any() else None,
        "action_std": float(cat("action").std(0).mean()),
    }
    if "hazard_distance" in episodes[0]:
        distance = cat("hazard_distance")
        for key in ("pred_cost", *AGENT_VALUES):
            if key in episodes[0]:
                health[f"hazard_corr_{key}"] = _corr(distance, cat(key))
    return health


AGENT_VALUES = ("barrier", "cost_value")
"""Per-step agent values (`Agent.inspect`) whose relation to the hazard distance is reported."""


def object_mask(frames: np.ndarray) -> np.ndarray:
    """[..., H, W] True on the pixels of hazards (translucent blue discs) and of the goal (green)
    in uint8 frames [..., H, W, 3] of Safety-Gymnasium's navigation tasks, told by colour: cheaper
    than a second, segmentation rendering of every step, and exact enough for these flat colours.
    """
    r, g, b = (frames[..., i].astype(np.int16) for i in range(3))
    hazard = (b > 170) & (b - r > 50) & (r > 60)
    goal = (g > r + 40) & (g > b + 20)
    return hazard | goal


def _r2(truth: np.ndarray, prediction: np.ndarray) -> float | None:
    variance = truth.var()
    return float(1 - np.mean((truth - prediction) ** 2) / variance) if variance > 0 else None


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _spread(name: str, values: list[float]) -> dict[str, float]:
    return {f"{name}_mean": float(np.mean(values)), f"{name}_std": float(np.std(values))}
