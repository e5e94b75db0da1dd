"""`workbench ...`: train, eval, bench, tasks (and more, added by the modules that own them)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

from workbench.config import (
    ConfigError,
    TrainRequest,
    add_run_flags,
    positive,
)
from workbench.runs import RunError

DEBUG_VARIABLE = "WORKBENCH_DEBUG"
"""Set to 1 (or pass --debug anywhere on the command line) for full tracebacks."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2), like every other
    mistake a user can make."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Run one `workbench` command. Every error a user can cause (and a full disk, and a run that
    diverged) is reported here, and only here, as one line on stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_VARIABLE) == "1"
    argv = [arg for arg in argv if arg != "--debug"]
    args = _parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    except Exception as error:
        code = _exit_code(error)
        if debug or code is None:
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return code


def _parser() -> Parser:
    parser = Parser(prog="workbench", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help=f"full tracebacks (or set {DEBUG_VARIABLE}=1)"
    )
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
    return parser


def _exit_code(error: Exception) -> int | None:
    """2 for what the user can fix (a flag, a key, a file, the machine's setup), 1 for a run
    that diverged or a full disk, None for a bug (its traceback is shown)."""
    from workbench.envs import RenderingError

    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return 1
    if isinstance(error, (ConfigError, RunError, ValueError, ImportError, RenderingError, OSError)):
        return getattr(error, "exit_code", 2)
    return None


def _one_line(error: Exception) -> str:
    """The error's message on one line; an OSError names its file and says what went wrong."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return f"disk full while writing {error.filename or 'the run'}; free some space"
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    text = " ".join(str(error).split())
    return text or type(error).__name__


# --- train -----------------------------------------------------------------------------------


RESUME_FIXED = ("task", "algo", "preset", "seed", "set", "dataset")
"""Flags a resume cannot apply: the run's saved config decides them."""


def _add_train(commands) -> None:
    p = commands.add_parser("train", help="train an agent (or continue one with --resume)")
    add_run_flags(p)
    p.add_argument(
        "--run-dir",
        type=Path,
        help="where to write the run (default runs/<task>-<algo>-s<seed>-<time>)",
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue this run from its newest checkpoint (with --steps to extend it, "
        "--device to move it)",
    )
    p.add_argument(
        "--dataset",
        type=Path,
        help="the dataset an offline algo (lspc, bc-all, bc-safe) learns from (its task is used)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write RUN/tensorboard/ (scalars, latent embeddings, eval videos)",
    )
    p.set_defaults(run=_train)


def _train(args) -> int:
    from workbench.engine import stop_on_sigterm

    stop_on_sigterm()  # a stop during start-up is clean too
    engine = _resumed_engine(args) if args.resume else _new_engine(args)
    print(f"run directory: {engine.run_dir}  (device {engine.device})")
    status = engine.train()
    print(f"training {status} at step {engine.step}: {engine.run_dir}")
    print(
        f"  look at it:  workbench eval {engine.run_dir}   |   workbench dashboard {engine.run_dir.parent}"
    )
    return 0 if status in ("finished", "stopped") else 1


def _resumed_engine(args):
    """The engine that continues `--resume RUN` (only --steps and --device may change it)."""
    from workbench.engine import Engine

    given = [f"--{name}" for name in RESUME_FIXED if getattr(args, name) is not None]
    if args.run_dir is not None:
        given.append("--run-dir")
    if given:
        raise ConfigError(
            f"--resume continues {args.resume} with its saved config, so {', '.join(given)} "
            "would be ignored: drop them (only --steps and --device apply to a resume), or "
            "start a new run without --resume"
        )
    if not args.resume.is_dir():
        raise RunError(f"--resume {args.resume}: no such run directory")
    return Engine.resume(
        args.resume,
        _sink_hooks(args),
        steps=args.steps,
        device=args.device,
        progress=not args.no_progress,
    )


def _new_engine(args):
    """The engine of a new run from the flags (defaults from TrainRequest)."""
    from workbench.device import resolve_device
    from workbench.engine import Engine

    task, sets = args.task, list(args.set or [])
    if args.dataset:
        task = _dataset_task(args)
        sets.append(f"offline.dataset={args.dataset}")
    request = TrainRequest(args.preset, args.algo, args.seed, task, args.steps, args.device, sets)
    config = request.config()
    resolve_device(config.train.device)  # an unavailable device: say so before writing anything
    run_dir = args.run_dir or Path("runs") / (
        f"{config.env.task}-{config.algo}-s{config.train.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    return Engine(config, run_dir, _sink_hooks(args), progress=not args.no_progress)


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
    p.add_argument("--episodes", type=positive, default=3)
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
