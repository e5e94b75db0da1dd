"""Snapshots (the hook and its file contract) and latent maps (UMAP, alignment, cache, probe).

UMAP compiles itself with numba the first time it runs in a process (tens of seconds on 2
cores); the tests here keep its inputs to a few hundred points so only that happens once."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.fakes import FAKE_FACTORIES
from workbench.config import resolve
from workbench.engine import Engine
from workbench.hooks import Hook
from workbench.inspect.projection import (
    LatentMap,
    RunProjection,
    align,
    load_snapshot,
    probe_accuracy,
)
from workbench.runs import SNAPSHOT_KEYS, Run, RunError, save_arrays


class BatchRecorder(Hook):
    """Keeps each update's batch and every Snapshot event."""

    def __init__(self):
        self.batches, self.snapshots = {}, []

    def on_world_model_update(self, event):
        self.batches[event.update] = {k: v.clone() for k, v in event.batch.items()}

    def on_snapshot(self, event):
        self.snapshots.append(event)


@pytest.fixture(scope="module")
def barrier_runs(tmp_path_factory):
    """The tiny preset's barrier agent on the fake task, trained with and without snapshots."""
    folder = tmp_path_factory.mktemp("runs")
    runs = {}
    for every in (3, 0):
        config = resolve("tiny", {"train.device": "cpu", "algo": "barrier"})
        config.train.snapshot_every = every
        recorder = BatchRecorder()
        run_dir = folder / f"every{every}"
        Engine(config, run_dir, [recorder], factories=FAKE_FACTORIES, progress=False).train()
        runs[every] = (config, Run(run_dir), recorder)
    return runs


def test_snapshots_follow_the_contract(barrier_runs):
    config, run, recorder = barrier_runs[3]
    updates = (config.train.steps - config.train.prefill) // config.train.train_every
    assert [a.number for a in run.snapshots()] == list(range(3, updates + 1, 3))
    assert [e.path for e in recorder.snapshots] == [str(a.path) for a in run.snapshots()]
    inspected = {"value", "cost_value", "barrier"}
    m = config.train.batch_size * config.train.batch_length  # fewer than 256: all are taken
    n, h = 8, config.agent.horizon
    shapes = {
        "features": (m, 32 + 4 * 4), "frame": (m, 64, 64, 3), "imag_start": (n,),
        "imag_disagreement": (h, n), "imag_frames": (h + 1, n, 64, 64, 3),
        **{key: (m,) for key in ("unsafe", "cost", "reward", "pred_cost", "time", "sequence")},
        **{key: (m,) for key in ("disagreement", *inspected)},
        **{f"imag_{key}": (h + 1, n) for key in ("reward", "cost", *inspected)},
    }  # fmt: skip
    for artifact, event in zip(run.snapshots(), recorder.snapshots, strict=True):
        snap = load_snapshot(artifact)
        truth = {"hazard_distance"}  # the simulator's ground truth, beside what was learned
        assert (
            set(snap) == set(SNAPSHOT_KEYS) | inspected | {f"imag_{k}" for k in inspected} | truth
        )
        assert {k: v.shape for k, v in snap.items() if k in shapes} == shapes
        assert snap["features"].dtype == np.float16 and snap["imag_frames"].dtype == np.uint8
        assert int(snap["update"]) == event.update and int(snap["step"]) == event.step
        # Each latent's labels are those of its place in the update's batch.
        batch = recorder.batches[event.update]
        where = (snap["sequence"], snap["time"])
        assert len(set(zip(*where, strict=True))) == m
        np.testing.assert_array_equal(snap["cost"], batch["cost"].numpy()[where])
        np.testing.assert_array_equal(snap["reward"], batch["reward"].numpy()[where])
        np.testing.assert_array_equal(snap["frame"], batch["obs"].numpy()[where])
        np.testing.assert_array_equal(snap["unsafe"], snap["cost"] > 0)
        known = np.isfinite(snap["hazard_distance"])  # NaN on first steps (not asked at reset)
        assert known.mean() > 0.5
        np.testing.assert_array_equal(snap["hazard_distance"][known] < 0, snap["unsafe"][known])
        assert (
            sorted(snap["imag_start"]) == sorted(set(snap["imag_start"]))
            and snap["imag_start"].max() < m
        )
        assert snap["imag_frames"].std() > 0, "decoded frames are images, not blanks"


def test_snapshots_leave_training_unchanged(barrier_runs):
    """The hook draws on a copy of torch's random state: training follows the same path."""

    def losses(run):
        return [r["wm/loss"] for r in run.metrics("train")], run.metrics("episode")[-1]["return"]

    assert losses(barrier_runs[3][1]) == losses(barrier_runs[0][1])
    assert not barrier_runs[0][1].snapshots()


def test_load_snapshot_says_what_is_wrong(tmp_path):
    save_arrays(tmp_path / "partial.npz", {"features": np.zeros((4, 3))})
    with pytest.raises(RunError, match="lacks step, update, unsafe"):
        load_snapshot(tmp_path / "partial.npz")
    bad = {"features": np.zeros((4, 3)), "unsafe": np.zeros(5, bool)}
    save_arrays(tmp_path / "bad.npz", bad)
    with pytest.raises(RunError, match="inconsistent shapes"):
        load_snapshot(tmp_path / "bad.npz", ("features", "unsafe"))
    with pytest.raises(RunError, match="cannot read"):
        load_snapshot(tmp_path / "missing.npz")


def test_align_undoes_a_rotation_scale_and_shift():
    points = np.random.default_rng(0).normal(size=(50, 2))
    angle = 2.0
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 3.0 * points @ rotation + np.array([5.0, -2.0])
    np.testing.assert_allclose(align(moved, points)(moved), points, atol=1e-5)
    mirrored = moved * np.array([1.0, -1.0])  # UMAP maps may come out mirrored, too
    np.testing.assert_allclose(align(mirrored, points)(mirrored), points, atol=1e-5)


def test_probe_accuracy_finds_separable_classes():
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.2
    separable = rng.normal(size=(300, 16)) + 2.0 * labels[:, None]
    assert probe_accuracy(separable, labels) > 0.95
    assert probe_accuracy(rng.normal(size=(300, 16)), labels) < 0.7
    assert probe_accuracy(separable, np.zeros(300, bool)) is None


def clusters(count: int, seed: int, dim: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """`count` points in 4 well separated clusters, and each point's cluster."""
    centres = np.random.default_rng(1).normal(0, 4, (4, dim))
    rng = np.random.default_rng(seed)
    which = rng.integers(4, size=count)
    return (centres[which] + rng.normal(size=(count, dim))).astype(np.float32), which


def test_latent_map_places_new_points_where_their_twins_were_fitted():
    features, which = clusters(240, seed=0)
    latent_map = LatentMap()
    fitted = latent_map.fit(features)
    placed = latent_map.transform(
        features + 0.05 * np.random.default_rng(2).normal(size=features.shape)
    )
    extent = np.ptp(fitted, 0).max()
    assert np.median(np.linalg.norm(placed - fitted, axis=1)) < 0.05 * extent
    nearest = np.linalg.norm(placed[:, None] - fitted[None], axis=2).argmin(1)
    assert (which[nearest] == which).mean() > 0.95
    assert latent_map.fits == 1


def plane(count: int, seed: int, offset: float = 0.0, dim: int = 48) -> np.ndarray:
    """Points on a 2-D square embedded in `dim` dimensions (`offset` slides the square)."""
    embedding = np.random.default_rng(7).normal(size=(2, dim))
    square = np.random.default_rng(seed).uniform(0, 10, (count, 2)) + [offset, 0]
    return (square @ embedding).astype(np.float32)


def write_snapshot(run_dir, update: int, features: np.ndarray) -> None:
    (run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
    arrays = {"step": np.int64(update), "update": np.int64(update), "features": features}
    save_arrays(
        run_dir / "snapshots" / f"snap_{update:08d}.npz", {**arrays, "unsafe": features[:, 0] > 0}
    )


def test_run_projection_caches_reopens_and_refits_without_a_jump(tmp_path):
    run_dir = tmp_path / "run"
    for update in (1, 2):
        write_snapshot(run_dir, update, plane(150, seed=update))
    first = RunProjection(run_dir, max_points=300)
    snap1, snap2 = Run(run_dir).snapshots()
    coords1 = first.coordinates(snap1)
    assert coords1.shape == (150, 2) and first.map.fits == 1
    assert (run_dir / ".viewer-cache" / "projection" / "map.json").exists()

    # Reopened (a new process): cached coordinates come back as they were, with no fit at all.
    reopened = RunProjection(run_dir, max_points=300)
    np.testing.assert_array_equal(reopened.coordinates(snap1), coords1)
    assert reopened.map.fits == 0

    # A new snapshot: the map is rebuilt from the cache and places it as the first map did.
    write_snapshot(run_dir, 3, plane(150, seed=3, offset=3.0))
    snap3 = Run(run_dir).snapshots()[-1]
    coords3 = reopened.coordinates(snap3)
    extent = np.ptp(coords1, 0).max()
    features3 = load_snapshot(snap3, ("features",))["features"]
    assert (
        np.median(np.linalg.norm(coords3 - first.map.transform(features3), axis=1)) < 0.1 * extent
    )
    assert reopened.map.fits == 1

    # A refit on the newest snapshots (2 and 3) is aligned onto the old map: no jump.
    before = reopened.coordinates(snap2)
    reopened.refit()
    assert reopened.map.fits == 2
    state = json.loads((reopened.cache / "map.json").read_text())
    assert state["version"] == 2 and state["snapshot_updates"] == [2, 3]
    assert sorted(p.name for p in reopened.cache.glob("v*")) == ["v2"]
    after = reopened.coordinates(snap2)
    assert np.median(np.linalg.norm(after - before, axis=1)) < 0.15 * extent

    # A snapshot rewritten (a resumed run redoes its updates) is projected again.
    cached = reopened.coordinates(snap1)
    write_snapshot(run_dir, 1, plane(150, seed=11))
    os.utime(snap1.path, ns=(1, 1))
    assert not np.array_equal(reopened.coordinates(snap1), cached)


@pytest.mark.real
def test_tiny_real_run_writes_snapshots(tmp_path):
    config = resolve("tiny", {"train.device": "cpu"})
    Engine(config, tmp_path / "run", progress=False).train()
    snapshots = Run(tmp_path / "run").snapshots()
    assert len(snapshots) == 2
    snap = load_snapshot(snapshots[-1])
    assert snap["frame"].std() > 0 and np.isfinite(snap["disagreement"]).all()
    assert snap["imag_frames"].shape[:2] == (config.agent.horizon + 1, 8)
