"""Reliability: nothing a command was not asked to write is ever overwritten, a failed start
leaves nothing behind, a killed writer's temporary files are cleaned, a diverging run stops at
its last good checkpoint, a full disk loses nothing, and readers never block the writer."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workbench import checkpoint
from workbench.cli import main
from workbench.config import resolve
from workbench.engine import Engine
from workbench.runs import RUN_FILE, Run


def tiny(**overrides):
    """The `tiny` preset on CPU (120 env steps, checkpoints at 60 and 120)."""
    return resolve("tiny", {"train.device": "cpu", **overrides})


@pytest.fixture
def finished_run(fake_envs, tmp_path) -> Path:
    """A finished tiny run on the fake task: 2 episodes, checkpoints at steps 60 and 120."""
    run_dir = tmp_path / "run"
    Engine(tiny(), run_dir, progress=False).train()
    return run_dir


def hashes(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# --- 1. nothing overwritten ---------------------------------------------------------------


def test_dataset_build_refuses_a_run_directory_and_a_non_empty_folder(
    finished_run, tmp_path, capsys
):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for target in (finished_run, other):
        before = hashes(target)
        code = main(
            ["dataset", "build", "--out", str(target), "--episodes", "1"] + ["--policy", "random"]
        )
        assert code == 2 and hashes(target) == before
        assert f"--out {target}" in capsys.readouterr().err


def test_resume_without_a_readable_checkpoint_refuses_and_changes_nothing(finished_run, capsys):
    for found in Run(finished_run).checkpoints():
        found.path.write_bytes(b"damaged")
    before = hashes(finished_run)
    assert main(["train", "--resume", str(finished_run), "--steps", "200", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none of the 2 checkpoints" in err and "--run-dir" in err
    assert hashes(finished_run) == before, "episodes, metrics and run.json are untouched"
    assert Run(finished_run).status == "finished"


def test_a_run_with_no_checkpoint_yet_is_not_restarted_from_zero(finished_run):
    shutil.rmtree(finished_run / "checkpoints")
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint yet"):
        Engine.resume(finished_run, steps=200, progress=False)
    assert len(Run(finished_run).episodes()) == 2


def test_damaged_checkpoints_neither_count_toward_keep_nor_cost_good_ones(finished_run):
    # Two good checkpoints (60, 120), then two damaged newer ones (a disk error, say).
    for step in (130, 140):
        checkpoint.checkpoint_path(finished_run, step).write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="damaged"):
        engine = Engine.resume(finished_run, steps=240, progress=False)
    assert engine.step == 120
    engine.train()  # saves 180 and 240 with keep_checkpoints=3
    numbers = [c.number for c in Run(finished_run).checkpoints()]
    assert numbers == [120, 130, 140, 180, 240], "the 3 newest readable kept, damaged untouched"


def test_a_failed_resume_leaves_a_finished_runs_status_alone(finished_run, capsys):
    bad_episode = finished_run / "episodes" / "ep_000001.npz"
    bad_episode.write_bytes(bad_episode.read_bytes()[:100])  # truncated
    before = hashes(finished_run)
    assert main(["train", "--resume", str(finished_run), "--steps", "200", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "ep_000001.npz" in err and err.count("\n") == 1
    assert hashes(finished_run) == before
    assert json.loads((finished_run / RUN_FILE).read_text())["status"] == "finished"


def test_a_failed_start_leaves_nothing_that_blocks_running_it_again(fake_envs, tmp_path, capsys):
    from workbench.engine import Engine, Factories
    from workbench.envs import RenderingError

    run_dir = tmp_path / "new" / "run"
    command = ["train", "--preset", "tiny", "--device", "cpu", "--run-dir", str(run_dir)]

    def broken(*args, **kwargs):
        raise RenderingError("MuJoCo cannot render here (MUJOCO_GL=bogus)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Engine, "factories", Factories(envs=broken))
        assert main(command + ["--no-progress"]) == 2
    assert "MUJOCO_GL=bogus" in capsys.readouterr().err
    assert not (tmp_path / "new").exists(), "the folders the start created are gone again"
    assert main(command + ["--no-progress"]) == 0, "the same command now runs"


def test_a_new_episode_never_overwrites_a_saved_one_after_a_gap(finished_run):
    (finished_run / "episodes" / "ep_000000.npz").unlink()  # moved out by the user
    engine = Engine.resume(finished_run, steps=240, progress=False)
    assert engine.replay.num_episodes == 2
    kept = hashes(finished_run / "episodes")
    engine.train()
    after = hashes(finished_run / "episodes")
    assert all(after[name] == digest for name, digest in kept.items())


# --- 3. leftovers -------------------------------------------------------------------------


def test_a_killed_writers_temporary_files_are_never_listed_and_removed_on_resume(finished_run):
    leftovers = [
        finished_run / "checkpoints" / ".ckpt_000000180.pt.tmp99999",
        finished_run / "snapshots" / ".snap_00000009.npz.tmp99999",
        finished_run / "episodes" / ".ep_000002.npz.tmp99999",
        finished_run / ".run.json.tmp99999",
    ]
    for path in leftovers:
        path.write_bytes(b"half written")
    run = Run(finished_run)
    listed = run.checkpoints() + run.snapshots() + run.episodes() + run.evaluations()
    assert not {a.path for a in listed} & set(leftovers), "readers never see them"
    assert Run(finished_run).status == "finished"
    Engine.resume(finished_run, steps=200, progress=False).close("stopped")
    assert not any(path.exists() for path in leftovers)


# --- 4. NaN and divergence ----------------------------------------------------------------


@pytest.fixture
def nan_loss_at_update(monkeypatch):
    """Make the world model report a NaN loss at update 4 (env step 100: after the checkpoint
    at 60, before the one at 120)."""
    from workbench.world_model import WorldModel

    original = WorldModel.train_step
    calls = []

    def train_step(self, batch):
        metrics, posterior = original(self, batch)
        calls.append(1)
        if len(calls) == 4:
            metrics["wm/loss"] = float("nan")
        return metrics, posterior

    monkeypatch.setattr(WorldModel, "train_step", train_step)


def test_a_non_finite_loss_stops_the_run_at_its_last_good_checkpoint(
    fake_envs, nan_loss_at_update, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    command = ["train", "--preset", "tiny", "--device", "cpu", "--no-progress"]
    assert main(command + ["--run-dir", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wm/loss became nan at step 100" in err
    assert "ckpt_000000060.pt" in err, "names the last good checkpoint"
    run = Run(run_dir)
    assert [c.number for c in run.checkpoints()] == [60], "nothing saved after the NaN"
    assert run.status == "crashed"
    assert checkpoint.load_latest(run_dir)["step"] == 60


@pytest.fixture
def nan_gradient_at_update(monkeypatch):
    """Make the world model's loss, and so its gradient, NaN at update 4 (env step 100)."""
    from workbench.world_model import WorldModel

    original = WorldModel.loss
    calls = []

    def loss(self, batch):
        total, metrics, posterior = original(self, batch)
        calls.append(1)
        if len(calls) == 4:
            return total * float("nan"), {**metrics, "wm/loss": float("nan")}, posterior
        return total, metrics, posterior

    monkeypatch.setattr(WorldModel, "loss", loss)


@pytest.mark.parametrize("allowed", [0, 1])
def test_a_bad_update_is_skipped_only_as_often_as_allowed(
    fake_envs, nan_gradient_at_update, tmp_path, allowed
):
    import torch

    from workbench.runs import DivergenceError

    engine = Engine(tiny(**{"train.skip_bad_updates": allowed}), tmp_path / "run", progress=False)
    if not allowed:
        with pytest.raises(DivergenceError, match=r"wm/loss became nan at step 100 \(update 4\)"):
            engine.train()
        return
    skipped = r"wm/loss became nan at step 100 \(update 4\): update skipped, 1 of .*=1"
    with pytest.warns(UserWarning, match=skipped):
        assert engine.train() == "finished"
    for part in (engine.world_model, engine.agent):  # the NaN gradient was never applied
        assert all(torch.isfinite(p).all() for p in part.parameters())
    assert [c.number for c in Run(tmp_path / "run").checkpoints()] == [60, 120]


def test_a_non_finite_parameter_is_never_checkpointed(fake_envs, tmp_path):
    from workbench.hooks import Hook
    from workbench.runs import DivergenceError

    class Poison(Hook):
        """Spoils a weight in the middle of update 5 (step 110), as a bad update would."""

        def on_train_start(self, event):
            self.engine = event.engine

        def on_imagination_event(self, event):
            if event.update == 5:
                next(self.engine.agent.parameters()).data.fill_(float("inf"))

    engine = Engine(tiny(), tmp_path / "run", [Poison()], progress=False)
    with pytest.raises(DivergenceError, match="parameter agent.* not finite at step 110"):
        engine.train()
    assert [c.number for c in Run(tmp_path / "run").checkpoints()] == [60]


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    import torch

    from workbench.runs import DivergenceError

    state = {"world_model": {"w": torch.tensor([1.0, float("nan")])}, "agent": {}}
    with pytest.raises(DivergenceError, match="world_model.w is not finite at step 7"):
        checkpoint.save(tmp_path, 7, state, keep=3)
    assert not Run(tmp_path).checkpoints()


# --- 6. disk full -------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)]
    if subprocess.run(command, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


class Ballast:
    """A hook that fills the disk, leaving `room` bytes, once `when(event)` holds."""

    def __init__(self, disk: Path, event: str, when, room: int = 100_000):
        self.file, self.room, self.when = disk / "ballast", room, when
        setattr(self, f"on_{event}", self._fill)

    def _fill(self, event) -> None:
        if self.when(event) and not self.file.exists():
            free = shutil.disk_usage(self.file.parent).free
            self.file.write_bytes(b"\0" * max(free - self.room, 0))


@pytest.mark.parametrize(
    ("target", "event", "when"),
    [
        # after the checkpoint at step 60 the next big write is episode 2, at step 100
        ("episode", "checkpoint", lambda e: e.step == 60),
        # after episode 2 (step 100) the next big write is the checkpoint at step 120
        ("checkpoint", "episode_end", lambda e: e.episode == 2),
    ],
)
def test_a_full_disk_loses_nothing_and_says_disk_full(
    fake_envs, small_disk, target, event, when, monkeypatch, capsys
):
    import workbench.cli

    ballast = Ballast(small_disk, event, when)
    monkeypatch.setattr(workbench.cli, "_sink_hooks", lambda args: [ballast])
    run_dir = small_disk / "run"
    command = ["train", "--preset", "tiny", "--device", "cpu", "--no-progress"]
    command += ["--set", "train.snapshot_every=0", "--run-dir", str(run_dir)]
    assert main(command) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk full" in err and target[:4] in err, err
    run = Run(run_dir)
    assert run.status == "crashed"
    assert [c.number for c in run.checkpoints()] == [60]
    assert checkpoint.load_latest(run_dir)["step"] == 60, "the previous checkpoint is readable"
    assert len(run.episodes()) == (1 if target == "episode" else 2)
    for episode in run.episodes():
        episode.load()
    assert not list(run_dir.rglob(".*.tmp*")), "the half-written file is gone"
    ballast.file.unlink()  # space freed: the run continues
    monkeypatch.setattr(workbench.cli, "_sink_hooks", lambda args: [])
    assert main(["train", "--resume", str(run_dir), "--steps", "160", "--no-progress"]) == 0
    assert Run(run_dir).status == "finished"


def test_a_full_disk_mid_write_leaves_the_previous_file_whole(finished_run, monkeypatch):
    """Without a small disk to fill: a checkpoint write that fails with ENOSPC half-way."""
    import errno

    from workbench.runs import DiskFullError

    def fail_half_way(payload, tmp):
        tmp.write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    monkeypatch.setattr(checkpoint, "_write", fail_half_way)
    engine = Engine.resume(finished_run, steps=240, progress=False)
    with pytest.raises(DiskFullError, match="disk full while writing .*ckpt_000000180.pt"):
        engine.train()
    assert [c.number for c in Run(finished_run).checkpoints()] == [60, 120]
    assert checkpoint.load_latest(finished_run)["step"] == 120
    assert not list(finished_run.rglob(".*.tmp*"))


# --- 7. concurrent readers ----------------------------------------------------------------


def read_consistently(run_dir: Path, done, problems: list[str]) -> int:
    """Follow a run being written, as a dashboard does, until `done` is set; record anything
    inconsistent in `problems`; return how many times it looked."""
    from workbench.runs import load_snapshot

    run, looks = Run(run_dir), 0
    while not done.is_set():
        looks += 1
        try:
            logged = [r["episode"] for r in run.metrics("episode")]
            saved = run.episodes()  # saved before their metrics line is written
            if logged != sorted(logged) or len(saved) < len(logged):
                problems.append(f"episodes: {len(saved)} saved, logged {logged}")
            for episode in saved:
                episode.load()
            for snapshot in run.snapshots():
                load_snapshot(snapshot)
            for found in run.checkpoints():
                _load_unless_pruned(found.path)
            assert run.status in ("running", "finished")
        except Exception as error:  # anything a reader trips over is a problem
            problems.append(f"{type(error).__name__}: {error}")
    return looks


def _load_unless_pruned(path: Path) -> None:
    try:
        checkpoint.load(path)
    except checkpoint.CheckpointError:
        if path.exists():  # pruned (keep_checkpoints) between listing and reading: fine
            raise


def test_readers_and_an_eval_see_consistent_data_and_never_block_the_writer(fake_envs, tmp_path):
    from workbench.evaluation import evaluate_run

    repo = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "run"
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.kill_target", "train", "--preset", "tiny", "--device"]
        + ["cpu", "--steps", "300", "--set", "train.checkpoint_every=30", "--no-progress"]
        + ["--run-dir", str(run_dir)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while not Run(run_dir).checkpoints() if run_dir.is_dir() else True:
        assert writer.poll() is None, writer.stderr.read().decode()
        time.sleep(0.05)
    done, problems, looks = threading.Event(), [], []
    readers = [
        threading.Thread(target=lambda: looks.append(read_consistently(run_dir, done, problems)))
        for _ in range(2)
    ]
    for reader in readers:
        reader.start()
    report = evaluate_run(run_dir, episodes=1)  # meanwhile, `workbench eval` on it
    writer_code = writer.wait(timeout=120)
    done.set()
    for reader in readers:
        reader.join()
    assert writer_code == 0, writer.stderr.read().decode()
    assert not problems, problems[:5]
    assert min(looks) >= 2 and report["checkpoint_step"] >= 30
    assert Run(run_dir).status == "finished" and not (run_dir / ".lock").exists()
