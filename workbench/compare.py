"""`workbench compare`: several algorithms x seeds on one task, trained at equal env steps and
summarised side by side.

    workbench compare --task SafetyPointGoal1-v0 --algos dreamer,bsrp-lag --seeds 0,1,2 \\
        --steps 100000 --preset cpu --out comparisons/goal1 --parallel 2
    workbench compare --summarise comparisons/goal1     # redo the tables and plots

Steps, in order:
1. Plan: one run per (algo, seed) in OUT/runs/<algo>-s<seed>. A run that finished at the
   requested steps is skipped; a crashed, stopped or shorter one is continued with `--resume`
   (decided as its process starts, so a rerun resumes too; one killed before its first checkpoint
   starts over).
   So the same command, run again, picks up an interrupted comparison (or adds algos and seeds).
2. Train: each run is its own `workbench train` process, writing its output to
   OUT/logs/<algo>-s<seed>.log; a bar over the runs and a line per ended run show progress. The
   executor (`workbench.executors`) runs them: on this machine, at most --parallel at a time, or
   with `--executor ray` as Ray tasks on a cluster (`--address`) or an embedded local Ray, with
   --cpus-per-run and --gpus-per-run each, a task lost with its node rerun from its checkpoint.
   Ctrl-C or SIGTERM stops the runs cleanly (each saves a checkpoint) and still summarises.
3. Summarise (`summarise(OUT)`): read every finished run through `workbench.runs.Run`, counting
   only episodes that ended within the requested steps, and write comparison.json, table.csv,
   table.md and the plots: return.html, cost.html, cumulative_cost.html (curves against env
   steps, mean over seeds with a +- std band) and final.html (final return and cumulative cost).

The numbers, per algorithm, are mean +- std over seeds (population std, so one seed gives 0):
- final return: mean return of the last 20% (`FINAL_FRACTION`) of the training episodes,
  rounded, at least one episode;
- final cost: mean episode cost over those same episodes;
- cumulative cost: the total cost of all training episodes, the price paid while learning;
- wall time: seconds from the run's creation to its last status update (a pause before a
  resume counts too);
- vs dreamer: the algorithm's mean final return and mean cumulative cost divided by dreamer's
  (empty when dreamer is not in the comparison or its mean is not positive).

Beside them, as rliable recommends (`workbench.stats`), the interquartile mean over seeds of final
return, final cost and cumulative cost, each with its 95% stratified bootstrap confidence interval
(percentile method, 2000 resamples, a fixed seed so the table is reproducible); every row says
how many seeds it has.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench import executors, stats
from workbench.config import Config, TrainRequest, add_run_flags, flatten
from workbench.runs import (
    COMPARISON_FILE,
    COMPARISON_LOGS,
    COMPARISON_RUNS,
    CONFIG_FILE,
    TABLE_CSV,
    TABLE_MD,
    Run,
    RunError,
    check_target,
    make_folder,
    plot_file,
    read_json,
    training_log,
    write_json,
)

SCHEMA = 1
"""Version of comparison.json."""
FINAL_FRACTION = 0.2
REFERENCE = "dreamer"
METRICS = ("final_return", "final_cost", "cumulative_cost", "wall_time")
AGGREGATED = METRICS[:3]
"""The metrics with an interquartile mean and a bootstrap confidence interval."""
CURVES = ("return", "cost", "cumulative_cost")
"""The training-episode curves a comparison draws, a plot each (named by `figures.label`)."""


def add_command(commands) -> None:
    p = commands.add_parser(
        "compare", help="train algorithms x seeds on one task and compare them side by side"
    )
    add_run_flags(p, several=True)
    p.add_argument("--out", type=Path, help="the comparison directory (runs, logs, tables, plots)")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1; pool)")
    p.add_argument(
        "--executor",
        choices=("pool", "ray"),
        default="pool",
        help="pool: processes on this machine; ray: Ray tasks (pip install 'workbench[distributed]')",
    )
    p.add_argument(
        "--address", help="ray: the cluster (auto or HOST:PORT; default: an embedded local Ray)"
    )
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="ray: CPUs per run (default 1)")
    p.add_argument(
        "--gpus-per-run", type=float, default=0.0, help="ray: GPUs per run, e.g. 0.5 (default 0)"
    )
    p.add_argument("--summarise", type=Path, metavar="DIR", help="only redo DIR's tables and plots")
    p.set_defaults(run=_compare)


def _compare(args) -> int:
    if args.summarise:
        _report(args.summarise, summarise(args.summarise))
        return 0
    if not args.algos or not args.out:
        raise ValueError(
            "give --algos and --out (or --summarise DIR to redo a comparison's tables)"
        )
    executor = _executor(args)
    check_target(args.out, "--out", own=COMPARISON_FILE)  # new, empty, or this comparison
    request, configs = Request.resolve(args)
    make_folder(args.out, "--out")
    write_json(args.out / COMPARISON_FILE, {"schema": SCHEMA, **dataclasses.asdict(request)})
    interrupted = False
    try:
        _run_jobs(_plan(args.out, request, configs), executor, request.steps)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        interrupted = True
    summary = summarise(args.out)
    _report(args.out, summary)
    return 130 if interrupted else 1 if summary["missing"] else 0


def _executor(args) -> executors.Executor:
    """The executor the flags ask for (Ray is imported here: missing, it fails before anything
    is written)."""
    if args.parallel < 1:
        raise ValueError(f"--parallel must be at least 1, got {args.parallel}")
    if args.executor == "pool":
        if args.address:
            raise ValueError("--address is for --executor ray")
        return executors.pool(args.parallel)
    if args.cpus_per_run <= 0 or args.gpus_per_run < 0:
        raise ValueError("--cpus-per-run must be above 0 and --gpus-per-run at least 0")
    return executors.ray_cluster(args.address, args.cpus_per_run, args.gpus_per_run)


# --- 1. plan ---------------------------------------------------------------------------------


@dataclass
class Request:
    """What a comparison asks for; saved in comparison.json so `summarise` can redo it."""

    task: str
    preset: str
    steps: int
    algos: list[str]
    seeds: list[int]
    sets: list[str]
    device: str

    @classmethod
    def resolve(cls, args) -> tuple[Request, dict[tuple[str, int], Config]]:
        """The request and each (algo, seed)'s config, built as `workbench train` builds it
        (so a bad flag fails here, once, before anything starts)."""
        from workbench.agents import REGISTRY

        unknown = [algo for algo in args.algos if algo not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown algo {', '.join(unknown)}; available: {', '.join(REGISTRY)}")
        given = TrainRequest(
            args.preset, task=args.task, steps=args.steps, device=args.device, sets=args.set
        )  # algo and seed: each run's, below
        configs = {
            (algo, seed): dataclasses.replace(given, algo=algo, seed=seed).config()
            for algo in args.algos
            for seed in args.seeds
        }
        first = next(iter(configs.values()))
        request = cls(
            task=first.env.task,
            preset=given.preset,
            steps=first.train.steps,
            algos=args.algos,
            seeds=args.seeds,
            sets=list(given.sets),
            device=given.device,
        )
        return request, configs

    def train_flags(self, algo: str, seed: int) -> list[str]:
        """`workbench train` flags that start this (algo, seed) run."""
        request = TrainRequest(
            self.preset, algo, seed, self.task, self.steps, self.device, self.sets
        )
        return request.flags()


@dataclass
class Job:
    """A run still to train; an executor runs its `workbench train` process."""

    name: str
    run_dir: Path
    flags: list[str]
    """The `workbench train` flags that start the run."""
    steps: int
    log: Path

    def command(self) -> list[str]:
        """The `workbench train` command, decided as the process starts (so a rerun resumes):
        --resume from the run's newest checkpoint, or a new run. What a run killed before its
        first checkpoint left is removed first (nothing in it can be resumed)."""
        command = [sys.executable, "-m", "workbench.cli", "train", "--no-progress"]
        if self.run_dir.is_dir() and (self.writer_alive() or Run(self.run_dir).checkpoints()):
            return command + ["--resume", str(self.run_dir), "--steps", str(self.steps)]
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return command + ["--run-dir", str(self.run_dir), *self.flags]

    def writer_alive(self) -> bool:
        """Whether a process (here or on another host) still writes the run."""
        return self.run_dir.is_dir() and Run(self.run_dir).status == "running"

    def done(self) -> bool:
        """Whether the run already counts in the comparison."""
        return self.run_dir.is_dir() and _missing_reason(Run(self.run_dir), self.steps) is None


def run_name(algo: str, seed: int) -> str:
    return f"{algo}-s{seed}"


def _plan(out: Path, request: Request, configs: dict[tuple[str, int], Config]) -> list[Job]:
    """A job per run still to train: a new one starts, an unfinished one is resumed."""
    jobs, done = [], []
    for (algo, seed), config in configs.items():
        name = run_name(algo, seed)
        run_dir = out / COMPARISON_RUNS / name
        if (run_dir / CONFIG_FILE).exists() and not _missing_reason(
            _checked_run(run_dir, config), request.steps
        ):
            done.append(name)
            continue
        log = training_log(out, COMPARISON_LOGS, name)
        jobs.append(Job(name, run_dir, request.train_flags(algo, seed), request.steps, log))
    if done:
        print(f"already finished, skipped: {', '.join(done)}")
    return jobs


def _checked_run(run_dir: Path, wanted: Config) -> Run:
    """The run at `run_dir`, after checking it was trained with the wanted settings."""
    run = Run(run_dir)
    stored = flatten(Config.from_dict(run.config()).to_dict())
    may_differ = {"train.steps", "train.device"}  # a comparison may extend a run, or move it
    differ = [
        key
        for key, value in flatten(wanted.to_dict()).items()
        if stored.get(key) != value and key not in may_differ
    ]
    if differ:
        raise RunError(
            f"{run_dir} was trained with other settings ({', '.join(differ)}); "
            "use the --task, --preset and --set it was started with, or another --out"
        )
    return run


def _missing_reason(run: Run, steps: int) -> str | None:
    """Why a run does not (yet) count in a comparison at `steps`; None when it does."""
    if run.status != "finished":
        return run.status
    # The step a run reached is its newest checkpoint's: one is always saved when training ends.
    checkpoints = run.checkpoints()
    reached = checkpoints[-1].number if checkpoints else 0
    if reached < steps:
        return f"finished at {reached} of {steps} steps"
    return None


# --- 2. train --------------------------------------------------------------------------------


def _run_jobs(jobs: list[Job], executor: executors.Executor, steps: int) -> None:
    """Run the jobs with the executor; a line as each ends. SIGTERM stops them as Ctrl-C does."""
    from tqdm.auto import tqdm

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with (
            tqdm(total=len(jobs), unit="run", desc="runs", dynamic_ncols=True) as bar,
            contextlib.closing(executor(jobs)) as ended,
        ):
            for job, seconds in ended:
                bar.write(_ended(job, steps, seconds))
                bar.update()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def _ended(job: Job, steps: int, seconds: float) -> str:
    """One line about a run that just ended."""
    outcome = _outcome(job.run_dir, steps)
    if outcome.missing is not None:
        last = job.log.read_text().strip().splitlines()[-1:] if job.log.exists() else []
        return f"{job.name}: {outcome.missing} after {seconds / 60:.1f} min; {job.log}: {''.join(last)}"
    return (
        f"{job.name}: finished in {seconds / 60:.1f} min, final return "
        f"{outcome.row['final_return']:.2f}, cumulative cost {outcome.row['cumulative_cost']:.1f}"
    )


# --- 3. summarise ----------------------------------------------------------------------------


def summarise(comparison_dir: str | Path) -> dict[str, Any]:
    """Write the tables and plots of a comparison from its finished runs (a partial comparison
    works too) and return what comparison.json holds: the request, a row per finished run
    (`runs`), a row per algorithm (`algorithms`) and the runs still missing, with the reason."""
    out = Path(comparison_dir)
    request = _read_request(out)
    rows, missing = [], []
    curves: dict[str, list[dict[str, np.ndarray]]] = {}
    for algo in request.algos:
        for seed in request.seeds:
            outcome = _outcome(out / COMPARISON_RUNS / run_name(algo, seed), request.steps)
            if outcome.missing is not None:
                missing.append({"run": outcome.name, "reason": outcome.missing})
                continue
            rows.append({"algo": algo, "seed": seed, **outcome.row})
            curves.setdefault(algo, []).append(outcome.episodes)
    summary = {
        "schema": SCHEMA,
        **dataclasses.asdict(request),
        "final_fraction": FINAL_FRACTION,
        "algorithms": _per_algorithm(rows, request.algos),
        "runs": rows,
        "missing": missing,
    }
    write_json(out / COMPARISON_FILE, summary)
    _write_tables(out, summary)
    _write_plots(out, request, curves, summary["algorithms"])
    return summary


def _read_request(out: Path) -> Request:
    data = read_json(out / COMPARISON_FILE)
    if not data:
        raise RunError(
            f"{out} holds no {COMPARISON_FILE}; make it with `workbench compare --out {out}`"
        )
    if data.get("schema", SCHEMA) > SCHEMA:
        raise RunError(
            f"{out / COMPARISON_FILE} is newer than this workbench; update the workbench"
        )
    return Request(**{field.name: data[field.name] for field in dataclasses.fields(Request)})


@dataclass
class Outcome:
    """A run as a comparison counts it: its episodes within the steps and its table row, or
    why it does not count (yet)."""

    name: str
    missing: str | None
    episodes: dict[str, np.ndarray] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)


def _outcome(run_dir: Path, steps: int) -> Outcome:
    if not run_dir.is_dir():
        return Outcome(run_dir.name, "not started")
    run = Run(run_dir)
    reason = _missing_reason(run, steps)
    if reason is not None:
        return Outcome(run_dir.name, reason)
    episodes = _episodes(run, steps)
    if not len(episodes["step"]):
        return Outcome(run_dir.name, f"no episode ended within {steps} steps")
    return Outcome(run_dir.name, None, episodes, _row(run_dir.name, episodes, run))


def _episodes(run: Run, steps: int) -> dict[str, np.ndarray]:
    """The run's training episodes that ended within `steps`, as arrays by field (an episode's
    record carries the step count before its last step, hence `<`)."""
    kept = [record for record in run.metrics("episode") if record["step"] < steps]
    keys = ("step", "return", "cost", "cumulative_cost")
    return {key: np.array([record[key] for record in kept], dtype=float) for key in keys}


def _row(name: str, episodes: dict[str, np.ndarray], run: Run) -> dict[str, Any]:
    final = max(1, round(FINAL_FRACTION * len(episodes["return"])))
    info = run.info()
    return {
        "run": name,
        "episodes": len(episodes["return"]),
        "final_return": float(episodes["return"][-final:].mean()),
        "final_cost": float(episodes["cost"][-final:].mean()),
        "cumulative_cost": float(episodes["cumulative_cost"][-1]),
        "wall_time": float(info["updated"] - info["created"]),
    }


def _per_algorithm(rows: list[dict[str, Any]], algos: list[str]) -> list[dict[str, Any]]:
    """Mean and std over seeds of each metric, and the ratios to the reference (dreamer)."""
    table = []
    for algo in algos:
        mine = [row for row in rows if row["algo"] == algo]
        if not mine:
            continue
        entry: dict[str, Any] = {"algo": algo, "seeds": len(mine)}
        for metric in METRICS:
            values = [row[metric] for row in mine]
            entry[f"{metric}_mean"] = float(np.mean(values))
            entry[f"{metric}_std"] = float(np.std(values))
        for metric in AGGREGATED:
            entry.update(_robust(metric, [row[metric] for row in mine]))
        table.append(entry)
    reference = next((entry for entry in table if entry["algo"] == REFERENCE), {})
    for entry in table:
        for metric in ("final_return", "cumulative_cost"):
            base = reference.get(f"{metric}_mean")
            ratio = entry[f"{metric}_mean"] / base if base is not None and base > 0 else None
            entry[f"{metric}_vs_{REFERENCE}"] = ratio
    return table


def _robust(metric: str, values: list[float]) -> dict[str, float]:
    """rliable's aggregate of one metric over seeds: the IQM and its bootstrap CI."""
    low, high = stats.confidence_interval(values)
    return {
        f"{metric}_iqm": stats.interquartile_mean(values),
        f"{metric}_ci_low": low,
        f"{metric}_ci_high": high,
    }


def _write_tables(out: Path, summary: dict[str, Any]) -> None:
    columns = ["algo", "seeds"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    columns += [f"final_return_vs_{REFERENCE}", f"cumulative_cost_vs_{REFERENCE}"]
    columns += [f"{m}_{s}" for m in AGGREGATED for s in ("iqm", "ci_low", "ci_high")]
    with open(out / TABLE_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(summary["algorithms"])
    (out / TABLE_MD).write_text(_markdown(summary))


def _markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# {summary['task']} at {summary['steps']} env steps ({summary['preset']} preset)",
        "",
        "| algo | seeds | final return | final cost | cumulative cost | wall time (min) "
        f"| return vs {REFERENCE} | cumulative cost vs {REFERENCE} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in summary["algorithms"]:
        cells = [entry["algo"], str(entry["seeds"])]
        cells += [_mean_std(entry, metric) for metric in METRICS[:3]]
        cells.append(_mean_std(entry, "wall_time", scale=1 / 60))
        for metric in ("final_return", "cumulative_cost"):
            ratio = entry[f"{metric}_vs_{REFERENCE}"]
            cells.append("" if ratio is None else f"{ratio:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Final return and final cost: mean over the last {FINAL_FRACTION:.0%} of the training "
        "episodes. Cumulative cost: total over all training episodes. Each cell: mean ± std over "
        f"seeds. vs {REFERENCE}: ratio of the means.",
        "",
        *_robust_markdown(summary["algorithms"]),
    ]
    if summary["missing"]:
        missing = "; ".join(f"{m['run']} ({m['reason']})" for m in summary["missing"])
        lines += ["", f"Not included: {missing}."]
    return "\n".join(lines) + "\n"


def _robust_markdown(algorithms: list[dict[str, Any]]) -> list[str]:
    """The second table: interquartile mean [95% CI] per metric, with the seeds per row."""
    percent = f"{stats.CONFIDENCE:.0%}"
    lines = [
        f"| algo | seeds | final return IQM [{percent} CI] | final cost IQM [{percent} CI] "
        f"| cumulative cost IQM [{percent} CI] |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for entry in algorithms:
        cells = [entry["algo"], str(entry["seeds"])]
        cells += [
            f"{entry[f'{m}_iqm']:.2f} [{entry[f'{m}_ci_low']:.2f}, {entry[f'{m}_ci_high']:.2f}]"
            for m in AGGREGATED
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "IQM: interquartile mean over seeds (the plain mean below 4 seeds). CI: stratified "
        f"bootstrap percentile interval ({stats.REPETITIONS} resamples), as in rliable. Few seeds "
        "make wide intervals: read the seeds column.",
    ]
    return lines


def _mean_std(entry: dict[str, Any], metric: str, scale: float = 1.0) -> str:
    return f"{entry[f'{metric}_mean'] * scale:.2f} ± {entry[f'{metric}_std'] * scale:.2f}"


def _write_plots(
    out: Path,
    request: Request,
    curves: dict[str, list[dict[str, np.ndarray]]],
    algorithms: list[dict[str, Any]],
) -> None:
    """The story's curves and the final numbers, drawn as every viewer draws them
    (`workbench.inspect.figures`), as self-contained HTML (plotly.js inside) that opens anywhere,
    offline."""
    from workbench.inspect import figures

    for key in CURVES:
        lines = {
            algo: _mean_curve(episodes, key, request.steps) for algo, episodes in curves.items()
        }
        title = f"{figures.label(key)} on {request.task} (mean over seeds, band ± std)"
        figure = figures.learning_curves(lines, key, height=450, title=title)
        figure.write_html(out / plot_file(key), include_plotlyjs=True)
    panels = {
        figures.label(metric): {
            e["algo"]: (e[f"{metric}_mean"], e[f"{metric}_std"]) for e in algorithms
        }
        for metric in ("final_return", "cumulative_cost")
    }
    title = f"{request.task} at {request.steps} env steps (mean ± std over seeds)"
    figures.bars(panels, title=title).write_html(out / plot_file("final"), include_plotlyjs=True)


def _mean_curve(
    episodes: list[dict[str, np.ndarray]], key: str, steps: int, points: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each seed's curve on a common grid of env steps (held between episodes), then the mean
    and std over seeds wherever every seed has a value (cumulative cost is 0 before the first
    episode; the other curves start at the last seed's first episode)."""
    grid = np.linspace(0, steps, points + 1)
    before_first = 0.0 if key == "cumulative_cost" else np.nan
    values = np.stack([_held(grid, run["step"], run[key], before_first) for run in episodes])
    defined = ~np.isnan(values).any(axis=0)
    return grid[defined], values[:, defined].mean(axis=0), values[:, defined].std(axis=0)


def _held(grid: np.ndarray, steps: np.ndarray, values: np.ndarray, before: float) -> np.ndarray:
    """The value of the last episode ended at or before each grid step."""
    index = np.searchsorted(steps, grid, side="right") - 1
    return np.where(index >= 0, values[np.maximum(index, 0)], before)


def _report(out: Path, summary: dict[str, Any]) -> None:
    print()
    print(_markdown(summary))
    plots = [plot_file(key) for key in (*CURVES, "final")]
    print(f"written in {out}: {', '.join([COMPARISON_FILE, TABLE_CSV, TABLE_MD, *plots])}")
