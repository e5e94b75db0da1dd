"""The kill campaign: SIGKILL a `tiny` training run at random moments (while it trains, while
a resume starts up, in the middle of a checkpoint write), resume it each time, and check after
every kill that nothing written before is lost or damaged: every complete metrics line parses,
every episode, snapshot and checkpoint loads, no episode ever changes or disappears, and the
newest checkpoint never goes back. Finally the run resumes to a clean finish.

CI runs a short campaign (WORKBENCH_KILLS unset: 3 kills); run the full one by hand:

    WORKBENCH_KILLS=12 pytest tests/test_kill_campaign.py -s
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from workbench import checkpoint
from workbench.runs import CHECKPOINTS, Run, load_snapshot

REPO = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("WORKBENCH_KILLS", "3"))
MODES = ("training", "resume start-up", "checkpoint write")
STEPS = 5000
"""Far more than the campaign reaches, so no session finishes before its kill."""
FLAGS = ["--set", "train.checkpoint_every=40", "--set", "train.keep_checkpoints=2"]


def launch(run_dir: Path) -> subprocess.Popen:
    """A training session on the fake task: a new run, or a resume of the one there."""
    if (run_dir / "config.json").exists():
        args = ["train", "--resume", str(run_dir), "--steps", str(STEPS)]
    else:
        args = ["train", "--preset", "tiny", "--device", "cpu", "--steps", str(STEPS)]
        args += FLAGS + ["--run-dir", str(run_dir)]
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "WORKBENCH_SLOW_CHECKPOINTS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.kill_target", *args, "--no-progress"],
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 60.0) -> bool:
    """Poll `condition` until true; False if the process ended or time ran out first."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.005)
    return False


def training(run_dir: Path, process: subprocess.Popen) -> bool:
    """Whether this session has started training (it wrote run.json with its pid)."""
    try:
        return Run(run_dir).info().get("pid") == process.pid
    except Exception:  # not written yet, or being replaced
        return False


def writing_checkpoint(run_dir: Path) -> bool:
    return any(p.name.startswith(".") for p in (run_dir / CHECKPOINTS).glob("*.tmp*"))


def kill(process: subprocess.Popen, mode: str, run_dir: Path, rng: random.Random) -> str:
    """SIGKILL the session at a moment of `mode`; returns what happened."""
    if mode == "resume start-up":
        time.sleep(rng.uniform(0.1, 2.5))
    elif mode == "training":
        wait_for(lambda: training(run_dir, process), process)
        time.sleep(rng.uniform(0.0, 1.5))
    else:
        wait_for(lambda: writing_checkpoint(run_dir), process)
    if process.poll() is not None:
        return f"ended by itself ({process.returncode}): {process.stderr.read().decode()[-300:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    return "killed"


class Ledger:
    """What the run held after each kill; everything in it must still be there, unchanged."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.episodes: dict[str, str] = {}
        self.newest_checkpoint = -1

    def check(self) -> None:
        run = Run(self.run_dir)
        assert run.status in ("crashed", "finished"), run.status
        run.metrics()
        assert run.skipped_lines == 0, "every complete metrics line parses"
        episodes = {a.path.name: _digest(a.path) for a in run.episodes()}
        for artifact in run.episodes():
            assert artifact.load()["obs"].shape[1:] == (64, 64, 3)
        for name, digest in self.episodes.items():
            assert episodes.get(name) == digest, f"episode {name} changed or vanished"
        self.episodes = episodes
        for snapshot in run.snapshots():
            load_snapshot(snapshot)
        for found in run.checkpoints():
            checkpoint.load(found.path)  # every listed checkpoint is whole
        if run.checkpoints():
            newest = run.checkpoints()[-1].number
            assert newest >= self.newest_checkpoint, "the newest checkpoint never goes back"
            self.newest_checkpoint = newest


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_campaign(tmp_path):
    rng = random.Random(int(os.environ.get("WORKBENCH_KILL_SEED", "0")))
    run_dir = tmp_path / "run"
    ledger = Ledger(run_dir)
    log = []
    while sum(outcome == "killed" for _, outcome in log) < KILLS:
        process = launch(run_dir)
        if not checkpoint_saved(run_dir):  # the first session: kill it once it can be resumed
            wait_for(lambda: checkpoint_saved(run_dir), process)
            mode = "training"
        else:
            mode = MODES[len(log) % len(MODES)]
        log.append((mode, kill(process, mode, run_dir, rng)))
        assert log[-1][1] == "killed", log
        ledger.check()
    print("\n".join(f"kill {i + 1}: {mode}: {outcome}" for i, (mode, outcome) in enumerate(log)))
    finish = ledger.newest_checkpoint + 20
    result = subprocess.run(
        [sys.executable, "-m", "tests.kill_target", "train", "--resume", str(run_dir)]
        + ["--steps", str(finish), "--no-progress"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    ledger.check()
    run = Run(run_dir)
    assert run.status == "finished" and run.checkpoints()[-1].number == finish
    assert not list(run_dir.rglob(".*.tmp*")), "no leftovers after a resume"


def checkpoint_saved(run_dir: Path) -> bool:
    return bool(Run(run_dir).checkpoints()) if run_dir.is_dir() else False
