"""Latent maps: snapshots' latents projected to 2-D with UMAP, and how separable safe and unsafe
latents are. Viewer-side only: nothing here runs in the training loop.

    snapshot = load_snapshot(run.snapshots()[-1])      # the arrays, checked (see workbench/snapshots.py)
    coords = coordinates(run, run.snapshots()[-1])     # [M, 2] in the run's map, cached on disk
    probe_accuracy(snapshot["features"], snapshot["unsafe"])

How a run's map behaves (`RunProjection`):
1. Fitted once, the first time coordinates are asked for, on the newest snapshots (up to
   `max_points` latents together).
2. Every other snapshot, including ones written later, is placed into that same map
   (`LatentMap.transform`), so points are comparable across snapshots.
3. `refit()` fits it again on the newest snapshots (the latent space drifts as the world model
   learns) and rotates, scales and shifts the new map onto the old one (orthogonal Procrustes on
   the shared points, as the old map placed them), so the picture does not jump.
4. Coordinates are cached on disk, so reopening a viewer is instant. The cache is never among the
   files the engine writes: RUN/.viewer-cache/projection/, or, when the run directory is
   read-only, $XDG_CACHE_HOME/workbench/projection/<hash of the run's path>/ (~/.cache by
   default). Delete it at any time; it is rebuilt.
       map.json                       version, the snapshots the map was fitted on, UMAP settings
       v<version>/snap_<update>.npz   one snapshot's coordinates (and its file's mtime, so a
                                      snapshot rewritten after a resume is projected again)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.runs import (
    SHIPPED_RUNS,
    Artifact,
    Run,
    RunError,
    load_arrays,
    read_json,
    save_arrays,
    snapshot_path,
    write_json,
)
from workbench.runs import load_snapshot as load_snapshot  # re-exported: viewers load it here

CACHE_FOLDER = ".viewer-cache"


# ---------------------------------------------------------------------------------------------
# Separability.


def probe_accuracy(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float | None:
    """How linearly separable two classes of latents are (e.g. safe and unsafe): the balanced
    accuracy (mean recall of the two classes, so 0.5 is chance whatever their sizes) of a
    logistic regression on held-out latents. Cross-validated over up to 5 folds, so every latent
    is predicted once by a probe that never saw it (steadier than one split when unsafe latents
    are few). None when a class has fewer than 2 members."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels, bool)
    smaller = min(labels.sum(), (~labels).sum())
    if smaller < 2:
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
    folds = StratifiedKFold(min(5, smaller), shuffle=True, random_state=seed)
    predicted = cross_val_predict(probe, np.asarray(features, np.float32), labels, cv=folds)
    return float(balanced_accuracy_score(labels, predicted))


def probe_series(run: Run) -> list[dict[str, Any]]:
    """Per snapshot, oldest first: step, update, unsafe latents, latents, and the probe accuracy
    of safe vs unsafe (None when one class is missing)."""
    rows = []
    for artifact in run.snapshots():
        arrays = load_snapshot(artifact, ("step", "update", "features", "unsafe"))
        rows.append({
            "step": int(arrays["step"]),
            "update": int(arrays["update"]),
            "unsafe": int(arrays["unsafe"].sum()),
            "latents": len(arrays["unsafe"]),
            "probe_accuracy": probe_accuracy(arrays["features"], arrays["unsafe"]),
        })  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------
# Maps.


@dataclass
class Similarity:
    """x -> scale * x @ rotation + shift (rotation: orthogonal 2x2, a reflection allowed)."""

    rotation: np.ndarray = field(default_factory=lambda: np.eye(2))
    scale: float = 1.0
    shift: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return (self.scale * points @ self.rotation + self.shift).astype(np.float32)


def align(source: np.ndarray, target: np.ndarray) -> Similarity:
    """The similarity that maps `source` [M, 2] closest to `target` [M, 2] in least squares
    (orthogonal Procrustes with scale: rotation from the SVD of the centred cross-covariance)."""
    source_mean, target_mean = source.mean(0), target.mean(0)
    a, b = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(a.T @ b)
    rotation = u @ vt
    scale = float(singular.sum() / max((a**2).sum(), 1e-12))
    return Similarity(rotation, scale, target_mean - scale * source_mean @ rotation)


class LatentMap:
    """A 2-D UMAP map of latent features, into which new points can be placed.

    The fit is UMAP's, on exact nearest neighbours (scikit-learn's brute-force search: fast at
    these sizes, and it spares numba's slow compilation of UMAP's approximate search). A new point
    is placed where UMAP's own `transform` starts it: at the membership-weighted mean of the map
    coordinates of its nearest fitted latents. UMAP would then nudge it with a few epochs of
    layout optimisation; skipping them keeps placement fast, deterministic, and inside the map.
    `fits` counts the fits made (fitting is the slow part)."""

    def __init__(self, n_neighbors: int = 15, min_dist: float = 0.1, seed: int | None = 0):
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.seed = seed
        self.search: Any = None  # nearest-neighbour index of the fitted latents
        self.embedding = np.zeros((0, 2), np.float32)  # their UMAP coordinates, before placement
        self.placement = Similarity()
        self.fits = 0

    @property
    def fitted(self) -> bool:
        return self.search is not None

    def fit(self, features: np.ndarray, align_to: np.ndarray | None = None) -> np.ndarray:
        """Fit the map on `features` [M, F]; their coordinates [M, 2]. With `align_to` (earlier
        coordinates [M, 2] of the same points) the map is rotated, scaled and shifted onto them."""
        from sklearn.neighbors import NearestNeighbors
        from umap import UMAP

        features = np.asarray(features, np.float32)
        if len(features) < 4:
            raise ValueError(f"a latent map needs at least 4 points, got {len(features)}")
        neighbors = min(self.n_neighbors, len(features) - 1)  # UMAP wants more points
        search = NearestNeighbors(n_neighbors=neighbors, algorithm="brute").fit(features)
        distances, indices = search.kneighbors(features)
        reducer = UMAP(
            n_components=2,
            n_neighbors=neighbors,
            min_dist=self.min_dist,
            random_state=self.seed,
            n_jobs=1 if self.seed is not None else -1,  # a seed makes UMAP single-threaded
            precomputed_knn=(indices, distances),
        )
        with warnings.catch_warnings():  # "no search index: transform unavailable": we place
            warnings.simplefilter("ignore", UserWarning)
            self.embedding = reducer.fit_transform(features).astype(np.float32)
        self.search, self.fits = search, self.fits + 1
        self.placement = Similarity()
        if align_to is not None:
            self.placement = align(self.embedding, align_to)
        return self.placement(self.embedding)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Place new points [M, F] into the fitted map: coordinates [M, 2]."""
        if not self.fitted:
            raise ValueError("the latent map is not fitted yet; call fit first")
        distances, indices = self.search.kneighbors(np.asarray(features, np.float32))
        # Membership as in UMAP: 1 for the nearest, decaying with the distance beyond it.
        beyond = distances - distances[:, :1]
        weights = np.exp(-beyond / (beyond.mean(1, keepdims=True) + 1e-12))
        mean = (weights[..., None] * self.embedding[indices]).sum(1) / weights.sum(1)[:, None]
        return self.placement(mean)

    def refit(self, features: np.ndarray) -> np.ndarray:
        """Fit afresh on `features`, aligned to where the current map places them."""
        return self.fit(features, align_to=self.transform(features))


class RunProjection:
    """A run's latent map with its coordinates cached on disk (see the module docstring)."""

    def __init__(
        self,
        run: Run | str | Path,
        *,
        cache_dir: str | Path | None = None,
        max_points: int = 20_000,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        seed: int | None = 0,
    ):
        self.run = run if isinstance(run, Run) else Run(run)
        self.cache = Path(cache_dir) if cache_dir else default_cache(self.run.path)
        self.max_points = max_points
        self.map = LatentMap(n_neighbors, min_dist, seed)
        self.map_version: int | None = None  # the version of the map held in memory
        self.settings = {"n_neighbors": n_neighbors, "min_dist": min_dist, "seed": seed}
        self.lock = threading.Lock()  # a dashboard may ask from several threads at once

    def state(self) -> dict[str, Any]:
        """map.json: version, snapshots (the names the map was fitted on), settings; {} if none
        (or one made with other settings)."""
        state = read_json(self.cache / "map.json")
        return state if state.get("settings") == self.settings else {}

    def coordinates(self, snapshot: Artifact | str | Path) -> np.ndarray:
        """Coordinates [M, 2] of a snapshot's latents in the run's map."""
        path = snapshot_path(snapshot)
        with self.lock:
            coords = self._cached(path)
            if coords is not None:
                return coords
            version = self.state().get("version")
            if self.map_version is None or self.map_version != version:  # none, or refit elsewhere
                self._load_map()
            return self._place(path)

    def refit(self) -> None:
        """Fit the map again on the newest snapshots, aligned to the current map."""
        with self.lock:
            state = self.state()
            if state and self.map_version != state["version"]:
                self._load_map()
            newest = self._newest()
            old = np.concatenate([self._place(a.path) for a in newest]) if state else None
            self._fit(newest, old, state.get("version", 0) + 1)

    def _place(self, path: Path) -> np.ndarray:
        """A snapshot's coordinates from the cache, or placed into the map held in memory."""
        coords = self._cached(path)
        if coords is None:
            coords = self.map.transform(load_snapshot(path, ("features",))["features"])
            self._store(path, coords)
        return coords

    def _load_map(self) -> None:
        """Rebuild the map from the cache (fitted on the same snapshots, aligned to their cached
        coordinates), or fit a first one on the newest snapshots."""
        state = self.state()
        known = {artifact.number: artifact for artifact in self.run.snapshots()}
        fitted = [known.get(update) for update in state.get("snapshot_updates", [])]
        present = [artifact for artifact in fitted if artifact is not None]
        cached = [self._cached(artifact.path) for artifact in present]
        found = [coords for coords in cached if coords is not None]
        if fitted and len(found) == len(fitted):  # every snapshot there, each with its coords
            self._fit(present, np.concatenate(found), state["version"])
        else:
            self._fit(self._newest(), None, state.get("version", 0) + 1)

    def _newest(self) -> list[Artifact]:
        """The newest snapshots holding at most `max_points` latents together (at least one)."""
        chosen: list[Artifact] = []
        total = 0
        for artifact in reversed(self.run.snapshots()):
            count = len(load_snapshot(artifact, ("unsafe",))["unsafe"])
            if chosen and total + count > self.max_points:
                break
            chosen.append(artifact)
            total += count
        if not chosen:
            raise RunError(f"{self.run.path} has no snapshots yet (set train.snapshot_every)")
        return chosen[::-1]

    def _fit(self, snapshots: list[Artifact], align_to: np.ndarray | None, version: int) -> None:
        """Fit on these snapshots, cache their coordinates, and make `version` the current map."""
        paths = [artifact.path for artifact in snapshots]
        features = [load_snapshot(path, ("features",))["features"] for path in paths]
        coords = self.map.fit(np.concatenate(features), align_to)
        self.cache.mkdir(parents=True, exist_ok=True)
        for old in self.cache.glob("v*"):
            if old.name != f"v{version}":
                shutil.rmtree(old, ignore_errors=True)
        state = {"version": version, "snapshot_updates": [a.number for a in snapshots]}
        write_json(self.cache / "map.json", {**state, "settings": self.settings})
        self.map_version = version
        splits = np.cumsum([len(f) for f in features])[:-1]
        for path, part in zip(paths, np.split(coords, splits), strict=True):
            self._store(path, part)

    def _coords_file(self, path: Path) -> Path:
        return self.cache / f"v{self.state().get('version', 0)}" / path.name

    def _cached(self, path: Path) -> np.ndarray | None:
        try:
            arrays = load_arrays(self._coords_file(path))
            fresh = int(arrays["mtime_ns"]) == _mtime_ns(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # none yet, or damaged
            return None
        return arrays["coords"] if fresh else None

    def _store(self, path: Path, coords: np.ndarray) -> None:
        file = self._coords_file(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        save_arrays(file, {"coords": coords, "mtime_ns": np.array(_mtime_ns(path), np.int64)})


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        raise RunError(f"no snapshot at {path}") from None


def default_cache(run_path: Path) -> Path:
    """RUN/.viewer-cache/projection, or a per-run folder in the user's cache dir when the run
    directory cannot be written or is one of the shipped runs (`SHIPPED_RUNS`)."""
    shipped = run_path.resolve().is_relative_to(SHIPPED_RUNS)
    if os.access(run_path, os.W_OK) and not shipped:
        return run_path / CACHE_FOLDER / "projection"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha1(str(run_path.resolve()).encode()).hexdigest()[:16]
    return base / "workbench" / "projection" / key


_PROJECTIONS: dict[Path, RunProjection] = {}


def projection(run: Run | str | Path) -> RunProjection:
    """The process-wide `RunProjection` of a run (so its map is fitted once per process)."""
    path = Path(run.path if isinstance(run, Run) else run).resolve()
    if path not in _PROJECTIONS:
        _PROJECTIONS[path] = RunProjection(path)
    return _PROJECTIONS[path]


def coordinates(run: Run | str | Path, snapshot: Artifact | str | Path) -> np.ndarray:
    """Coordinates [M, 2] of a snapshot's latents in its run's map (cached on disk)."""
    return projection(run).coordinates(snapshot)
