"""Offline data: learn from a dataset (`workbench/datasets.py`) without acting in the env, then
evaluate in it.

    workbench train --algo lspc --dataset data/goal1 --preset cpu --run-dir runs/lspc
    Engine(resolve("cpu", {"algo": "lspc", "offline.dataset": "data/goal1"}), "runs/lspc").train()

`DatasetSource` is the engine's data source for the offline algos (`engine.Source`; the online
one is `collector.EnvSource`). The engine's loop is the same; what it is given, update by update:
1. The dataset, loaded (the run's env settings are the dataset's) into a replay.
2. For the first `offline.model_updates` updates, sequences: the world model learns from them,
   as online, while the agent waits. (None when `offline.world_model` names another offline
   run on the same dataset, whose world model is reused.)
3. Then every episode, encoded once into posterior features by the trained world model.
4. For the next `lspc.updates` updates, minibatches of those transitions (features, action,
   reward, cost, next features, done, safe), safe meaning that the transition's episode cost is
   within `agent.cost_limit`; the offline agent (`lspc`, `bc-all`, `bc-safe`; see
   `agents/base.py: OfflineAgent`) learns from them.
5. As training finishes, a snapshot of the dataset's latents with the agent's latent codes
   (when snapshots are on); the engine then saves the checkpoint and plays the evaluation
   episodes in the real env, so viewers, `workbench eval` and `checkpoint.load_agent` work
   unchanged.

Offline there are no env steps: a step is an update (the run's `train.steps` is the number of
updates, with no prefill and an update every step), and events' `step`s count updates.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from workbench import checkpoint
from workbench.agents.base import Batch, OfflineAgent
from workbench.config import Config
from workbench.datasets import load_dataset
from workbench.device import autocast
from workbench.hooks import Event, Trainer
from workbench.replay import Replay
from workbench.runs import RunError, RunWriter
from workbench.snapshots import Snapshotter


class DatasetSource:
    """Offline data: a dataset's episodes, as sequences while the world model learns, then as
    encoded transitions while the agent does."""

    def __init__(self, config: Config) -> None:
        self.dataset = load_dataset(config.offline.dataset)  # 1
        self.model_updates = 0 if config.offline.world_model else config.offline.model_updates
        steps = self.model_updates + config.lspc.updates
        self.config = dataclasses.replace(
            config,
            env=dataclasses.replace(config.env, task=self.dataset.task, **self.dataset.env),
            train=dataclasses.replace(config.train, steps=steps, prefill=0, train_every=1),
        )
        self.action_dim: int = self.dataset.meta["action_dim"]
        self.transitions: dict[str, Tensor] | None = None

    def open(self, writer: RunWriter) -> None:
        """The dataset's episodes, one after another in the replay's one stream."""
        self.replay = Replay(writer, 1, self.config.train.seed)
        self.episode_bounds = []  # (start, stop) of each episode in the stream
        stream = self.replay.streams[0]
        for episode in self.dataset.episodes():
            start = stream.size
            stream.extend(episode)
            self.episode_bounds.append((start, stream.size))

    def start(self, trainer: Trainer) -> None:
        assert isinstance(trainer.agent, OfflineAgent), "the config's checks pair them"
        self.trainer, self.agent = trainer, trainer.agent
        if self.config.offline.world_model:
            self._reuse_world_model(Path(self.config.offline.world_model))

    def next(self) -> list[Event]:
        """Nothing happens in an env: a step is an update."""
        self.trainer.counters["step"] += 1
        return []

    def batch(self, update: int) -> Batch:
        if update <= self.model_updates:
            return Batch(sequences=self._sequences(self.config.train.batch_length))  # 2
        if self.transitions is None:
            self.transitions = self._encode_dataset()  # 3
        count = len(self.transitions["action"])
        index = torch.randint(count, (self.config.offline.batch_size,), device=self.device)
        return Batch(transitions={k: v[index] for k, v in self.transitions.items()})  # 4

    def updated(self, update: int) -> None:
        """Nothing to follow the learner."""

    def paused(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # nothing runs beside the learner

    def stop(self) -> None:
        """Nothing runs beside the learner."""

    def close(self) -> None:
        """No envs to close."""

    # --- the world model, then the agent ------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.trainer.device

    def _reuse_world_model(self, run_dir: Path) -> None:
        state = checkpoint.load_latest(run_dir, self.device)
        other = Config.from_dict(state["config"])
        if Path(other.offline.dataset).resolve() != Path(self.config.offline.dataset).resolve():
            raise RunError(
                f"offline.world_model: {run_dir} learnt from {other.offline.dataset}, "
                f"not from {self.config.offline.dataset}"
            )
        if other.model != self.config.model:
            raise RunError(f"offline.world_model: {run_dir} has other model.* settings")
        self.trainer.world_model.load_state_dict(state["world_model"])

    @torch.no_grad()
    def _encode_dataset(self) -> dict[str, Tensor]:
        """Every transition of the dataset, t -> t+1 within an episode, as tensors [N, ...]."""
        stream, limit = self.replay.streams[0], self.config.agent.cost_limit
        world_model, parts = self.trainer.world_model, []
        for (start, stop), record in zip(self.episode_bounds, self.dataset.records, strict=True):
            episode = self._tensors({k: v[None] for k, v in stream.slice(start, stop).items()})
            with autocast(self.device, self.config.train.precision):
                posterior, _ = world_model.observe(
                    episode["obs"], episode["action"], episode["is_first"]
                )
            features = posterior.features()[0].float()
            arrived = {key: value[0, 1:] for key, value in episode.items()}
            parts.append({
                "features": features[:-1],
                "next_features": features[1:],
                "action": arrived["action"],
                "reward": arrived["reward"],
                "cost": arrived["cost"],
                "done": arrived["is_terminal"].float(),
                "safe": torch.full_like(arrived["reward"], float(record["cost"] <= limit)),
            })  # fmt: skip
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}

    def last_snapshot(self, snapshotter: Snapshotter) -> dict[str, np.ndarray]:
        """The latents of a batch of dataset states, labelled as the online snapshots are
        (`snapshots.py`), plus the agent's `latent_codes` of the action taken in each."""
        # One step more than a snapshot uses, so each state's next action (the one taken there)
        # is in the batch; at an episode's last state it is the next episode's zero action.
        batch = self._sequences(self.config.train.batch_length + 1)  # 5
        with torch.no_grad(), autocast(self.device, self.config.train.precision):
            posterior, _ = self.trainer.world_model.observe(
                batch["obs"], batch["action"], batch["is_first"]
            )
        arrays = snapshotter.take(
            {key: value[:, :-1] for key, value in batch.items()}, posterior.map(lambda x: x[:, :-1])
        )
        sequence, time = arrays["sequence"], arrays["time"]
        features = posterior.features()[sequence, time].float()
        taken = batch["action"][sequence, time + 1]
        codes = self.agent.latent_codes(features, taken)
        arrays.update({name: value.float().cpu().numpy() for name, value in codes.items()})
        return arrays

    def _sequences(self, length: int) -> dict[str, Tensor]:
        return self._tensors(self.replay.sample(self.config.train.batch_size, length))

    def _tensors(self, arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
        return {key: torch.as_tensor(value, device=self.device) for key, value in arrays.items()}
