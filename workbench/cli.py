"""`workbench ...`: train, eval, bench, tasks (and more, added by the modules that own them)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from workbench.config import (
    ALGOS,
    OFFLINE_ALGOS,
    PRESETS,
    ConfigError,
    TrainRequest,
)
from workbench.runs import Run, RunError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from workbench.bench import add_commands as _add_bench  # cheap: no torch, no umap
    from workbench.compare import add_command as _add_compare  # cheap: no torch, no plotly
    from workbench.dashboard import add_command as _add_dashboard  # cheap: no streamlit
    from workbench.datasets import add_command as _add_dataset  # cheap: numpy only
    from workbench.export import add_command as _add_export

    for add in (
        _add_train,
        _add_eval,
        _add_bench,
        _add_tasks,
        _add_compare,
        _add_dashboard,
        _add_dataset,
        _add_export,
    ):
        add(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except (ConfigError, RunError, ValueError, ImportError) as error:
        # Errors the user can fix: one clear line, no traceback.
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130


# --- train -----------------------------------------------------------------------------------


def _add_train(commands) -> None:
    p = commands.add_parser("train", help="train an agent (or continue one with --resume)")
    p.add_argument(
        "--task", default=None, help="Safety-Gymnasium task id (default SafetyPointGoal1-v0)"
    )
    p.add_argument("--algo", default="dreamer", choices=ALGOS)
    p.add_argument("--preset", default="cpu", choices=list(PRESETS))
    p.add_argument("--steps", type=int, help="env steps to train for (after action repeat)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--run-dir",
        type=Path,
        help="where to write the run (default runs/<task>-<algo>-s<seed>-<time>)",
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue this run from its newest checkpoint",
    )
    p.add_argument(
        "--dataset",
        type=Path,
        help="the dataset an offline algo (lspc, bc-all, bc-safe) learns from (its task is used)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set agent.cost_limit=10",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write RUN/tensorboard/ (scalars, latent embeddings, eval videos)",
    )
    p.set_defaults(run=_train)


def _train(args) -> int:
    from workbench.engine import Engine, stop_on_sigterm
    from workbench.offline import OfflineEngine

    stop_on_sigterm()  # a stop during start-up is clean too
    hooks = _sink_hooks(args)

    if args.resume:
        if Run(args.resume).config().get("algo") in OFFLINE_ALGOS:
            raise RunError(f"{args.resume} is an offline run: train it again, into a new --run-dir")
        engine = Engine.resume(args.resume, hooks, steps=args.steps, progress=not args.no_progress)
    else:
        task, sets = args.task, list(args.set)
        if args.dataset:
            task = _dataset_task(args)
            sets.append(f"offline.dataset={args.dataset}")
        request = TrainRequest(
            args.preset, args.algo, args.seed, task, args.steps, args.device, sets
        )
        config = request.config()
        run_dir = args.run_dir or Path("runs") / (
            f"{config.env.task}-{config.algo}-s{config.train.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        engine_class = OfflineEngine if config.algo in OFFLINE_ALGOS else Engine
        engine = engine_class(config, run_dir, hooks, progress=not args.no_progress)
    print(f"run directory: {engine.run_dir}  (device {engine.device})")
    status = engine.train()
    print(f"training {status} at step {engine.step}: {engine.run_dir}")
    print(
        f"  look at it:  workbench eval {engine.run_dir}   |   workbench dashboard {engine.run_dir.parent}"
    )
    return 0 if status in ("finished", "stopped") else 1


def _sink_hooks(args) -> list:
    """Optional output sinks asked for on the command line."""
    if not args.tensorboard:
        return []
    from workbench.tensorboard_sink import TensorBoardHook

    return [TensorBoardHook()]


def _dataset_task(args) -> str:
    """The task of `--dataset` (offline runs take theirs from it), checked against the flags."""
    from workbench.datasets import load_dataset

    task = load_dataset(args.dataset).task
    if args.task and args.task != task:
        raise ConfigError(f"--task {args.task}: the dataset was collected on {task}")
    if args.steps:
        raise ConfigError("offline runs take no env steps: set lspc.updates, offline.model_updates")
    return task


# --- eval ------------------------------------------------------------------------------------


def _add_eval(commands) -> None:
    p = commands.add_parser("eval", help="evaluate a run's newest checkpoint on held-out episodes")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="act with the policy's mode (default: sample, as in training)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_eval)


HEALTH_LINES = {
    "reward_r2": "reward head R^2 (1 - MSE/Var)",
    "reward_corr": "reward head correlation with the real reward",
    "reward_spread": "reward prediction spread / real spread",
    "cost_auroc": "cost head AUROC (unsafe = cost > 0)",
    "unsafe_pred_cost": "mean predicted cost on unsafe steps",
    "unsafe_true_cost": "mean real cost on unsafe steps",
    "recon_mse": "image recon MSE per pixel",
    "object_error": "recon error on hazard and goal pixels",
    "action_std": "actor's action spread",
    "hazard_corr_pred_cost": "corr(predicted cost, hazard distance)",
    "hazard_corr_cost_value": "corr(cost value, hazard distance)",
    "hazard_corr_barrier": "corr(barrier B, hazard distance)",
}
"""`workbench eval`'s lines for `evaluation.world_model_health`, in the order a reader wants."""


def _eval(args) -> int:
    from workbench.evaluation import evaluate_run

    report = evaluate_run(
        args.run_dir, episodes=args.episodes, device=args.device, explore=not args.deterministic
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{args.run_dir} (checkpoint at step {report['checkpoint_step']}, "
        f"{report['episodes']} held-out episodes)"
    )
    print(f"  return       {report['return_mean']:.2f} +- {report['return_std']:.2f}")
    print(
        f"  episode cost {report['cost_mean']:.2f} +- {report['cost_std']:.2f}"
        f"   (limit {report['cost_limit']})"
    )
    print("  world model health:")
    for key, label in HEALTH_LINES.items():
        value = report.get(key)
        print(f"    {label:44s} {'n/a' if value is None else f'{value:.3f}'}")
    print(f"    ({report['unsafe_steps']} unsafe of {report['steps']} steps)")
    return 0


# --- tasks -----------------------------------------------------------------------------------


def _add_tasks(commands) -> None:
    p = commands.add_parser("tasks", help="list the Safety-Gymnasium tasks the workbench supports")
    p.set_defaults(run=_tasks)


def _tasks(args) -> None:
    from workbench.envs import NAV_TASKS

    print("\n".join(NAV_TASKS))


if __name__ == "__main__":
    sys.exit(main())
