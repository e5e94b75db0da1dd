"""How `workbench compare` runs its jobs. An executor is a function that takes the jobs, runs
each one's `workbench train` process, and yields each job as it ends with the seconds it trained;
the comparison's loop around it (progress, tables, plots) is the same for all.

- `pool(parallel)`: processes on this machine, at most `parallel` at a time (the default).
- `ray_cluster(address, cpus, gpus)`: each job is a Ray task that runs the same process, on any
  node of a cluster (`address`) or of an embedded Ray on this machine (no address), with `cpus`
  and `gpus` (fractions allowed) reserved per run. A task whose worker or node dies is retried
  (`RETRIES`) elsewhere and resumes from the run's newest checkpoint, so the comparison folder
  must be on storage every node sees.

Either way, Ctrl-C (or SIGTERM to `workbench compare`) stops the running processes with SIGTERM:
each saves a checkpoint, and the same command run again resumes them.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar


class Job(Protocol):
    """What an executor needs of a job (`workbench.compare.Job`)."""

    name: str
    log: Path

    def command(self) -> list[str]: ...
    def writer_alive(self) -> bool: ...
    def done(self) -> bool: ...


J = TypeVar("J", bound=Job)
Executor = Callable[[Sequence[J]], Generator[tuple[J, float], None, None]]
"""Runs the jobs; yields each (job, seconds trained) as it ends (close() stops the rest)."""
RETRIES = 3
"""How many times Ray reruns a job whose worker or node died."""
STOP_SECONDS = 120.0
"""How long a stopped comparison waits for its runs to save their checkpoints."""
LOOPBACK = "127.0.0.1"
SINGLE_MACHINE_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Ray's switch for a one-machine Ray: every address it picks is the loopback (otherwise it
turns 127.0.0.1 into the machine's network address). Read when Ray is imported."""
INSTALL_HINT = "--executor ray needs Ray: pip install 'workbench[distributed]'"


def pool(parallel: int) -> Executor:
    """Run the jobs as processes on this machine, at most `parallel` at a time."""

    def run_all(jobs: Sequence[J]) -> Generator[tuple[J, float], None, None]:
        waiting = list(jobs)
        running: list[tuple[J, subprocess.Popen, float]] = []
        environment = dict(os.environ)
        if parallel > 1:  # the runs share the cores instead of each starting a thread per core
            threads = str(max(1, (os.cpu_count() or 1) // parallel))
            environment.setdefault("OMP_NUM_THREADS", threads)
        try:
            while waiting or running:
                while waiting and len(running) < parallel:
                    job = waiting.pop(0)
                    running.append((job, start(job, environment), time.time()))
                time.sleep(0.5)
                for entry in [entry for entry in running if entry[1].poll() is not None]:
                    running.remove(entry)
                    yield entry[0], time.time() - entry[2]
        finally:
            stop([process for _, process, _ in running])

    return run_all


def ray_cluster(address: str | None, cpus: float, gpus: float) -> Executor:
    """Run each job as a Ray task on the cluster at `address` ('auto', HOST:PORT), or on an
    embedded Ray bound to this machine's loopback when `address` is None."""
    local = address is None or address.rpartition(":")[0] in (LOOPBACK, "localhost")
    if local:
        for key, value in SINGLE_MACHINE_RAY.items():
            os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise ImportError(INSTALL_HINT) from None

    def run_all(jobs: Sequence[J]) -> Generator[tuple[J, float], None, None]:
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
        if local:
            options["_node_ip_address"] = LOOPBACK
        stopping = signal.getsignal(signal.SIGTERM)
        if address is None:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
        signal.signal(signal.SIGTERM, stopping)  # Ray's driver sets its own, which exits at once
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES)(run_job)
        pending = {task.remote(job): job for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in done:
                    job = pending.pop(ref)
                    yield job, _seconds(ray, ref, job)
        finally:
            for ref in pending:
                ray.cancel(ref)  # a running task gets KeyboardInterrupt: run_job stops its process
            if pending:
                ray.wait(list(pending), num_returns=len(pending), timeout=STOP_SECONDS)
            ray.shutdown()

    return run_all


def run_job(job: Job) -> float:
    """Run one job's `workbench train` process to its end (a Ray task runs this on its node);
    return the seconds it trained. A rerun first waits for a process that still writes the run
    (its lock or heartbeat, `workbench.runs`) and resumes from the newest checkpoint."""
    while job.writer_alive():
        time.sleep(1.0)
    if job.done():
        return 0.0
    began = time.time()
    process = start(job, None)
    try:
        while process.poll() is None:  # polling: Ray's cancel interrupts Python, not a wait()
            time.sleep(0.5)
    except KeyboardInterrupt:
        stop([process])
        raise
    return time.time() - began


def _seconds(ray, ref, job: Job) -> float:
    """A finished task's seconds; a failed one (retries spent) is noted in the job's log."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        with open(job.log, "a") as log:
            log.write(f"ray: {' '.join(str(error).split())[:500]}\n")
        return 0.0


def start(job: Job, environment: dict[str, str] | None) -> subprocess.Popen:
    """Start the job's process, its output appended to the job's log."""
    return launch(job.command(), job.log, environment)


def launch(
    command: list[str], log: Path, environment: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a `workbench` process, unbuffered, its output appended to `log` after a line
    naming the command. It runs in a session of its own: Ctrl-C reaches only the program that
    started it (which stops it once, cleanly), and it outlives a dashboard that stops."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(environment or os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True,
        )


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM: each run stops cleanly, saving a checkpoint to resume from."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait()
