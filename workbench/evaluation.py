"""Evaluate a trained run on held-out episodes: return, cost, and how well the world model
predicts cost (AUROC of the cost head against the real safety label, cost > 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.checkpoint import load_agent
from workbench.engine import episode_summary, play_episode
from workbench.envs import make_env

HELD_OUT_SEED = 20_000  # training uses seeds below this; evaluation episodes never trained on


def evaluate_run(
    run_dir: str | Path, episodes: int = 3, device: str = "cpu", explore: bool = True
) -> dict[str, Any]:
    loaded = load_agent(run_dir, device)
    torch.manual_seed(HELD_OUT_SEED)  # sampled actions too: the same command, the same numbers
    config = loaded.config
    env = make_env(
        config.env.task,
        image_size=config.env.image_size,
        action_repeat=config.env.action_repeat,
        render=config.env.render,
        time_limit=config.env.time_limit,
    )
    try:
        played = [
            play_episode(
                env, loaded.world_model, loaded.agent, explore=explore, seed=HELD_OUT_SEED + i
            )
            for i in range(episodes)
        ]
    finally:
        env.close()
    summaries = [episode_summary(episode) for episode in played]
    return {
        "checkpoint_step": loaded.step,
        "episodes": episodes,
        "cost_limit": config.agent.cost_limit,
        **_spread("return", [s["return"] for s in summaries]),
        **_spread("cost", [s["cost"] for s in summaries]),
        **cost_prediction_quality(played),
    }


def cost_prediction_quality(episodes: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """AUROC of predicted cost against the safety label, and per-pixel reconstruction error."""
    from sklearn.metrics import roc_auc_score

    labels = np.concatenate([e["cost"] for e in episodes]) > 0
    scores = np.concatenate([e["pred_cost"] for e in episodes])
    both_classes = 0 < labels.sum() < len(labels)
    frames = np.concatenate([e["frame"] for e in episodes]).astype(np.float32) / 255
    recons = np.concatenate([e["recon"] for e in episodes]).astype(np.float32) / 255
    return {
        "steps": int(len(labels)),
        "unsafe_steps": int(labels.sum()),
        "cost_auroc": float(roc_auc_score(labels, scores)) if both_classes else None,
        "recon_mse": float(np.mean((frames - recons) ** 2)),
    }


def _spread(name: str, values: list[float]) -> dict[str, float]:
    return {f"{name}_mean": float(np.mean(values)), f"{name}_std": float(np.std(values))}
