"""End to end on the real Safety-Gymnasium pixel task, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from workbench.runs import Run

pytestmark = pytest.mark.real


def workbench(*args: str, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "workbench.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sigkill_then_resume_loses_nothing(tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "workbench.cli", "train", "--preset", "tiny", "--steps", "100000",
        "--device", "cpu", "--run-dir", str(run_dir), "--no-progress",
        "--set", "train.checkpoint_every=40",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            run = Run(run_dir) if run_dir.exists() else None
            if run and len(run.checkpoints()) >= 2 and len(run.episodes()) >= 3:
                break
            assert process.poll() is None, "training died on its own"
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoints within 240 s")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    run = Run(run_dir)
    assert run.status == "crashed"
    checkpoint_step = run.checkpoints()[-1].number
    episodes = {a.path.name: digest(a.path) for a in run.episodes()}
    for artifact in run.episodes():
        assert artifact.load()["obs"].shape[1:] == (64, 64, 3)

    result = workbench(
        "train", "--resume", str(run_dir), "--steps", str(checkpoint_step + 60), "--no-progress"
    )
    assert result.returncode == 0, result.stderr

    run = Run(run_dir)
    assert run.status == "finished"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # no broken line anywhere
    resumed = [r for r in records if r["kind"] == "train" and r["step"] > checkpoint_step]
    assert resumed, "training continued after the checkpoint"
    assert run.checkpoints()[-1].number == checkpoint_step + 60
    after = {a.path.name: digest(a.path) for a in run.episodes()}
    assert all(after[name] == value for name, value in episodes.items()), "saved episodes unchanged"
    assert len(after) > len(episodes)

    report = workbench("eval", str(run_dir), "--episodes", "1", "--json")
    assert report.returncode == 0, report.stderr
    values = json.loads(report.stdout)
    assert values["checkpoint_step"] == checkpoint_step + 60 and values["steps"] == 51


def test_unknown_task_lists_close_matches(tmp_path):
    result = workbench("train", "--task", "SafetyPointGoal7-v0", "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "SafetyPointGoal1-v0" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists(), "a rejected command leaves nothing behind"


def test_bad_config_value_is_one_clear_line(tmp_path):
    result = workbench("train", "--set", "train.batch_size=-3", "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and "train.batch_size must be positive" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_of_a_run_without_checkpoint_says_so(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    result = workbench("eval", str(tmp_path))
    assert result.returncode == 2 and "no checkpoint yet" in result.stderr
