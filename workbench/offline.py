"""Offline training: learn from a dataset (`workbench/datasets.py`) without acting in the env,
then evaluate in it.

    workbench train --algo lspc --dataset data/goal1 --preset cpu --run-dir runs/lspc
    OfflineEngine(resolve("cpu", {"algo": "lspc", "offline.dataset": "data/goal1"}), "runs/lspc").train()

The loop, top to bottom (`OfflineEngine._collect_and_train`):
1. Load the dataset (the run's env settings are the dataset's) and fill a replay with its episodes.
2. Train the world model on the dataset's sequences, as the online engine does, or reuse the one
   of another offline run on the same dataset (`offline.world_model`).
3. Encode every episode into posterior features with the trained world model.
4. Train the offline agent (`lspc`, `bc-all`, `bc-safe`; see `agents/base.py: OfflineAgent`),
   `lspc.updates` times, on minibatches of transitions (features, action, reward, cost, next
   features, done, safe), safe meaning that the transition's episode cost is within
   `agent.cost_limit`.
5. Snapshot the dataset's latents with the agent's latent codes (when snapshots are on); then,
   as training ends, the built-in hooks save the checkpoint and play the evaluation episodes in
   the real env.

`OfflineEngine` is the online `Engine` with its data source and its loop replaced: it keeps the
run directory, the hooks (metrics, checkpoints, evaluation, snapshots, yours), `evaluate` and
`save_checkpoint`, so viewers, `workbench eval` and `checkpoint.load_agent` work unchanged.
Offline there are no env steps: an event's `step` counts gradient updates (world model, then
agent). While the world model trains, each of its updates is followed by an AgentUpdate with no
metrics (the agent waits), so per-update hooks (metrics averaging, progress) keep counting.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workbench import checkpoint
from workbench.config import Config
from workbench.datasets import load_dataset
from workbench.device import autocast
from workbench.engine import Engine
from workbench.hooks import AgentUpdate, ProgressBar, TrainStart
from workbench.replay import Replay
from workbench.runs import RunError
from workbench.world_model import WorldModel


class OfflineEngine(Engine):
    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        hooks: list[Any] | None = None,
        *,
        resume: bool = False,
        progress: bool = True,
    ):
        if resume:
            raise RunError("an offline run cannot be resumed; train it again into a new --run-dir")
        self.dataset = load_dataset(config.offline.dataset)  # 1
        config = dataclasses.replace(
            config, env=dataclasses.replace(config.env, task=self.dataset.task, **self.dataset.env)
        )
        progress_bar = [OfflineProgress()] if progress else []
        super().__init__(config, run_dir, progress_bar + list(hooks or []), progress=False)

    def _build(self, resume: bool) -> None:
        cfg = self.config
        self.action_dim = self.dataset.meta["action_dim"]
        self.world_model = WorldModel(cfg.model, self.action_dim, cfg.env.image_size)
        self.world_model.to(self.device)
        self.agent = self.factories.agent(cfg, self.world_model, self.action_dim).to(self.device)
        self.replay = Replay(self.writer, 1, cfg.train.seed)
        self.episode_bounds = []  # (start, stop) of each episode in the replay's stream
        for episode in self.dataset.episodes():
            start = self.replay.streams[0].size
            self.replay.streams[0].extend(episode)
            self.episode_bounds.append((start, self.replay.streams[0].size))
        self.resumed = False

    def close(self, status: str) -> None:
        self.writer.close(status)  # no envs to close

    # --- the loop ---------------------------------------------------------------------------

    def _collect_and_train(self) -> None:
        """Offline nothing is collected: the dataset is the data."""
        if self.config.offline.world_model:
            self._reuse_world_model(Path(self.config.offline.world_model))
        else:
            self._pretrain_world_model()  # 2
        if self.bus.stop_requested:
            return
        transitions = self._encode_dataset()  # 3
        self._train_agent(transitions)  # 4
        self._snapshot()  # 5

    def _pretrain_world_model(self) -> None:
        cfg = self.config.train
        for _ in range(self.config.offline.model_updates):
            if self.bus.stop_requested:
                return
            self._train_world_model(self._sample_sequences(cfg.batch_length))
            self.bus.emit(AgentUpdate(self.step, update=self.counters["update"], metrics={}))

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
        self.world_model.load_state_dict(state["world_model"])

    @torch.no_grad()
    def _encode_dataset(self) -> dict[str, Tensor]:
        """Every transition of the dataset, t -> t+1 within an episode, as tensors [N, ...]."""
        stream, limit = self.replay.streams[0], self.config.agent.cost_limit
        parts = []
        for (start, stop), record in zip(self.episode_bounds, self.dataset.records, strict=True):
            episode = self._tensors({k: v[None] for k, v in stream.slice(start, stop).items()})
            with autocast(self.device, self.config.train.precision):
                posterior, _ = self.world_model.observe(
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

    def _train_agent(self, transitions: dict[str, Tensor]) -> None:
        count, batch_size = len(transitions["action"]), self.config.offline.batch_size
        for _ in range(self.config.lspc.updates):
            if self.bus.stop_requested:
                return
            index = torch.randint(count, (batch_size,), device=self.device)
            metrics = self.agent.update({key: value[index] for key, value in transitions.items()})
            update = self._count_update()
            self.bus.emit(AgentUpdate(self.step, update=update, metrics=metrics))

    def _snapshot(self) -> None:
        """The latents of a batch of dataset states, labelled as the online snapshots are
        (`snapshots.py`), plus the agent's `latent_codes` of the action taken in each."""
        if self.snapshotter is None or self.bus.stop_requested:
            return
        # One step more than a snapshot uses, so each state's next action (the one taken there)
        # is in the batch; at an episode's last state it is the next episode's zero action.
        batch = self._sample_sequences(self.config.train.batch_length + 1)
        with torch.no_grad(), autocast(self.device, self.config.train.precision):
            posterior, _ = self.world_model.observe(
                batch["obs"], batch["action"], batch["is_first"]
            )
        arrays = self.snapshotter.take(
            {key: value[:, :-1] for key, value in batch.items()}, posterior.map(lambda x: x[:, :-1])
        )
        sequence, time = arrays["sequence"], arrays["time"]
        features = posterior.features()[sequence, time].float()
        taken = batch["action"][sequence, time + 1]
        codes = self.agent.latent_codes(features, taken)
        arrays.update({name: value.float().cpu().numpy() for name, value in codes.items()})
        self.snapshot(arrays)

    # --- helpers ----------------------------------------------------------------------------

    def _count_update(self) -> int:
        """One gradient update done: offline, steps count updates."""
        self.counters["step"] += 1
        return super()._count_update()

    def _sample_sequences(self, length: int) -> dict[str, Tensor]:
        return self._tensors(self.replay.sample(self.config.train.batch_size, length))

    def _tensors(self, arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
        return {key: torch.as_tensor(value, device=self.device) for key, value in arrays.items()}


class OfflineProgress(ProgressBar):
    """The progress bar, over gradient updates (world model, then agent)."""

    def on_train_start(self, event: TrainStart) -> None:
        super().on_train_start(event)
        config = event.engine.config
        model_updates = 0 if config.offline.world_model else config.offline.model_updates
        self.bar.total = model_updates + config.lspc.updates
        self.bar.refresh()

    def on_agent_update(self, event: AgentUpdate) -> None:
        if "agent/actor_loss" in event.metrics:
            self.postfix["actor_loss"] = f"{event.metrics['agent/actor_loss']:.3g}"
            self.bar.set_postfix(self.postfix, refresh=False)
        self._advance(event.step)
