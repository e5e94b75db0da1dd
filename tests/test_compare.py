"""`workbench compare`: the summary's numbers on hand-written runs, partial comparisons, the plan
(skip, resume, start), and one real comparison end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from argparse import Namespace

import numpy as np
import pytest

from workbench import compare, executors, runs
from workbench.cli import main
from workbench.compare import Job
from workbench.config import resolve
from workbench.runs import RunError, RunWriter, read_json, write_json

STEPS = 100


def make_request(out, algos, seeds=(0, 1), preset="tiny", sets=()):
    write_json(out / runs.COMPARISON_FILE, {
        "schema": compare.SCHEMA, "task": "SafetyPointGoal1-v0", "preset": preset,
        "steps": STEPS, "algos": list(algos), "seeds": list(seeds), "sets": list(sets),
        "device": "cpu",
    })  # fmt: skip


def make_run(
    out, algo, seed, episodes, *, status="finished", reached=STEPS, wall=60.0, overrides=None
):
    """A run directory written by hand; `episodes` holds (step, return, cost) per episode."""
    run_dir = out / runs.COMPARISON_RUNS / compare.run_name(algo, seed)
    overrides = {"algo": algo, "train.seed": seed, "train.steps": STEPS, **(overrides or {})}
    writer = RunWriter(run_dir, config=resolve("tiny", overrides).to_dict())
    writer.log("start", 0, {"resumed": False})
    cumulative = 0.0
    for step, ret, cost in episodes:
        cumulative += cost
        values = {"return": ret, "cost": cost, "length": 10, "cumulative_cost": cumulative}
        writer.log("episode", step, values)
    # The engine always saves a checkpoint when training ends; its step is the step reached.
    (run_dir / "checkpoints" / f"ckpt_{reached:09d}.pt").write_bytes(b"")
    writer.close(status)
    info = read_json(run_dir / "run.json")
    write_json(run_dir / "run.json", {**info, "updated": info["created"] + wall})
    return run_dir


def ten_episodes(returns, cost):
    """Episodes of 10 steps, logged as the engine does with the step count before their last
    step (9, 19, ..., 99), then one that ended past the comparison's steps (ignored)."""
    return [(10 * i + 9, r, cost) for i, r in enumerate(returns)] + [(STEPS, 1e6, 1e6)]


def test_summary_numbers_are_exact(tmp_path):
    make_request(tmp_path, ["dreamer", "bsrp-lag"])
    make_run(tmp_path, "dreamer", 0, ten_episodes(range(1, 11), cost=2), wall=60)
    make_run(tmp_path, "dreamer", 1, ten_episodes(range(11, 21), cost=4), wall=180)
    make_run(tmp_path, "bsrp-lag", 0, ten_episodes([i / 2 for i in range(1, 11)], cost=1))
    make_run(tmp_path, "bsrp-lag", 1, ten_episodes([i / 2 for i in range(11, 21)], cost=0))

    summary = compare.summarise(tmp_path)

    assert summary["missing"] == []
    assert [row["episodes"] for row in summary["runs"]] == [10, 10, 10, 10]
    dreamer, bsrp = summary["algorithms"]
    # Final return: mean of the last 20% (2 of 10) episodes; then mean and std over seeds.
    assert dreamer["final_return_mean"] == 14.5 and dreamer["final_return_std"] == 5.0
    assert dreamer["final_cost_mean"] == 3.0 and dreamer["final_cost_std"] == 1.0
    assert dreamer["cumulative_cost_mean"] == 30.0 and dreamer["cumulative_cost_std"] == 10.0
    assert dreamer["wall_time_mean"] == pytest.approx(120.0)
    assert bsrp["final_return_mean"] == 7.25 and bsrp["final_return_std"] == 2.5
    assert bsrp["cumulative_cost_mean"] == 5.0 and bsrp["cumulative_cost_std"] == 5.0
    assert bsrp["final_return_vs_dreamer"] == 0.5
    assert bsrp["cumulative_cost_vs_dreamer"] == pytest.approx(1 / 6)
    assert dreamer["final_return_vs_dreamer"] == 1.0

    with open(tmp_path / "table.csv") as f:
        table = {row["algo"]: row for row in csv.DictReader(f)}
    assert float(table["bsrp-lag"]["cumulative_cost_vs_dreamer"]) == pytest.approx(1 / 6)
    assert float(table["dreamer"]["final_return_mean"]) == 14.5
    markdown = (tmp_path / "table.md").read_text()
    assert (
        "| bsrp-lag | 2 | 7.25 ± 2.50 | 0.50 ± 0.50 | 5.00 ± 5.00 | 1.00 ± 0.00 | 0.50 | 0.17 |"
        in markdown
    )
    assert json.loads((tmp_path / runs.COMPARISON_FILE).read_text()) == summary
    for name in ("return", "cost", "cumulative_cost", "final"):
        html = (tmp_path / f"{name}.html").read_text()
        assert "plotly" in html and "bsrp-lag" in html and "<script src=" not in html


def test_curves_are_the_mean_over_seeds_with_a_std_band():
    seeds = [
        {"step": np.array([10.0, 30.0]), "return": np.array([1.0, 3.0])},
        {"step": np.array([20.0, 30.0]), "return": np.array([5.0, 7.0])},
    ]
    for run in seeds:
        run["cumulative_cost"] = run["return"]
    steps, mean, std = compare._mean_curve(seeds, "cumulative_cost", steps=40, points=4)
    assert steps.tolist() == [0, 10, 20, 30, 40]  # cumulative cost is 0 before any episode
    assert mean.tolist() == [0, 0.5, 3, 5, 5] and std.tolist() == [0, 0.5, 2, 2, 2]
    steps, mean, std = compare._mean_curve(seeds, "return", steps=40, points=4)
    assert steps.tolist() == [20, 30, 40]  # an episode curve starts once every seed has one
    assert mean.tolist() == [3, 5, 5] and std.tolist() == [2, 2, 2]


def test_a_resumed_run_counts_each_stretch_of_steps_once(tmp_path):
    make_request(tmp_path, ["dreamer"], seeds=[0])
    # Killed after step 60 with its newest checkpoint at 40 ...
    episodes = [(9, 1, 0), (19, 1, 0), (29, 1, 0), (39, 1, 0), (49, 9, 5), (59, 9, 5)]
    run_dir = make_run(tmp_path, "dreamer", 0, episodes, status="crashed")
    # ... then resumed from step 40: the steps after 40 are played and logged again.
    writer = RunWriter(run_dir, config={}, resume=True)
    writer.log("start", 40, {"resumed": True})
    for step in range(49, STEPS, 10):
        writer.log("episode", step, {"return": 2, "cost": 1, "cumulative_cost": (step - 39) // 10})
    writer.close("finished")

    (row,) = compare.summarise(tmp_path)["runs"]
    assert row["episodes"] == 10
    assert row["final_return"] == 2.0 and row["cumulative_cost"] == 6.0


def test_a_partial_comparison_is_summarised_and_says_what_is_missing(tmp_path, capsys):
    make_request(tmp_path, ["dreamer", "bsrp-lag"], seeds=[0, 1, 2])
    make_run(tmp_path, "dreamer", 0, ten_episodes(range(10), cost=1))
    make_run(tmp_path, "dreamer", 1, ten_episodes(range(10), cost=1), status="crashed")
    make_run(tmp_path, "dreamer", 2, [(STEPS, 1, 1)])
    make_run(tmp_path, "bsrp-lag", 1, ten_episodes(range(10), cost=1), reached=60)

    assert main(["compare", "--summarise", str(tmp_path)]) == 0

    summary = read_json(tmp_path / runs.COMPARISON_FILE)
    assert [row["run"] for row in summary["runs"]] == ["dreamer-s0"]
    assert summary["missing"] == [
        {"run": "dreamer-s1", "reason": "crashed"},
        {"run": "dreamer-s2", "reason": f"no episode ended within {STEPS} steps"},
        {"run": "bsrp-lag-s0", "reason": "not started"},
        {"run": "bsrp-lag-s1", "reason": f"finished at 60 of {STEPS} steps"},
        {"run": "bsrp-lag-s2", "reason": "not started"},
    ]
    assert [entry["algo"] for entry in summary["algorithms"]] == ["dreamer"]
    printed = capsys.readouterr().out
    assert "| dreamer | 1 | 8.50 ± 0.00 |" in printed and "dreamer-s1 (crashed)" in printed
    assert (tmp_path / "final.html").exists()


def test_summarise_refuses_a_directory_that_is_no_comparison(tmp_path):
    with pytest.raises(RunError, match="workbench compare --out"):
        compare.summarise(tmp_path)


def plan_request(seeds):
    args = Namespace(
        algos=["dreamer"], seeds=seeds, preset="tiny", task=None, steps=STEPS, device="cpu",
        set=["agent.cost_limit=5"],
    )  # fmt: skip
    return compare.Request.resolve(args)


def test_plan_skips_finished_runs_resumes_unfinished_ones_and_starts_the_rest(tmp_path):
    request, configs = plan_request(seeds=[0, 1, 2])
    same = {"agent.cost_limit": 5}
    make_run(tmp_path, "dreamer", 0, ten_episodes(range(10), 0), overrides=same)
    crashed = make_run(tmp_path, "dreamer", 1, [], status="crashed", overrides=same)

    jobs = compare._plan(tmp_path, request, configs)

    assert [job.name for job in jobs] == ["dreamer-s1", "dreamer-s2"]
    resume, start = (command[command.index("train") :] for command in map(Job.command, jobs))
    assert resume == ["train", "--no-progress", "--resume", str(crashed), "--steps", str(STEPS)]
    assert start[start.index("--run-dir") + 1] == str(
        tmp_path / runs.COMPARISON_RUNS / "dreamer-s2"
    )
    assert start[start.index("--seed") + 1] == "2" and "--set=agent.cost_limit=5" in start


def test_plan_refuses_a_run_trained_with_other_settings(tmp_path):
    request, configs = plan_request(seeds=[0])
    make_run(tmp_path, "dreamer", 0, [], status="crashed")  # the preset's cost limit, not 5
    with pytest.raises(RunError, match="other settings \\(agent.cost_limit\\)"):
        compare._plan(tmp_path, request, configs)


def test_unknown_algo_is_a_one_line_error(tmp_path, capsys):
    assert main(["compare", "--algos", "dreamer,nope", "--out", str(tmp_path)]) == 2
    assert "unknown algo nope" in capsys.readouterr().err


def test_ray_executor_without_ray_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    for key, value in executors.SINGLE_MACHINE_RAY.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "cmp"
    assert main(["compare", "--algos", "dreamer", "--executor", "ray", "--out", str(out)]) == 2
    assert "pip install 'workbench[distributed]'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.real
def test_a_real_comparison_end_to_end_then_resumed(tmp_path):
    out = tmp_path / "cmp"
    command = [
        sys.executable, "-m", "workbench.cli", "compare", "--preset", "tiny", "--algos", "dreamer",
        "--seeds", "0,1", "--steps", "80", "--device", "cpu", "--parallel", "2", "--out", str(out),
    ]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    summary = read_json(out / runs.COMPARISON_FILE)
    assert [row["run"] for row in summary["runs"]] == ["dreamer-s0", "dreamer-s1"]
    assert summary["algorithms"][0]["seeds"] == 2 and summary["missing"] == []
    assert "| dreamer | 2 |" in (out / "table.md").read_text()
    for name in ("return", "cost", "cumulative_cost", "final"):
        assert "plotly" in (out / f"{name}.html").read_text()
    assert (out / "logs" / "dreamer-s0.log").read_text().count("training finished") == 1

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already finished, skipped: dreamer-s0, dreamer-s1" in again.stdout
    assert (out / "logs" / "dreamer-s0.log").read_text().count("training finished") == 1
