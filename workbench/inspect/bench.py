"""`workbench bench-inspect`: how fast live inspection is on this machine, in numbers.

1. UMAP: numba's one-off compilation (a small fit and transform), then a fit of `--points`
   latents (from a run's snapshots with `--run`, else synthetic clustered latents of the `cpu`
   preset's feature size) - seconds.
2. Placing a new snapshot (`--snapshot-points` latents) into that map: the first call and
   the mean of later ones - seconds.
3. The snapshot hook's cost to training: the same short training (same seed, same steps, on the
   real environment) without and with snapshots - the percent slowdown of the wall time, and
   the time spent inside the hook as a percent of training without it (the steadier number on
   a busy machine).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.config import PRESETS, resolve
from workbench.hooks import Hook


def add_command(commands) -> None:
    p = commands.add_parser(
        "bench-inspect", help="measure UMAP projection speed and the snapshot hooks' overhead"
    )
    p.add_argument("--points", type=int, default=20_000, help="latents in the UMAP fit")
    p.add_argument("--snapshot-points", type=int, default=512, help="latents placed into the map")
    p.add_argument(
        "--run", dest="run_dir", type=Path, help="take the latents from this run's snapshots"
    )
    p.add_argument("--preset", default="cpu", choices=list(PRESETS), help="for the training part")
    p.add_argument("--task", default="SafetyPointGoal1-v0", help="for the training part")
    p.add_argument("--updates", type=int, default=100, help="training updates per timed run")
    p.add_argument("--no-training", action="store_true", help="skip the overhead measurement")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_bench_inspect)


def _bench_inspect(args) -> int:
    if args.points < 4 or args.snapshot_points < 1 or args.updates < 1:
        raise ValueError("--points must be >= 4, --snapshot-points and --updates >= 1")
    results = bench_projection(args.points, args.snapshot_points, args.run_dir)
    if not args.no_training:
        results.update(bench_overhead(args.preset, args.task, args.updates))
    from workbench.cli import print_results

    print_results(results, args.json, digits=3)
    return 0


# --- 1 and 2: projection ---------------------------------------------------------------------


def bench_projection(points: int, snapshot_points: int, run: Path | None) -> dict[str, Any]:
    from workbench.inspect.projection import LatentMap

    features = (
        run_latents(run, points + snapshot_points)
        if run
        else synthetic_latents(points + snapshot_points)
    )
    fitted, new = features[:points], features[points:]
    start = time.perf_counter()
    warm_up = LatentMap()
    warm_up.fit(synthetic_latents(200, seed=1))
    warm_up.transform(synthetic_latents(50, seed=2))
    compile_s = time.perf_counter() - start

    latent_map = LatentMap()
    fit_s = _seconds(lambda: latent_map.fit(fitted))
    first_s = _seconds(lambda: latent_map.transform(new))
    later_s = np.mean([_seconds(lambda: latent_map.transform(new)) for _ in range(3)])
    return {
        "latents": f"{'run ' + str(run) if run else 'synthetic'}, {points} x {fitted.shape[1]}",
        "umap_compile_s": compile_s,
        "umap_fit_s": fit_s,
        "place_snapshot_first_s": first_s,
        "place_snapshot_s": float(later_s),
    }


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def synthetic_latents(count: int, seed: int = 0, clusters: int = 30) -> np.ndarray:
    """Clustered stand-ins for the `cpu` preset's posterior features [count, deter + stoch]: a
    tanh-squashed deterministic part and one-hot categorical samples, each cluster with its own
    centre and class probabilities."""
    model = resolve("cpu").model
    rng = np.random.default_rng(seed)
    cluster = rng.integers(clusters, size=count)
    centres = rng.normal(0, 1.5, (clusters, model.deter))
    deter = np.tanh(centres[cluster] + rng.normal(0, 0.3, (count, model.deter)))
    logits = rng.normal(0, 2, (clusters, model.stoch, model.classes))
    gumbel = rng.gumbel(size=(count, model.stoch, model.classes))
    stoch = np.eye(model.classes)[np.argmax(logits[cluster] + gumbel, -1)]
    return np.concatenate([deter, stoch.reshape(count, -1)], 1).astype(np.float32)


def run_latents(run_dir: Path, count: int, seed: int = 0) -> np.ndarray:
    """`count` latents drawn from a run's snapshots (repeated with a little noise if they hold
    fewer, so no two points coincide)."""
    from workbench.inspect.projection import load_snapshot
    from workbench.runs import Run, RunError

    snapshots = Run(run_dir).snapshots()
    if not snapshots:
        raise RunError(f"{run_dir} has no snapshots; train it with --set train.snapshot_every=50")
    pool = np.concatenate([load_snapshot(a, ("features",))["features"] for a in snapshots])
    rng = np.random.default_rng(seed)
    if len(pool) >= count:
        return pool[rng.permutation(len(pool))[:count]].astype(np.float32)
    repeated = pool[rng.integers(len(pool), size=count)].astype(np.float32)
    return repeated + rng.normal(0, 0.01, repeated.shape).astype(np.float32)


# --- 3: the hooks' overhead ------------------------------------------------------------------


def bench_overhead(preset: str, task: str, updates: int) -> dict[str, Any]:
    """Train twice (same seed and steps) without and with snapshots; the slowdown in percent."""
    every = resolve(preset).train.snapshot_every or 50
    config = resolve(preset, {"env.task": task, "train.snapshot_every": 0})
    steps = config.train.prefill + updates * config.train.train_every
    without, _ = _train(preset, task, steps, 0)
    with_snapshots, hook = _train(preset, task, steps, every)
    return {
        "training": f"{preset} preset, {task}, {steps} steps, {updates} updates",
        "snapshots": f"every {every} updates: {updates // every} written",
        "train_without_snapshots_s": without,
        "train_with_snapshots_s": with_snapshots,
        "snapshot_overhead_wall_percent": 100 * (with_snapshots - without) / without,
        "snapshot_seconds_each": hook.seconds / max(updates // every, 1),
        "snapshot_overhead_in_hook_percent": 100 * hook.seconds / without,
    }


def _train(preset: str, task: str, steps: int, every: int):
    """Seconds from the start of training to its last update (the final checkpoint and
    evaluation left out), and its snapshot hook (None when `every` is 0)."""
    from workbench.engine import Engine
    from workbench.snapshots import SnapshotHook

    overrides = {"env.task": task, "train.steps": steps, "train.snapshot_every": every}
    overrides.update({"train.checkpoint_every": 10 * steps})  # a checkpoint only at the end
    clock = _Clock()
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(resolve(preset, overrides), Path(folder) / "run", [clock], progress=False)
        engine.train()
    hooks = [hook for hook in engine.bus.hooks if isinstance(hook, SnapshotHook)]
    return clock.end - clock.start, (hooks[0] if hooks else None)


class _Clock(Hook):
    """The time training started and the time of its latest step or update."""

    def on_train_start(self, event) -> None:
        self.start = self.end = time.perf_counter()

    def on_env_step(self, event) -> None:
        self.end = time.perf_counter()

    def on_agent_update(self, event) -> None:
        self.end = time.perf_counter()
