"""Offline datasets: episodes of a Safety-Gymnasium pixel task collected from a mix of behaviours
(random actions, checkpoints of different safety, with or without action noise), for the
offline algorithms (`workbench/offline.py`).

    workbench dataset build --task SafetyPointGoal1-v0 --out data/goal1 --episodes 10 \\
        --policy random --policy runs/a --policy runs/b/checkpoints/ckpt_000005000.pt:0.3
    workbench dataset info data/goal1 [--json]

The format (`FORMAT`, version `VERSION`), a folder:
    dataset.json    format, version, task, env (image_size, action_repeat, time_limit, render),
                    action_dim, and per episode its provenance and totals: file, policy ('random'
                    or 'checkpoint:<run>@<step>'), noise, seed, return, cost, length (actions
                    taken), unsafe_steps (steps arrived at with cost > 0)
    episodes/ep_000000.npz ...   one episode each, with the replay's keys and conventions
                    (`workbench/replay.py`), T actions taken:
        obs          uint8 [T+1, H, W, 3]
        action       float32 [T+1, A] in [-1, 1]; action[t] led to obs[t] (zeros at t = 0)
        reward, cost float32 [T+1], received on arriving at obs[t] (0 at t = 0)
        is_first     bool [T+1], True at t = 0 only
        is_terminal  bool [T+1], True where the episode terminated (not at a time limit)

Episode files are written whole and renamed into place, then dataset.json is rewritten the same
way, so an interrupted build leaves a smaller valid dataset (a file it does not list is
ignored). Loading never unpickles, checks the format and version, and says which file is
missing or damaged.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.config import EnvConfig
from workbench.replay import KEYS
from workbench.runs import (
    EPISODES,
    RunError,
    check_target,
    episode_file,
    load_arrays,
    make_folder,
    run_of,
    save_arrays,
    write_json,
)

FORMAT = "workbench-dataset"
VERSION = 1
META_FILE = "dataset.json"

DATASET_ENV_KEYS = ("image_size", "action_repeat", "time_limit", "render")
"""The env settings a dataset records (`dataset.json`'s `env`); a run learning from it uses them."""


class DatasetError(ValueError):
    """A dataset cannot be used as asked; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# Writing.


class DatasetWriter:
    """Creates a dataset folder and adds episodes to it, one complete file at a time."""

    def __init__(self, path: str | Path, task: str, env: dict[str, Any], action_dim: int):
        self.path = Path(path)
        check_new_dataset(self.path)
        self.created = make_folder(self.path, "--out")
        (self.path / EPISODES).mkdir(parents=True, exist_ok=True)
        self.meta = {
            "format": FORMAT,
            "version": VERSION,
            "task": task,
            "env": env,
            "action_dim": action_dim,
            "created": time.time(),
            "episodes": [],
        }
        write_json(self.path / META_FILE, self.meta)

    def remove(self) -> None:
        """Undo a build that failed: remove what this writer created (the folder was absent or
        empty), so the same command can run again."""
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
            return
        for child in self.path.iterdir():
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()

    def add(self, episode: dict[str, np.ndarray], policy: str, noise: float, seed: int) -> dict:
        """Save one episode (replay conventions) and its provenance; return its record."""
        _check_episode(episode, f"episode from {policy}")
        name = episode_file(len(self.meta["episodes"]))
        save_arrays(self.path / EPISODES / name, {key: episode[key] for key in KEYS})
        record = {"file": name, "policy": policy, "noise": noise, "seed": seed}
        record.update(_totals(episode))
        self.meta["episodes"].append(record)
        write_json(self.path / META_FILE, self.meta)
        return record


def check_new_dataset(path: Path) -> None:
    """A dataset is written into a new or empty folder only (never into a run, never beside
    other files): raises DatasetError naming --out, having written nothing."""
    if (path / META_FILE).exists():
        raise DatasetError(f"--out {path} already holds a dataset; choose another --out")
    try:
        check_target(path, "--out")
    except RunError as error:
        raise DatasetError(str(error)) from None


def _totals(episode: dict[str, np.ndarray]) -> dict[str, Any]:
    cost = episode["cost"][1:]
    return {
        "return": float(episode["reward"][1:].sum()),
        "cost": float(cost.sum()),
        "length": len(cost),
        "unsafe_steps": int((cost > 0).sum()),
    }


@dataclass
class Behaviour:
    """Who acts while collecting: uniform random actions (no checkpoint), or a run's agent
    sampling its actions, plus Gaussian action noise of standard deviation `noise`."""

    checkpoint: Path | None
    noise: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Behaviour:
        """'random', or RUN_DIR / CHECKPOINT_FILE, optionally followed by ':NOISE'."""
        if text == "random":
            return cls(None)
        path, colon, noise = text.rpartition(":")
        if not colon:
            path, noise = text, "0"
        try:
            behaviour = cls(Path(path), float(noise))
        except ValueError:
            raise DatasetError(f"--policy {text!r}: expected random, RUN or RUN:NOISE") from None
        if behaviour.noise < 0 or not behaviour.checkpoint.exists():
            raise DatasetError(f"--policy {text!r}: no run or checkpoint there, or noise < 0")
        return behaviour


def build_dataset(
    env: EnvConfig | str,
    out: str | Path,
    episodes: int,
    behaviours: list[Behaviour],
    *,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    **settings: Any,
) -> Path:
    """Collect `episodes` episodes with each behaviour into a new dataset at `out`, in the env
    `env` (an `EnvConfig` or a task id) describes, `settings` replacing its fields.

    Episode i (counting over all behaviours) starts from env seed `seed + i`."""
    import torch
    from tqdm.auto import tqdm

    from workbench.envs import check_task, env_config, make_env

    config = env_config(env, **settings)
    task = config.task
    check_task(task)
    if episodes <= 0 or not behaviours:
        raise DatasetError("give --episodes N > 0 and at least one --policy")
    check_new_dataset(Path(out))
    env_settings = {key: getattr(config, key) for key in DATASET_ENV_KEYS}
    players = [_player(b, task, env_settings, device) for b in behaviours]  # fail before acting
    env = make_env(config)
    writer = DatasetWriter(out, task, env_settings, env.action_dim)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    bar = tqdm(total=episodes * len(players), unit="episode", disable=not progress)
    finished = False
    try:
        for (name, play), behaviour in zip(players, behaviours, strict=True):
            for _ in range(episodes):
                episode_seed = seed + len(writer.meta["episodes"])
                episode = play(env, episode_seed, rng)
                record = writer.add(episode, name, behaviour.noise, episode_seed)
                bar.set_postfix(
                    policy=name[-30:], ret=f"{record['return']:.1f}", cost=record["cost"]
                )
                bar.update()
        finished = True
    finally:
        bar.close()
        env.close()
        if not finished:
            writer.remove()
    return writer.path


def _player(behaviour: Behaviour, task: str, env: dict[str, Any], device: str):
    """(provenance name, play(env, seed, rng) -> episode in replay conventions)."""
    if behaviour.checkpoint is None:
        return "random", _play_random
    from workbench.checkpoint import load_agent
    from workbench.evaluation import play_episode

    path = behaviour.checkpoint
    run = run_of(path)  # a run directory, or one of its checkpoints
    loaded = load_agent(run, device, checkpoint=path if path.is_file() else None)
    trained = loaded.config.env
    if (trained.task, trained.image_size, trained.action_repeat) != (
        task, env["image_size"], env["action_repeat"]
    ):  # fmt: skip
        raise DatasetError(
            f"{path} was trained on {trained.task} at image size {trained.image_size} and action "
            f"repeat {trained.action_repeat}; collect with the same settings"
        )

    def play(env, seed: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        played = play_episode(
            env, loaded.world_model, loaded.agent, explore=True, seed=seed, noise=behaviour.noise
        )
        return _from_played(played)

    return f"checkpoint:{run}@{loaded.step}", play


def _from_played(played: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`evaluation.play_episode`'s record (the action chosen at each frame) -> replay conventions
    (the action that led to each frame)."""
    actions = played["action"].astype(np.float32)
    return {
        "obs": played["frame"],
        "action": np.concatenate([np.zeros_like(actions[:1]), actions[:-1]]),
        "reward": played["reward"].astype(np.float32),
        "cost": played["cost"].astype(np.float32),
        "is_first": np.arange(len(actions)) == 0,
        "is_terminal": played["terminal"].astype(bool),
    }


def _play_random(env, seed: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One episode of uniformly random actions in [-1, 1], in replay conventions."""
    steps = [{"obs": env.reset(seed=seed), "action": np.zeros(env.action_dim, np.float32),
              "reward": 0.0, "cost": 0.0, "is_terminal": False}]  # fmt: skip
    done = False
    while not done:
        action = rng.uniform(-1, 1, env.action_dim).astype(np.float32)
        result = env.step(env.action_low + (action + 1) / 2 * (env.action_high - env.action_low))
        steps.append({"obs": result.obs, "action": action, "reward": result.reward,
                      "cost": result.cost, "is_terminal": result.terminated})  # fmt: skip
        done = result.terminated or result.truncated
    episode = {key: np.stack([step[key] for step in steps]) for key in steps[0]}
    episode["reward"] = episode["reward"].astype(np.float32)
    episode["cost"] = episode["cost"].astype(np.float32)
    episode["is_first"] = np.arange(len(steps)) == 0
    return episode


# ---------------------------------------------------------------------------------------------
# Reading.


@dataclass
class Dataset:
    """A loaded dataset.json and access to its episodes (read on demand)."""

    path: Path
    meta: dict[str, Any]

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def env(self) -> dict[str, Any]:
        """image_size, action_repeat, time_limit, render: the settings it was collected with."""
        return self.meta["env"]

    @property
    def records(self) -> list[dict[str, Any]]:
        """Per-episode provenance and totals (see the module docstring)."""
        return self.meta["episodes"]

    def __len__(self) -> int:
        return len(self.records)

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """The arrays of episode `index` (replay keys), checked."""
        path = self.path / EPISODES / self.records[index]["file"]
        try:
            episode = load_arrays(path)
        except FileNotFoundError:
            raise DatasetError(f"{path} is missing: the dataset is partial; rebuild it") from None
        except Exception as error:  # a truncated or foreign file: zip, npy or pickle errors
            raise DatasetError(f"{path} is damaged ({error}); rebuild the dataset") from None
        _check_episode(episode, str(path))
        return episode

    def episodes(self) -> Iterator[dict[str, np.ndarray]]:
        """Every episode's arrays, in order."""
        for index in range(len(self)):
            yield self.episode(index)


def load_dataset(path: str | Path) -> Dataset:
    """Open a dataset, checking its format and version and that every listed episode is there."""
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise DatasetError(
            f"no dataset at {path} (no {META_FILE}); build one with `workbench dataset build`"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{meta_path} is damaged ({error}); rebuild the dataset") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetError(
            f"{path} is not a workbench dataset ({META_FILE} has no format {FORMAT!r})"
        )
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise DatasetError(
            f"{path} has format version {meta.get('version')!r}; this workbench reads version "
            f"{VERSION} and older: update the workbench"
        )
    missing = [key for key in ("task", "env", "action_dim", "episodes") if key not in meta]
    if missing:
        raise DatasetError(f"{meta_path} lacks {', '.join(missing)}; rebuild the dataset")
    dataset = Dataset(path, meta)
    if not len(dataset):
        raise DatasetError(f"{path} holds no episodes yet")
    absent = [r["file"] for r in dataset.records if not (path / EPISODES / r["file"]).is_file()]
    if absent:
        raise DatasetError(
            f"{path} is partial: {len(absent)} listed episodes are missing (first: "
            f"{EPISODES}/{absent[0]}); rebuild it"
        )
    return dataset


def _check_episode(episode: dict[str, np.ndarray], name: str) -> None:
    missing = [key for key in KEYS if key not in episode]
    if missing:
        raise DatasetError(f"{name} lacks {', '.join(missing)}; rebuild the dataset")
    lengths = {key: len(episode[key]) for key in KEYS}
    if len(set(lengths.values())) != 1 or lengths["obs"] < 2 or not episode["is_first"][0]:
        raise DatasetError(f"{name} is malformed (lengths {lengths}); rebuild the dataset")


# ---------------------------------------------------------------------------------------------
# Summary.


def summarise(path: str | Path) -> dict[str, Any]:
    """Size, return and cost distributions over episodes, the fraction of unsafe steps (arrived
    at with cost > 0), and the same per behaviour. Reads dataset.json only (and file sizes)."""
    dataset = load_dataset(path)
    records = dataset.records
    steps = sum(r["length"] for r in records)
    behaviours: dict[str, list[dict]] = {}
    for record in records:
        behaviours.setdefault(_behaviour_name(record), []).append(record)
    files = [dataset.path / EPISODES / r["file"] for r in records]
    return {
        "path": str(dataset.path),
        "format": f"{FORMAT} v{dataset.meta['version']}",
        "task": dataset.task,
        "env": dataset.env,
        "episodes": len(records),
        "steps": steps,
        "megabytes": sum(f.stat().st_size for f in files) / 1e6,
        "return": _distribution([r["return"] for r in records]),
        "cost": _distribution([r["cost"] for r in records]),
        "unsafe_step_fraction": sum(r["unsafe_steps"] for r in records) / max(steps, 1),
        "behaviours": {
            name: {
                "episodes": len(group),
                "return_mean": float(np.mean([r["return"] for r in group])),
                "cost_mean": float(np.mean([r["cost"] for r in group])),
            }
            for name, group in behaviours.items()
        },
    }


def _behaviour_name(record: dict[str, Any]) -> str:
    return record["policy"] + (f" +noise {record['noise']:g}" if record["noise"] else "")


def _distribution(values: list[float]) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
    }


# ---------------------------------------------------------------------------------------------
# `workbench dataset ...`


def add_command(commands) -> None:

    defaults = EnvConfig()
    p = commands.add_parser("dataset", help="build or describe an offline dataset")
    sub = p.add_subparsers(dest="dataset_command", required=True)
    build = sub.add_parser("build", help="collect episodes from a mix of behaviours")
    build.add_argument("--task", default=defaults.task, help="Safety-Gymnasium task id")
    build.add_argument("--out", type=Path, required=True, help="folder of the new dataset")
    build.add_argument("--episodes", type=int, required=True, help="episodes per --policy")
    build.add_argument(
        "--policy",
        action="append",
        required=True,
        metavar="random|RUN[:NOISE]",
        help="a behaviour (repeat for a mix): random actions, or a run's newest checkpoint (or a "
        "checkpoint file) with optional Gaussian action noise, e.g. runs/a:0.3",
    )
    build.add_argument("--seed", type=int, default=0, help="episode i uses env seed SEED + i")
    build.add_argument("--image-size", type=int, default=defaults.image_size)
    build.add_argument("--action-repeat", type=int, default=defaults.action_repeat)
    build.add_argument("--time-limit", type=int, default=defaults.time_limit)
    build.add_argument("--device", default="cpu", help="where checkpoint policies run")
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(run=_build)
    info = sub.add_parser("info", help="summarise a dataset: size, returns, costs, unsafe steps")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=_info)


def _build(args) -> int:
    path = build_dataset(
        args.task,
        args.out,
        args.episodes,
        [Behaviour.parse(text) for text in args.policy],
        seed=args.seed,
        device=args.device,
        image_size=args.image_size,
        action_repeat=args.action_repeat,
        time_limit=args.time_limit,
        progress=not args.no_progress,
    )
    print(f"dataset written: {path}   (describe it with: workbench dataset info {path})")
    return 0


def _info(args) -> int:
    summary = summarise(args.path)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    ret, cost = summary["return"], summary["cost"]
    print(
        f"{summary['path']}: {summary['task']}, {summary['episodes']} episodes, "
        f"{summary['steps']} steps, {summary['megabytes']:.1f} MB ({summary['format']})"
    )
    for name, d in (("return", ret), ("cost", cost)):
        print(
            f"  {name:7s} {d['mean']:8.2f} +- {d['std']:.2f}   "
            f"min {d['min']:.2f}  median {d['median']:.2f}  max {d['max']:.2f}"
        )
    print(f"  unsafe steps {100 * summary['unsafe_step_fraction']:.1f}%")
    print("  by behaviour:")
    for name, b in summary["behaviours"].items():
        print(
            f"    {name:50s} {b['episodes']:4d} episodes  "
            f"return {b['return_mean']:8.2f}  cost {b['cost_mean']:8.2f}"
        )
    return 0
