"""`workbench compare --executor ray`: a two-node Ray cluster on this machine (loopback only) that
loses a node mid-comparison, the same table as the process pool from an embedded Ray, and a
clean stop on SIGTERM. Skipped without Ray (`pip install 'workbench[distributed]'`)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from workbench import executors
from workbench.runs import COMPARISON_FILE, COMPARISON_LOGS, COMPARISON_RUNS, Run, read_json

for key, value in executors.SINGLE_MACHINE_RAY.items():
    os.environ.setdefault(key, value)  # before Ray is imported: every address is the loopback
ray = pytest.importorskip(
    "ray", reason="Ray is not installed: pip install 'workbench[distributed]'"
)
import psutil  # noqa: E402  (Ray ships it)

pytestmark = pytest.mark.real
ALGOS, SEEDS, STEPS = ["dreamer", "barrier"], [0, 1], 300
"""A run of the tiny preset takes seconds; 300 steps leaves time to act between checkpoints."""


def compare_command(out: Path, *flags: str, steps: int = STEPS) -> list[str]:
    return [
        sys.executable, "-m", "workbench.cli", "compare", "--preset", "tiny",
        "--algos", ",".join(ALGOS), "--seeds", ",".join(map(str, SEEDS)), "--steps", str(steps),
        "--device", "cpu", "--out", str(out), *flags,
    ]  # fmt: skip


@pytest.fixture
def cluster():
    """A head and a worker node, one CPU each, every process bound to 127.0.0.1."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must fit in 107 bytes
    node = {"num_cpus": 1, "node_ip_address": executors.LOOPBACK}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**node, "include_dashboard": False, "temp_dir": temp},
    )
    worker = cluster.add_node(**node)
    yield cluster, worker
    cluster.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def node_processes(node) -> list[psutil.Process]:
    """Every live process of a Ray node: its services and all they started (workers, runs)."""
    found = []
    for infos in node.all_processes.values():
        for info in infos:
            if psutil.pid_exists(info.process.pid):
                root = psutil.Process(info.process.pid)
                found += [root, *root.children(recursive=True)]
    return found


def non_loopback_sockets() -> list[str]:
    """Sockets listening or bound beyond the loopback, of this test's processes and all below."""
    me = psutil.Process()
    found = []
    for process in [me, *me.children(recursive=True)]:
        try:
            sockets = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        for sock in sockets:
            listening = sock.status in (psutil.CONN_LISTEN, psutil.CONN_NONE)
            if listening and sock.laddr and not loopback(sock.laddr.ip):
                found.append(f"{process.name()} {sock.laddr}")
    return found


def loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.partition("%")[0])
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def wait_for(condition, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def check_intact(run: Run) -> None:
    """Finished at STEPS, every episode saved (files numbered without a gap, each logged episode
    among them) and every metrics line whole, steps rising without gaps or repeats."""
    assert run.status == "finished" and run.checkpoints()[-1].number == STEPS
    assert run.metrics() and run.skipped_lines == 0
    files = [episode.number for episode in run.episodes()]
    assert files == list(range(len(files)))
    logged = [record["episode"] for record in run.metrics("episode")]
    assert logged == sorted(set(logged)) and set(logged) <= {n + 1 for n in files}
    for kind in ("episode", "train"):
        steps = [record["step"] for record in run.metrics(kind)]
        assert steps == sorted(set(steps)) and steps[-1] <= STEPS
    config = run.config()["train"]
    interval = config["train_every"] * config["log_every"]
    train = np.array([record["step"] for record in run.metrics("train")])
    assert set(np.diff(train)) == {interval} and train[-1] + interval > STEPS - 1


def test_a_lost_node_s_runs_resume_on_the_other_node(cluster, tmp_path):
    cluster, worker = cluster
    out = tmp_path / "cmp"
    began = time.time()
    sweep = subprocess.Popen(
        compare_command(out, "--executor", "ray", "--address", cluster.address),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def run_on_worker_with_a_checkpoint() -> tuple[str, list[psutil.Process]] | None:
        processes = node_processes(worker)
        pids = {process.pid for process in processes}
        for run_dir in sorted((out / COMPARISON_RUNS).glob("*")):
            info = read_json(run_dir / "run.json")
            if info.get("pid") in pids and info.get("status") == "running":
                if Run(run_dir).checkpoints():
                    return run_dir.name, processes
        return None

    lost, processes = wait_for(run_on_worker_with_a_checkpoint, 240, "a checkpoint on the worker")
    bound = non_loopback_sockets()
    cluster.remove_node(worker, allow_graceful=False)
    for process in processes:  # the node's machine dies with everything on it
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    output, _ = sweep.communicate(timeout=300)
    seconds = time.time() - began

    assert bound == [], f"bound beyond the loopback: {bound}"
    assert sweep.returncode == 0, output
    summary = read_json(out / COMPARISON_FILE)
    assert summary["missing"] == [] and len(summary["runs"]) == len(ALGOS) * len(SEEDS)
    for run_dir in sorted((out / COMPARISON_RUNS).glob("*")):
        check_intact(Run(run_dir))
    starts = Run(out / COMPARISON_RUNS / lost).metrics("start")
    assert [start["resumed"] for start in starts] == [False, True] and starts[1]["step"] > 0
    log = (out / COMPARISON_LOGS / f"{lost}.log").read_text()
    assert f"--resume {out / COMPARISON_RUNS / lost}" in log
    print(f"lost {lost} at step {starts[1]['step']}; the comparison took {seconds:.0f} s")


def table(out: Path) -> list[dict]:
    """The comparison's numbers, without the wall times (the only ones a machine changes)."""
    summary = read_json(out / COMPARISON_FILE)
    return [
        {key: value for key, value in row.items() if not key.startswith("wall_time")}
        for row in summary["algorithms"] + summary["runs"]
    ]


def test_embedded_ray_and_the_pool_give_the_same_table(tmp_path):
    for out, flags in (("pool", ["--parallel", "2"]), ("ray", ["--executor", "ray"])):
        done = subprocess.run(
            compare_command(tmp_path / out, *flags, steps=120),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert table(tmp_path / "ray") == table(tmp_path / "pool")
    assert len(read_json(tmp_path / "ray" / COMPARISON_FILE)["runs"]) == len(ALGOS) * len(SEEDS)


def test_sigterm_stops_the_ray_sweep_with_checkpoints(tmp_path):
    out = tmp_path / "cmp"
    sweep = subprocess.Popen(
        compare_command(out, "--executor", "ray", steps=10 * STEPS),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    runs = out / COMPARISON_RUNS
    wait_for(lambda: any(Run(r).checkpoints() for r in runs.glob("*")), 240, "a checkpoint")
    sweep.send_signal(signal.SIGTERM)
    output, _ = sweep.communicate(timeout=180)

    assert sweep.returncode == 130, output
    assert "interrupted; run the same command again to continue" in output
    statuses = {r.name: Run(r).status for r in runs.glob("*")}
    assert "running" not in statuses.values() and "crashed" not in statuses.values(), statuses
    assert any(status == "stopped" for status in statuses.values()), statuses
    for run_dir in runs.glob("*"):
        assert Run(run_dir).checkpoints(), f"{run_dir.name} stopped without a checkpoint"
