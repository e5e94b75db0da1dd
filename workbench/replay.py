"""Replay: recent steps in memory for sampling, every finished episode on disk.

With a capacity (`train.replay_capacity`), each env's stream keeps at most its share of that
many steps in memory, dropping its oldest first (FIFO); the episode in progress is never cut,
so every episode still reaches the disk whole.

Each env writes one continuous stream of steps; training sequences are cut from a stream at a
random place and may cross episode boundaries, where `is_first` tells the world model to reset
(as in DreamerV3). An episode is saved to the run directory the moment it ends, so a crash loses
at most the episodes in progress.

A step record at index t holds obs[t], the action that led to it (zeros on the first step), the
reward and cost received on arriving at it, and whether it is the first or a terminal step.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from workbench.runs import EPISODES, RunError, RunWriter, episode_artifacts, load_arrays

KEYS = ("obs", "action", "reward", "cost", "is_first", "is_terminal")
"""What a step record holds for training."""
GROUND_TRUTH = ("hazard_distance",)
"""Recorded beside KEYS for checking what was learned (never trained on); NaN where unknown."""


class Stream:
    """Growable arrays of steps (capacity doubles, so appends are amortised O(1))."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.size = 0

    def append(self, step: Mapping[str, np.ndarray | np.generic]) -> None:
        if not self.arrays:
            self.arrays = {
                k: np.zeros((64, *np.shape(v)), np.asarray(v).dtype) for k, v in step.items()
            }
        if self.size == len(self.arrays["obs"]):
            for key, array in self.arrays.items():
                self.arrays[key] = np.concatenate([array, np.zeros_like(array)])
        for key, value in step.items():
            self.arrays[key][self.size] = value
        self.size += 1

    def extend(self, episode: dict[str, np.ndarray]) -> None:
        unknown = np.full(len(episode["obs"]), np.nan, np.float32)  # episodes saved before it
        truth = {key: episode.get(key, unknown) for key in GROUND_TRUTH}
        for t in range(len(episode["obs"])):
            self.append(
                {key: episode[key][t] for key in KEYS} | {k: v[t] for k, v in truth.items()}
            )

    def drop_oldest(self, count: int) -> None:
        """Forget the first `count` steps (the rest move to the front)."""
        for array in self.arrays.values():
            array[: self.size - count] = array[count : self.size]
        self.size -= count

    def slice(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {key: array[start:stop] for key, array in self.arrays.items()}


class Replay:
    def __init__(self, writer: RunWriter, num_envs: int, seed: int = 0, capacity: int = 0):
        """`capacity`: steps held in memory over all envs (0: no limit)."""
        self.writer = writer
        self.stream_capacity = -(-capacity // num_envs) if capacity > 0 else 0
        self.directory = writer.path / EPISODES
        self.streams = [Stream() for _ in range(num_envs)]
        self.episode_starts = [0] * num_envs
        self.num_episodes = 0
        self.rng = np.random.default_rng(seed)

    @property
    def num_steps(self) -> int:
        return sum(stream.size for stream in self.streams)

    def add(self, env_index: int, step: Mapping[str, np.ndarray | np.generic]) -> None:
        stream = self.streams[env_index]
        if step["is_first"]:
            self.episode_starts[env_index] = stream.size
        stream.append(step)
        self._trim(env_index)

    def _trim(self, env_index: int) -> None:
        """Drop a stream's oldest steps beyond its capacity, never into the current episode.
        Done in chunks of an eighth of the capacity, so copying stays O(1) per step."""
        stream, limit = self.streams[env_index], self.stream_capacity
        if not limit or stream.size <= limit + max(limit // 8, 1):
            return
        count = min(stream.size - limit, self.episode_starts[env_index])
        if count > 0:
            stream.drop_oldest(count)
            self.episode_starts[env_index] -= count

    def finish_episode(self, env_index: int) -> dict[str, np.ndarray]:
        """Save env `env_index`'s episode that just ended; return its arrays."""
        stream = self.streams[env_index]
        episode = stream.slice(self.episode_starts[env_index], stream.size)
        self.writer.save_episode(self.num_episodes, episode)
        self.num_episodes += 1
        return episode

    def load(self) -> int:
        """Reload every saved episode (after a resume) into the first stream; return how many.
        New episodes are numbered after the highest saved one, so none is ever overwritten."""
        artifacts = episode_artifacts(self.directory)
        for artifact in artifacts:
            self.streams[0].extend(_load_episode(artifact.path))
            self.episode_starts[0] = self.streams[0].size
            self._trim(0)
        self.num_episodes = artifacts[-1].number + 1 if artifacts else 0
        return len(artifacts)

    def sample(self, batch_size: int, length: int) -> dict[str, np.ndarray]:
        """`batch_size` sequences of `length` steps, as arrays [batch_size, length, ...]: the
        training KEYS, and the GROUND_TRUTH the streams hold (for viewers; never trained on)."""
        sizes = np.array([max(stream.size - length + 1, 0) for stream in self.streams])
        if sizes.sum() == 0:
            raise ValueError(f"replay holds no sequence of {length} steps yet")
        choices = self.rng.choice(len(sizes), size=batch_size, p=sizes / sizes.sum())
        sequences = []
        for index in choices:
            start = int(self.rng.integers(sizes[index]))
            sequences.append(self.streams[index].slice(start, start + length))
        keys = [*KEYS, *(key for key in GROUND_TRUTH if key in sequences[0])]
        batch = {key: np.stack([s[key] for s in sequences]) for key in keys}
        batch["is_first"][:, 0] = True  # a sequence starts from a fresh state
        return batch


def _load_episode(path: Path) -> dict[str, np.ndarray]:
    """A saved episode, or RunError naming the damaged file and what to do."""
    try:
        episode = load_arrays(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _damaged(path, f"{type(error).__name__}: {error}") from None
    missing = [key for key in KEYS if key not in episode]
    if missing:
        raise _damaged(path, f"it lacks {', '.join(missing)}")
    return episode


def _damaged(path: Path, reason: str) -> RunError:
    return RunError(
        f"{path} is not a readable episode ({reason}); move it out of {path.parent} "
        "and resume again (the other episodes are kept)"
    )
