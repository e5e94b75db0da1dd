"""The replay's memory limit: FIFO in memory, every episode whole on disk."""

from __future__ import annotations

import numpy as np

from workbench.replay import Replay
from workbench.runs import RunWriter, episode_artifacts, load_arrays


def _step(t: int, first: bool) -> dict[str, np.ndarray]:
    return {
        "obs": np.full((4, 4, 3), t % 256, np.uint8),
        "action": np.full(2, t, np.float32),
        "reward": np.float32(t),
        "cost": np.float32(0),
        "is_first": np.bool_(first),
        "is_terminal": np.bool_(False),
        "hazard_distance": np.float32(0),
    }


def _fill(replay: Replay, episodes: int, length: int) -> None:
    t = 0
    for _ in range(episodes):
        for i in range(length):
            replay.add(0, _step(t, first=i == 0))
            t += 1
        replay.finish_episode(0)


def test_capacity_keeps_the_newest_steps_and_every_episode_on_disk(tmp_path):
    replay = Replay(RunWriter(tmp_path / "run", config={}), 1, capacity=40)
    _fill(replay, episodes=10, length=30)
    stream = replay.streams[0]
    assert 40 <= replay.num_steps <= 40 + 40 // 8 + 30  # at most an episode over, in chunks
    rewards = stream.arrays["reward"][: stream.size]
    assert rewards[-1] == 299 and np.all(np.diff(rewards) == 1)  # the newest, in order
    saved = [load_arrays(a.path) for a in episode_artifacts(replay.directory)]
    assert [len(e["reward"]) for e in saved] == [30] * 10  # whole episodes on disk
    assert saved[-1]["reward"][0] == 270
    batch = replay.sample(4, 8)
    assert batch["reward"].min() >= 300 - replay.num_steps


def test_an_episode_longer_than_the_capacity_is_saved_whole(tmp_path):
    replay = Replay(RunWriter(tmp_path / "run", config={}), 1, capacity=16)
    _fill(replay, episodes=2, length=50)
    saved = [load_arrays(a.path) for a in episode_artifacts(replay.directory)]
    assert [e["reward"][0] for e in saved] == [0, 50] and len(saved[1]["reward"]) == 50


def test_no_capacity_keeps_everything(tmp_path):
    replay = Replay(RunWriter(tmp_path / "run", config={}), 1)
    _fill(replay, episodes=5, length=30)
    assert replay.num_steps == 150
