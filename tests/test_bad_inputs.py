"""Every mistake a user can make is one line on stderr naming the culprit, exit code 2, no
traceback, and nothing on disk changed: a table of bad command lines against one world of
files (a finished run, a damaged copy, the shipped inspection-only run, a file, a non-empty
folder, an immutable folder)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.fakes import FAKE_FACTORIES, fake_env
from workbench.cli import main
from workbench.config import resolve
from workbench.runs import checkpoint_path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "pointgoal1-barrier"


def _with_fake_envs(patch: pytest.MonkeyPatch) -> None:
    import workbench.evaluation
    from workbench.engine import Engine

    patch.setattr(Engine, "factories", FAKE_FACTORIES)
    patch.setattr(workbench.evaluation, "make_env", fake_env)


def _immutable(folder: Path) -> bool:
    """Make `folder` immutable (chattr +i); False where that is not possible."""
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The files every row runs against (built once; each row checks it left them alone)."""
    from workbench.engine import Engine

    root = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as patch:
        _with_fake_envs(patch)
        Engine(resolve("tiny", {"train.device": "cpu"}), root / "run", progress=False).train()
    shutil.copytree(root / "run", root / "truncated")
    episode = root / "truncated" / "episodes" / "ep_000001.npz"
    episode.write_bytes(episode.read_bytes()[:200])
    shutil.copytree(root / "run", root / "damaged")
    for step in (60, 120):
        checkpoint_path(root / "damaged", step).write_bytes(b"not a checkpoint")
    shutil.copytree(root / "run", root / "no_checkpoint")
    shutil.rmtree(root / "no_checkpoint" / "checkpoints")
    shutil.copytree(SHIPPED, root / "shipped")
    (root / "a_file").write_text("a file")
    (root / "notes").mkdir()
    (root / "notes" / "keep.txt").write_text("mine")
    (root / "empty").mkdir()
    (root / "locked").mkdir()
    locked = _immutable(root / "locked")
    yield root, locked
    if locked:
        subprocess.run(["chattr", "-i", str(root / "locked")], check=True)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root`: folders as 'dir', files as their sha256."""
    return {
        str(path.relative_to(root)): "dir"
        if path.is_dir()
        else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
    }


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is there")
TRAIN = ["train", "--preset", "tiny", "--no-progress"]
RESUME = ["train", "--resume", "{root}/run", "--no-progress"]


def row(name: str, argv: list[str], culprit: str, marks=()) -> pytest.param:
    """One bad command line ({root} is the world's folder) and what its error must name."""
    return pytest.param(argv, culprit, id=name, marks=marks)


ROWS = [
    # (id, argv ({root} is the world), what the line must name)
    row("run-dir is a file", TRAIN + ["--run-dir", "{root}/a_file"], "--run-dir"),
    row("run-dir under /proc", TRAIN + ["--run-dir", "/proc/workbench/run"], "--run-dir"),
    row("run-dir in an immutable folder", TRAIN + ["--run-dir", "{root}/locked/run"], "--run-dir"),
    row("run-dir holds a run", TRAIN + ["--run-dir", "{root}/run"], "--resume"),
    row("run-dir not empty", TRAIN + ["--run-dir", "{root}/notes"], "--run-dir"),
    row("steps 0", TRAIN + ["--steps", "0", "--run-dir", "{root}/new"], "--steps"),
    row("steps negative", TRAIN + ["--steps", "-5", "--run-dir", "{root}/new"], "--steps"),
    row("steps not a number", TRAIN + ["--steps", "ten", "--run-dir", "{root}/new"], "--steps"),
    row("seed negative", TRAIN + ["--seed", "-1", "--run-dir", "{root}/new"], "--seed"),
    row("seed not a number", TRAIN + ["--seed", "x", "--run-dir", "{root}/new"], "--seed"),
    row("unknown preset", ["train", "--preset", "huge"], "--preset"),
    row("unknown algo", ["train", "--algo", "nope"], "--algo"),
    row("unknown task", TRAIN + ["--task", "SafetyPointGaol1-v0", "--run-dir", "{root}/new"], "Gaol"),
    row("lr nan", TRAIN + ["--set", "model.lr=nan", "--run-dir", "{root}/new"], "model.lr"),
    row("lr inf", TRAIN + ["--set", "model.lr=inf", "--run-dir", "{root}/new"], "model.lr"),
    row("unknown key", TRAIN + ["--set", "model.deepth=3", "--run-dir", "{root}/new"], "model.deepth"),
    row("no equals sign", TRAIN + ["--set", "model.lr", "--run-dir", "{root}/new"], "model.lr"),
    row("key of wrong type", TRAIN + ["--set", "train.steps=many", "--run-dir", "{root}/n"], "train.steps"),
    row("non-positive size", TRAIN + ["--set", "model.deter=0", "--run-dir", "{root}/new"], "model.deter"),
    row("negative skips", TRAIN + ["--set", "train.skip_bad_updates=-1", "--run-dir", "{root}/n"], "train.skip_bad_updates"),
    row(
        "batch longer than the prefill",
        TRAIN + ["--set", "train.batch_length=500", "--run-dir", "{root}/new"],
        "train.batch_length",
    ),
    row("unknown device", TRAIN + ["--device", "tpu", "--run-dir", "{root}/new"], "tpu"),
    row(
        "cuda without CUDA",
        TRAIN + ["--device", "cuda", "--run-dir", "{root}/new"],
        "cuda",
        marks=NO_CUDA,
    ),
    row("offline algo without dataset", TRAIN + ["--algo", "lspc", "--run-dir", "{root}/n"], "--dataset"),
    row("dataset missing", TRAIN + ["--algo", "lspc", "--dataset", "{root}/nowhere"], "nowhere"),
    row("resume missing", ["train", "--resume", "{root}/nowhere"], "nowhere"),
    row("resume a file", ["train", "--resume", "{root}/a_file"], "a_file"),
    row("resume an empty folder", ["train", "--resume", "{root}/empty"], "holds no run"),
    row("resume with --set", RESUME + ["--set", "model.lr=1e-3"], "--set"),
    row("resume with --algo", RESUME + ["--algo", "cerl"], "--algo"),
    row("resume with --seed", RESUME + ["--seed", "3"], "--seed"),
    row("resume with --preset", RESUME + ["--preset", "tiny"], "--preset"),
    row("resume with --task", RESUME + ["--task", "SafetyCarGoal1-v0"], "--task"),
    row("resume with --run-dir", RESUME + ["--run-dir", "{root}/other"], "--run-dir"),
    row("resume with negative steps", RESUME + ["--steps", "-5"], "--steps"),
    row("resume a finished run", RESUME, "--steps"),
    row("resume with fewer steps", RESUME + ["--steps", "100"], "--steps"),
    row("resume truncated episode", ["train", "--resume", "{root}/truncated", "--steps", "200"], "ep_000001.npz"),
    row("resume damaged checkpoints", ["train", "--resume", "{root}/damaged", "--steps", "200"], "ckpt_"),
    row("resume without checkpoint", ["train", "--resume", "{root}/no_checkpoint", "--steps", "200"], "checkpoint"),
    row("resume the shipped run", ["train", "--resume", "{root}/shipped", "--steps", "30000"], "inspection"),
    row(
        "resume on cuda without CUDA",
        RESUME + ["--steps", "200", "--device", "cuda"],
        "cuda",
        marks=NO_CUDA,
    ),
    row("eval missing", ["eval", "{root}/nowhere"], "nowhere"),
    row("eval on cuda", ["eval", "{root}/run", "--device", "cuda"], "cuda", marks=NO_CUDA),
    row("eval zero episodes", ["eval", "{root}/run", "--episodes", "0"], "--episodes"),
    row("eval no checkpoint", ["eval", "{root}/no_checkpoint"], "checkpoint"),
    row("eval damaged checkpoints", ["eval", "{root}/damaged"], "ckpt_"),
    row("dashboard missing folder", ["dashboard", "{root}/nowhere"], "nowhere"),
    row("dashboard on a file", ["dashboard", "{root}/a_file"], "a_file"),
    row("dataset into a run", ["dataset", "build", "--out", "{root}/run", "--episodes", "1", "--policy", "random"], "--out"),
    row("dataset into a folder", ["dataset", "build", "--out", "{root}/notes", "--episodes", "1", "--policy", "random"], "--out"),
    row("dataset bad policy", ["dataset", "build", "--out", "{root}/d", "--episodes", "1", "--policy", "{root}/nowhere"], "--policy"),
    row("dataset info missing", ["dataset", "info", "{root}/nowhere"], "nowhere"),
    row("export into a folder", ["export", "{root}/run", "--out", "{root}/notes"], "--out"),
    row("export missing run", ["export", "{root}/nowhere", "--out", "{root}/e"], "nowhere"),
    row("unknown command", ["frobnicate"], "frobnicate"),
    row("unknown flag", ["train", "--frobnicate"], "--frobnicate"),
]  # fmt: skip


def run_cli(argv: list[str]) -> int:
    """`workbench ARGV`'s exit code (argparse's own errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


@pytest.mark.parametrize(("argv", "culprit"), ROWS)
def test_a_bad_input_is_one_line_naming_the_culprit_and_changes_nothing(
    world, argv, culprit, monkeypatch, capsys
):
    root, locked = world
    if "locked" in " ".join(argv) and not locked:
        pytest.skip("chattr +i is not possible here")
    _with_fake_envs(monkeypatch)
    monkeypatch.chdir(root)
    before = snapshot(root)
    code = run_cli([arg.format(root=root) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert culprit in err, err
    assert snapshot(root) == before, "nothing on disk changed, nothing was added"


def test_the_table_is_long_enough():
    assert len(ROWS) >= 40


@pytest.mark.parametrize("backend", ["bogus", "osmesa"])
def test_a_missing_rendering_backend_is_one_line_and_leaves_no_run(backend, tmp_path):
    """The real command in its own process (MuJoCo reads MUJOCO_GL once, on import)."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "workbench", "train", "--preset", "tiny", "--device", "cpu"]
    environment = {**os.environ, "MUJOCO_GL": backend, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        command + ["--no-progress", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and f"MUJOCO_GL={backend}" in result.stderr
    assert not run_dir.exists(), "a failed start leaves nothing that blocks running it again"


def test_debug_shows_the_traceback(world, monkeypatch):
    root, _ = world
    argv = ["train", "--resume", str(root / "empty")]
    with pytest.raises(Exception, match="holds no run"):
        main(["--debug", *argv])
    monkeypatch.setenv("WORKBENCH_DEBUG", "1")
    with pytest.raises(Exception, match="holds no run"):
        main(argv)
