"""`workbench bench` and `workbench bench-inspect`: how fast the pieces run here, in numbers.

`bench`: for each preset asked for (`--preset cpu tiny ...`), on a device: env steps/s
(pixels; 1 and N envs; stock and fast rendering; bare physics), world-model updates/s and
samples/s (sequence steps per second), full updates (world model + agent) per second and
samples/s, imagination steps/s (latent states per second), end-to-end training env steps/s at
the preset's replay ratio (a short real run after its prefill, `--train-updates` updates;
0 skips it), the process's peak memory (RSS), and which optimisations were on.

`bench-inspect`:
1. UMAP: numba's one-off compilation (a small fit and transform), then a fit of `--points`
   latents (from a run's snapshots with `--run`, else synthetic clustered latents of the `cpu`
   preset's feature size) - seconds.
2. Placing a new snapshot (`--snapshot-points` latents) into that map: the first call and
   the mean of later ones - seconds.
3. The snapshots' cost to training: the same short training (same seed, same steps, on the
   real environment) without and with snapshots - the percent slowdown of the wall time, and
   the time spent taking them as a percent of training without it (the steadier number on
   a busy machine).

Importing this module is cheap (the CLI does it): torch, UMAP and the engine load when a
benchmark runs.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.config import PRESETS, resolve
from workbench.hooks import Hook

if TYPE_CHECKING:
    import torch


def add_commands(commands) -> None:
    """Add `bench` and `bench-inspect` to the CLI's subcommands."""
    p = commands.add_parser("bench", help="measure env, world-model and imagination speed")
    p.add_argument("--preset", nargs="+", default=["cpu"], choices=list(PRESETS))
    p.add_argument("--device", default="auto")
    p.add_argument("--num-envs", type=int, default=2)
    p.add_argument(
        "--train-updates", type=int, default=20, help="updates in the end-to-end run (0: skip)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_bench)
    _add_bench_inspect(commands)


def _add_bench_inspect(commands) -> None:
    p = commands.add_parser(
        "bench-inspect", help="measure UMAP projection speed and the snapshots' overhead"
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


def _bench(args) -> int:
    by_preset = {
        preset: run_bench(preset, args.device, args.num_envs, args.train_updates)
        for preset in args.preset
    }
    results = by_preset[args.preset[0]] if len(by_preset) == 1 else by_preset
    print_results(results, args.json, digits=1)
    return 0


def print_results(results: dict, as_json: bool, digits: int) -> None:
    """A benchmark's numbers: as JSON, or one aligned line each."""
    if as_json:
        print(json.dumps(results, indent=2))
        return
    for key, value in results.items():
        print(f"{key:32s} {value:.{digits}f}" if isinstance(value, float) else f"{key:32s} {value}")


# --- bench: environments ---------------------------------------------------------------------


def bench_envs(
    task: str = "SafetyPointGoal1-v0", steps: int = 300, num_envs: int = 2, image_size: int = 64
) -> dict[str, float]:
    """Env steps per second (one physics step + one render each) for each render path and N."""
    result: dict[str, float] = {"num_envs": num_envs}
    for n in (1, num_envs):
        for render in ("fast", "stock"):
            result[f"env_sps_{render}_{'1' if n == 1 else 'N'}"] = _vector_sps(
                task, steps, n, image_size, render
            )
    from workbench.envs import physics_steps_per_second

    result["physics_only_sps"] = physics_steps_per_second(task, steps)
    return result


def _random_actions(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, n: int):
    return rng.uniform(low, high, size=(n, *low.shape)).astype(np.float32)


def _vector_sps(task: str, steps: int, num_envs: int, image_size: int, render: str) -> float:
    """Env steps per second (all envs together) with random actions and action_repeat=1."""
    kwargs = dict(image_size=image_size, action_repeat=1, render=render)
    from workbench.envs import make_vector_env

    with make_vector_env(task, num_envs=num_envs, **kwargs) as env:
        rng = np.random.default_rng(0)
        env.reset_all(seed=0)
        rounds = max(1, steps // num_envs)
        start = time.perf_counter()
        for _ in range(rounds):
            out = env.step(_random_actions(rng, env.action_low, env.action_high, num_envs))
            for i in np.flatnonzero(out.terminated | out.truncated):
                env.reset(int(i))
        return rounds * num_envs / (time.perf_counter() - start)


# --- bench: learning ------------------------------------------------------------------------


def run_bench(
    preset: str = "cpu", device: str = "auto", num_envs: int = 2, train_updates: int = 20
) -> dict[str, Any]:
    """Every number of `bench` for one preset (see the module's docstring)."""
    import torch

    from workbench.device import resolve_device

    config = resolve(preset, {"train.device": device})
    dev = resolve_device(device)
    results: dict[str, Any] = {
        "preset": preset,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "batch": f"{config.train.batch_size}x{config.train.batch_length}",
        "horizon": config.agent.horizon,
    }
    results["optimisations"] = optimisations(config, dev)
    results.update(bench_envs(config.env.task, num_envs=num_envs, image_size=config.env.image_size))
    results.update(_bench_learning(config, dev))
    if train_updates > 0:
        results.update(bench_training(preset, device, train_updates))
    results["peak_rss_mb"] = peak_rss_mb()
    return results


def optimisations(config, device: torch.device) -> dict[str, Any]:
    """Which speed choices a run of `config` makes on `device`."""
    import torch

    from workbench.device import uses_bf16

    return {
        "bf16_autocast": uses_bf16(device, config.train.precision),
        "channels_last_convs": True,  # WorldModel stores its conv weights so
        "subpixel_decoder_output": True,  # ConvDecoder.subpixel_output
        "overlapped_collection": config.train.overlap,
        "torch_threads": 1 if config.train.overlap else torch.get_num_threads(),
        "replay_capacity": config.train.replay_capacity or "unlimited",
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux: ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_training(preset: str, device: str, updates: int) -> dict[str, Any]:
    """A short real run of `preset` (its replay ratio, overlap and task): env steps/s from the
    end of the prefill to the last update (the prefill, final checkpoint and evaluation left
    out)."""
    base = resolve(preset)
    steps = base.train.prefill + updates * base.train.train_every
    overrides = {"train.steps": steps, "train.device": device, "train.snapshot_every": 0}
    overrides.update({"train.checkpoint_every": 10 * steps, "train.eval_every": 0})
    clock = _TrainingClock(base.train.prefill)
    from workbench.engine import Engine

    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(resolve(preset, overrides), Path(folder) / "run", [clock], progress=False)
        engine.train()
    seconds = clock.end - clock.start
    return {
        "train_run": f"{steps} steps, {updates} updates after a {base.train.prefill}-step prefill",
        "replay_ratio": base.train.batch_size * base.train.batch_length / base.train.train_every,
        "train_env_steps_per_s": (clock.last_step - base.train.prefill) / seconds,
    }


class _TrainingClock(Hook):
    """The time the prefill ended, and the time and step of the latest update."""

    def __init__(self, prefill: int) -> None:
        self.prefill = prefill
        self.start = self.end = time.perf_counter()
        self.last_step = prefill

    def on_env_step(self, event) -> None:
        if event.step <= self.prefill:
            self.start = time.perf_counter()

    def on_agent_update(self, event) -> None:
        self.end, self.last_step = time.perf_counter(), event.step


def _bench_learning(config, device: torch.device, repeats: int = 5) -> dict[str, float]:
    import torch

    from workbench.agents import make_agent
    from workbench.device import autocast
    from workbench.world_model import WorldModel

    action_dim = 2
    world_model = WorldModel(config.model, action_dim, config.env.image_size).to(device)
    agent = make_agent(config, world_model, action_dim).to(device)
    batch = _random_batch(config, action_dim, device)
    precision = config.train.precision

    def wm_step():
        with autocast(device, precision):
            return world_model.train_step(batch)[1]

    def agent_step():
        with autocast(device, precision):
            agent.update(posterior, batch)

    def imagine():
        with torch.no_grad(), autocast(device, precision):
            agent.imagine(posterior)

    def full_step():
        with autocast(device, precision):
            agent.update(world_model.train_step(batch)[1], batch)

    posterior = wm_step()  # warm-up (and a posterior to start imagination from)
    agent_step()
    samples = config.train.batch_size * config.train.batch_length
    starts = config.agent.imagine_starts or samples
    wm_rate, full_rate = _rate(wm_step, repeats, device), _rate(full_step, repeats, device)
    return {
        "wm_updates_per_s": wm_rate,
        "wm_samples_per_s": wm_rate * samples,
        "full_updates_per_s": full_rate,
        "full_samples_per_s": full_rate * samples,
        "imagination_steps_per_s": _rate(imagine, repeats, device) * starts * config.agent.horizon,
        "agent_updates_per_s": _rate(agent_step, repeats, device),
    }


def _rate(fn, repeats: int, device: torch.device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats / (time.perf_counter() - start)


def _random_batch(config, action_dim: int, device: torch.device) -> dict[str, torch.Tensor]:
    import torch

    b, t, s = config.train.batch_size, config.train.batch_length, config.env.image_size
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    batch = {
        "obs": torch.randint(0, 255, (b, t, s, s, 3), dtype=torch.uint8),
        "action": torch.rand(b, t, action_dim) * 2 - 1,
        "reward": torch.rand(b, t),
        "cost": (torch.rand(b, t) < 0.1).float(),
        "is_first": is_first,
        "is_terminal": torch.zeros(b, t, dtype=torch.bool),
    }
    return {key: value.to(device) for key, value in batch.items()}


# --- bench-inspect ---------------------------------------------------------------------------


def _bench_inspect(args) -> int:
    if args.points < 4 or args.snapshot_points < 1 or args.updates < 1:
        raise ValueError("--points must be >= 4, --snapshot-points and --updates >= 1")
    results = bench_projection(args.points, args.snapshot_points, args.run_dir)
    if not args.no_training:
        results.update(bench_overhead(args.preset, args.task, args.updates))
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


# --- 3: the snapshots' overhead ------------------------------------------------------------------


def bench_overhead(preset: str, task: str, updates: int) -> dict[str, Any]:
    """Train twice (same seed and steps) without and with snapshots; the slowdown in percent."""
    every = resolve(preset).train.snapshot_every or 50
    config = resolve(preset, {"env.task": task, "train.snapshot_every": 0})
    steps = config.train.prefill + updates * config.train.train_every
    without, _ = _train(preset, task, steps, 0)
    with_snapshots, snapshotter = _train(preset, task, steps, every)
    return {
        "training": f"{preset} preset, {task}, {steps} steps, {updates} updates",
        "snapshots": f"every {every} updates: {updates // every} written",
        "train_without_snapshots_s": without,
        "train_with_snapshots_s": with_snapshots,
        "snapshot_overhead_wall_percent": 100 * (with_snapshots - without) / without,
        "snapshot_seconds_each": snapshotter.seconds / max(updates // every, 1),
        "snapshot_overhead_in_snapshotter_percent": 100 * snapshotter.seconds / without,
    }


def _train(preset: str, task: str, steps: int, every: int):
    """Seconds from the start of training to its last update (the final checkpoint and
    evaluation left out), and its snapshotter (None when `every` is 0)."""
    from workbench.engine import Engine

    overrides = {"env.task": task, "train.steps": steps, "train.snapshot_every": every}
    overrides.update({"train.checkpoint_every": 10 * steps})  # a checkpoint only at the end
    clock = _Clock()
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(resolve(preset, overrides), Path(folder) / "run", [clock], progress=False)
        engine.train()
    return clock.end - clock.start, engine.snapshotter


class _Clock(Hook):
    """The time training started and the time of its latest step or update."""

    def on_train_start(self, event) -> None:
        self.start = self.end = time.perf_counter()

    def on_env_step(self, event) -> None:
        self.end = time.perf_counter()

    def on_agent_update(self, event) -> None:
        self.end = time.perf_counter()
