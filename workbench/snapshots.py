"""Snapshots: what the world model and the agent make of the data, saved every N updates so the
viewers (`workbench.inspect`, the dashboard, the notebook widgets) can show it.

Every `train.snapshot_every` world-model updates, the engine asks its `Snapshotter`, which:
1. Picks up to `latents` posterior states of the update's training batch at random ([B, T] -> [M]).
2. Labels each with what really happened (the cost and reward received on arriving there,
   unsafe = cost > 0, its frame, where it sits in the batch) and with what the models make of it
   (the predicted cost, the agent's `inspect` values, and the ensemble's disagreement about the
   next transition under the policy's action).
3. Imagines rollouts of `agent.horizon` steps from `starts` of those states under the current
   policy, recording per step the predicted reward and cost, the disagreement, the `inspect`
   values and the decoded frames.
4. Hands the arrays to the engine, which saves them atomically as RUN/snapshots/snap_<update:08d>.npz
   and emits a `Snapshot` event (`Engine.snapshot`).

It works on a copy of torch's random state, so training with snapshots follows exactly the same
path as training without them.

The file (the contract with the viewers; `workbench.runs.SNAPSHOT_KEYS`):
    step, update                 int64 0-d    env steps and updates when it was taken
    features                     float16 [M, F]  posterior features (deter + stoch)
    unsafe                       bool [M]     cost > 0
    cost, reward, pred_cost      float32 [M]  real cost and reward on arriving there; predicted cost
    time, sequence               int32 [M]    index within its training sequence; which sequence
    frame                        uint8 [M, H, W, 3]  the real frame
    disagreement                 float32 [M]  disagreement of the next transition under the policy
    <name>                       float32 [M]  each value of agent.inspect: value, cost_value (, barrier)
    imag_start                   int32 [N]    index into the M latents each rollout starts from
    imag_reward, imag_cost       float32 [H+1, N]
    imag_disagreement            float32 [H, N]
    imag_<name>                  float32 [H+1, N]  agent.inspect values along the rollouts
    imag_frames                  uint8 [H+1, N, H, W, 3]  decoded frames
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workbench.device import autocast
from workbench.hooks import Trainer
from workbench.replay import GROUND_TRUTH
from workbench.world_model import Latent


class Snapshotter:
    """Takes snapshots of what the engine's models make of its batches; `seconds` is the time
    spent doing so."""

    def __init__(self, engine: Trainer, latents: int = 256, starts: int = 8):
        self.engine = engine
        self.latents = latents
        self.starts = starts
        self.seconds = 0.0
        self.rng = np.random.default_rng(engine.config.train.seed)

    def take(self, batch: dict[str, Tensor], posterior: Latent) -> dict[str, np.ndarray]:
        """The snapshot's arrays (all but step and update) from a batch and its posterior [B, T]."""
        start = time.perf_counter()
        engine = self.engine
        length = posterior.deter.shape[1]
        chosen = self.rng.permutation(posterior.deter.shape[0] * length)[: self.latents]  # 1
        index = torch.as_tensor(chosen, device=engine.device)
        latent = posterior.map(lambda x: x.flatten(0, 1)[index])
        keys = ("obs", "cost", "reward", *(k for k in GROUND_TRUTH if k in batch))
        real = {key: batch[key].flatten(0, 1)[index] for key in keys}
        starts = np.arange(min(self.starts, len(chosen)))  # the latents are in random order
        devices = [engine.device] if engine.device.type == "cuda" else []
        with (
            torch.no_grad(),
            torch.random.fork_rng(devices),
            autocast(engine.device, engine.config.train.precision),
        ):
            arrays = self._label(latent, real)  # 2
            arrays.update(self._imagine(latent.map(lambda x: x[starts])))  # 3
        arrays["time"] = (chosen % length).astype(np.int32)
        arrays["sequence"] = (chosen // length).astype(np.int32)
        arrays["imag_start"] = starts.astype(np.int32)
        self.seconds += time.perf_counter() - start
        return arrays

    def _label(self, latent: Latent, real: dict[str, Tensor]) -> dict[str, np.ndarray]:
        """What happened at each latent [M] and what the models make of it."""
        world_model, agent = self.engine.world_model, self.engine.agent
        features = latent.features()
        action = agent.actor.mode(features)
        return {
            "features": _numpy(features, np.float16),
            "unsafe": _numpy(real["cost"] > 0, bool),
            "cost": _numpy(real["cost"]),
            "reward": _numpy(real["reward"]),
            "pred_cost": _numpy(world_model.cost(features)),
            "frame": _numpy(real["obs"], np.uint8),
            "disagreement": _numpy(world_model.disagreement(latent, action)),
            **{name: _numpy(value) for name, value in agent.inspect(features).items()},
            **{key: _numpy(real[key]) for key in GROUND_TRUTH if key in real},
        }

    def _imagine(self, start: Latent) -> dict[str, np.ndarray]:
        """Rollouts from `start` [N] under the current policy, with decoded frames."""
        world_model, agent = self.engine.world_model, self.engine.agent
        imagination = agent.imagine_from(start)
        features = imagination.features
        frames = world_model.decode(features) * 255
        arrays = {
            "imag_reward": _numpy(imagination.reward),
            "imag_cost": _numpy(imagination.cost),
            "imag_disagreement": _numpy(imagination.disagreement),
            "imag_frames": _numpy(frames.round(), np.uint8),
        }
        arrays.update({f"imag_{k}": _numpy(v) for k, v in agent.inspect(features).items()})
        return arrays


def _numpy(tensor: Tensor, dtype: Any = np.float32) -> np.ndarray:
    if tensor.is_floating_point():
        tensor = tensor.float()  # numpy has no bfloat16
    return tensor.cpu().numpy().astype(dtype)
