"""The run directory: its layout (defined here once), the writer the engine uses, and `Run`, the
one reader every viewer uses (dashboard, widgets, notebooks, CLI reports, comparisons).

Layout (schema `SCHEMA`):
    run.json          schema version, algo, task, status (running | finished | crashed | stopped),
                      pid and host of the writer, created, updated (its heartbeat while running)
    config.json       the resolved config
    metrics.jsonl     append-only; one JSON object per line with a `kind` (train, episode, eval, ...)
    episodes/         ep_000000.npz ... one per finished training episode (written whole, then renamed)
    eval/             eval_<step>_<i>.npz evaluation episodes with frames, reconstructions, per-step values
    snapshots/        snap_<update>.npz latents with labels, imagined rollouts (written whole, then renamed)
    checkpoints/      ckpt_<step>.pt (written whole, then renamed; never a half-written one)
    model.safetensors the agent in export form (`workbench export`), which a shipped run keeps
                      instead of checkpoints; README.md beside it is its model card
    .lock             pid of the process writing the run
    STOP              present: the writer is asked to stop cleanly (any host may write it)

Liveness on shared storage: a reader on the writer's host asks the OS whether its pid lives; a
reader on another host trusts the heartbeat instead, `updated`, refreshed at least every
`HEARTBEAT_SECONDS` while the run logs, and calls a run silent for `STALE_SECONDS` crashed.

Keys: an evaluation episode holds `EVAL_KEYS` per frame (plus the agent's `inspect` values), a
snapshot holds `SNAPSHOT_KEYS` (plus the agent's values as <name> and imag_<name>); the writer
refuses an incomplete snapshot and `load_snapshot` checks what it reads. A `workbench compare`
folder holds `COMPARISON_FILE`, `TABLE_CSV`, `TABLE_MD`, `plot_file(name)` and its runs in
`COMPARISON_RUNS/`.

Every file a reader sees is complete: arrays are written to a temporary name and renamed into
place, and a metrics line is only read once its newline is there. Readers skip files they do
not know, so a newer writer does not break an older reader.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import shutil
import socket
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = 1
RUN_FILE = "run.json"
STOP_FILE = "STOP"
HEARTBEAT_SECONDS = 15.0
STALE_SECONDS = 300.0
"""A running run's `updated` is refreshed at least every HEARTBEAT_SECONDS while it logs (and an
evaluation or a slow start may keep it quiet for minutes): silent for STALE_SECONDS, a reader on
another host calls it crashed."""
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
EPISODES, EVAL, SNAPSHOTS, CHECKPOINTS = "episodes", "eval", "snapshots", "checkpoints"
EPISODE_PREFIX, EVAL_PREFIX, SNAPSHOT_PREFIX, CHECKPOINT_PREFIX = "ep_", "eval_", "snap_", "ckpt_"
ARRAYS_SUFFIX, CHECKPOINT_SUFFIX = ".npz", ".pt"
EXPORT_WEIGHTS, MODEL_CARD = "model.safetensors", "README.md"
"""An export's files (`workbench export`), beside its config.json; a run may hold them too."""

EVAL_KEYS = (
    "frame", "recon", "action", "reward", "cost", "terminal", "hazard_distance",
    "pred_reward", "pred_cost", "disagreement",
)  # fmt: skip
"""What an evaluation episode (`evaluation.play_episode`) holds per frame, besides the agent's
`inspect` values."""
EVAL_IMAGES = ("frame", "recon")
"""An evaluation episode's images: nearly all of its bytes."""
LATENT_KEYS = (
    "features", "unsafe", "cost", "reward", "pred_cost", "time", "sequence", "frame", "disagreement"
)  # fmt: skip
ROLLOUT_KEYS = (
    "imag_start", "imag_reward", "imag_cost", "imag_disagreement", "imag_frames"
)  # fmt: skip
SNAPSHOT_KEYS = ("step", "update", *LATENT_KEYS, *ROLLOUT_KEYS)
"""Keys every snapshot holds; agents add their `inspect` values as <name> and imag_<name>."""

COMPARISON_FILE = "comparison.json"
"""A `workbench compare` folder's summary: the request, a row per finished run, what is missing."""
TABLE_CSV, TABLE_MD = "table.csv", "table.md"
COMPARISON_RUNS = "runs"
"""The folder of a comparison's runs, beside its table and plots."""

SHIPPED_RUNS = Path(__file__).resolve().parents[1] / "checkpoints"
"""The source tree's pretrained runs: read-only material, never written into by a viewer."""


COMPARISON_LOGS, DASHBOARD_LOGS = "logs", ".logs"
"""Where the output of training processes goes: a comparison's, and the dashboard's (in its
runs folder, outside any run directory, which the run must create itself)."""
PLOT_SUFFIX = ".html"


COUNTERS = ("kind", "step", "time", "update", "episode")
"""Keys of a metrics record that count or label it, not measure anything."""


def measurements(record: dict[str, Any]) -> dict[str, float]:
    """What a metrics record measures: its numbers, without its counters (flags such as a start's
    `resumed` and values logged as None are no measurements)."""
    return {
        key: value
        for key, value in record.items()
        if key not in COUNTERS and isinstance(value, int | float) and not isinstance(value, bool)
    }


def training_log(folder: str | Path, logs: str, name: str) -> Path:
    """The output of the training process of run `name`, started for `folder`."""
    return Path(folder) / logs / f"{name}.log"


def plot_file(name: str) -> str:
    """A comparison's plot (`return`, `cost`, `cumulative_cost`, `final`) as a file name."""
    return f"{name}{PLOT_SUFFIX}"


def comparison_plots(folder: str | Path) -> list[Path]:
    """A comparison folder's plots, by name."""
    return sorted(Path(folder).glob(f"*{PLOT_SUFFIX}"))


def episode_file(index: int) -> str:
    """The name of a run's (or a dataset's) episode number `index`."""
    return f"{EPISODE_PREFIX}{index:06d}{ARRAYS_SUFFIX}"


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{CHECKPOINT_PREFIX}{step:09d}{CHECKPOINT_SUFFIX}"


def run_of(path: str | Path) -> Path:
    """The run directory a file of it (a checkpoint, a snapshot, an episode) belongs to, or the
    run directory itself."""
    path = Path(path)
    return path.parent.parent if path.is_file() else path


class RunError(RuntimeError):
    """A run directory cannot be used as asked; the message says why and what to do."""


class DiskFullError(RunError):
    """The disk filled up while a file was written; the file's previous version is intact."""

    exit_code = 1

    def __init__(self, path: Path):
        super().__init__(
            f"disk full while writing {path}: nothing was replaced (the previous file, every "
            "saved episode and checkpoint are intact); free some space, then resume the run"
        )


class DivergenceError(RunError):
    """Training produced a non-finite loss or parameter; the run stopped at its last good
    checkpoint. Not the user's input: the command exits with 1."""

    exit_code = 1


TMP_PATTERN = re.compile(r"^\..+\.tmp\d+$")
"""The name `write_atomic` gives a file while it is being written (readers never list these)."""


# ---------------------------------------------------------------------------------------------
# Atomic writes shared by the writer, checkpoints and datasets.


def write_atomic(path: Path, write: Any) -> None:
    """Call `write(tmp_path)` then rename into place, so readers never see a partial file.

    A full disk raises DiskFullError and leaves the previous `path` as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise DiskFullError(path) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder` and its subfolders (call only
    while holding the folder's lock); return what was removed."""
    removed = []
    for parent in (folder, *(p for p in _listdir(folder) if p.is_dir())):
        for path in _listdir(parent):
            if TMP_PATTERN.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def make_folder(path: Path, flag: str) -> Path | None:
    """Create `path` with its missing parents; return the topmost folder created (None if it
    existed), so a failed start can remove exactly that. Raises RunError naming `flag`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"{flag} {path} is a file; give a folder")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(
            f"{flag} {path}: cannot create it ({error.strerror or error}); "
            "choose a folder you can write to"
        ) from None
    return missing[-1] if missing else None


def check_target(path: Path, flag: str, own: str | None = None) -> None:
    """Refuse to write into `path` unless it is absent, an empty folder, or a folder of the
    command's own kind (it holds the file `own`). Writes nothing; raises RunError naming `flag`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"{flag} {path} is a file; give a new folder")
    if not path.is_dir() or not any(_listdir(path)) or (own and (path / own).exists()):
        return
    what = "holds a run" if (path / CONFIG_FILE).exists() else "is not empty"
    raise RunError(f"{flag} {path} {what}; choose a new folder (nothing in it was touched)")


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically (uncompressed: frames compress poorly and load faster raw)."""

    buffer = io.BytesIO()  # built in memory, so a full disk fails one plain write, cleanly
    np.savez(buffer, **arrays)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())

    write_atomic(path, write)


def load_arrays(path: Path, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read an .npz without ever unpickling objects (the arrays named in `skip` are not read)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files if key not in skip}


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))


def host_name() -> str:
    """This machine's name, as run.json records the writer's (tests fake it)."""
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------
# Writer.


class RunWriter:
    """Creates or reopens a run directory and appends to it. Held by one process at a time.

    Opening writes nothing before the target is checked. If the start fails after that (the
    caller's `abandon()`), a new run's folder is removed again and a resumed run's run.json is
    put back as it was, so a failed command never blocks running it again nor rewrites the
    status of the run it was given."""

    def __init__(self, path: Path, *, config: dict[str, Any], resume: bool = False):
        self.path = Path(path)
        self.resume = resume
        self._created: Path | None = None
        self._made_subfolders: list[Path] = []
        self._previous_info: bytes | None = None
        if resume:
            self._check_resumable()
        else:
            self._check_new()
        try:
            self._open(config)
        except OSError as error:
            self.abandon()
            if error.errno == errno.ENOSPC:
                raise DiskFullError(self.path) from error
            raise RunError(
                f"--run-dir {self.path}: cannot write there ({error.strerror or error}); "
                "choose a folder you can write to"
            ) from None
        except BaseException:
            self.abandon()
            raise

    def _check_new(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"--run-dir {self.path} is a file; give a new folder")
        if (self.path / CONFIG_FILE).exists():
            raise RunError(
                f"{self.path} already holds a run; continue it with --resume {self.path} "
                "or choose another --run-dir"
            )
        if self.path.is_dir() and any(_listdir(self.path)):
            raise RunError(
                f"{self.path} is not empty and holds no run; choose another --run-dir "
                "(nothing in it was touched)"
            )

    def _open(self, config: dict[str, Any]) -> None:
        if self.resume:
            self._previous_info = _read_bytes(self.path / RUN_FILE)
        else:
            self._created = make_folder(self.path, "--run-dir")
        for sub in (EPISODES, EVAL, SNAPSHOTS, CHECKPOINTS):
            if not (self.path / sub).is_dir():
                (self.path / sub).mkdir(parents=True)
                self._made_subfolders.append(self.path / sub)
        self._lock()
        remove_leftovers(self.path)  # a killed writer's temporary files
        if not self.resume:
            write_json(self.path / CONFIG_FILE, config)
        self.info = {
            "schema": SCHEMA,
            "algo": config.get("algo"),
            "task": config.get("env", {}).get("task"),
            "created": time.time(),
            **(read_json(self.path / RUN_FILE) if self.resume else {}),
        }
        (self.path / STOP_FILE).unlink(missing_ok=True)  # a stop asked of an earlier session
        self.set_status("running")
        self._repair_metrics()
        self._metrics = open(self.path / METRICS_FILE, "a", buffering=1)

    def abandon(self) -> None:
        """Undo a start that failed before training began (see the class docstring)."""
        with _quietly():
            self._metrics.close()
        if not self.resume:
            self._remove_new_run()
            return
        with _quietly():
            if self._previous_info is not None:
                write_atomic(self.path / RUN_FILE, lambda tmp: tmp.write_bytes(self._previous_info))
            for sub in self._made_subfolders:
                sub.rmdir()  # only if still empty
        self._unlock()

    def _remove_new_run(self) -> None:
        """Remove what a new run's start created (the folder was absent or empty before)."""
        if self._created is not None:
            shutil.rmtree(self._created, ignore_errors=True)
            return
        for child in _listdir(self.path):
            with _quietly():
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    def _check_resumable(self) -> None:
        if not (self.path / CONFIG_FILE).exists():
            raise RunError(f"cannot resume {self.path}: it holds no run (no {CONFIG_FILE})")
        holder = _lock_holder(self.path)
        if holder is not None:
            raise RunError(
                f"{self.path} is still being written by process {holder}; "
                "wait for it to finish or stop it before resuming"
            )

    def _lock(self) -> None:
        holder = _lock_holder(self.path)
        if holder is not None and holder != os.getpid():
            raise RunError(f"{self.path} is being written by process {holder}")
        (self.path / LOCK_FILE).write_text(str(os.getpid()))

    def _repair_metrics(self) -> None:
        """Cut a trailing partial line left by a crash mid-write, so appends start clean."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with open(path, "r+b") as f:
                f.truncate(end)

    def set_status(self, status: str, **extra: Any) -> None:
        self.info.update(
            status=status, pid=os.getpid(), host=host_name(), updated=time.time(), **extra
        )
        write_json(self.path / RUN_FILE, self.info)

    def heartbeat(self) -> None:
        """Refresh `updated` if HEARTBEAT_SECONDS have passed (called on every log)."""
        if time.time() - self.info.get("updated", 0) >= HEARTBEAT_SECONDS:
            self.set_status(self.info["status"])

    def stop_requested(self) -> bool:
        """Whether someone (on any host) asked this run to stop: `Run.request_stop`."""
        return (self.path / STOP_FILE).exists()

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Append one metrics record: a single write of one complete line."""
        record = {"kind": kind, "step": int(step), "time": round(time.time(), 3)}
        record.update({key: _plain(value) for key, value in values.items()})
        self._metrics.write(json.dumps(record) + "\n")
        self.heartbeat()

    def save_episode(self, index: int, arrays: dict[str, np.ndarray]) -> Path:
        path = self.path / EPISODES / episode_file(index)
        save_arrays(path, arrays)
        return path

    def save_eval(self, step: int, index: int, arrays: dict[str, np.ndarray]) -> Path:
        path = self.path / EVAL / f"{EVAL_PREFIX}{step:09d}_{index:02d}{ARRAYS_SUFFIX}"
        save_arrays(path, arrays)
        return path

    def save_snapshot(self, update: int, arrays: dict[str, np.ndarray]) -> Path:
        path = self.path / SNAPSHOTS / f"{SNAPSHOT_PREFIX}{update:08d}{ARRAYS_SUFFIX}"
        _check_complete(path, arrays, SNAPSHOT_KEYS, "snapshot")
        save_arrays(path, arrays)
        return path

    def close(self, status: str) -> None:
        """Record the final status and release the run. Never raises for a full or failing
        disk: the run's status then stays 'running' with no live writer, which readers call
        crashed."""
        with _quietly():
            self._metrics.close()
        with _quietly():
            self.set_status(status)
        self._unlock()

    def _unlock(self) -> None:
        with _quietly():
            if _read_bytes(self.path / LOCK_FILE) == str(os.getpid()).encode():
                (self.path / LOCK_FILE).unlink()


def _quietly() -> contextlib.AbstractContextManager:
    """Suppress what closing or undoing may hit on a failing disk (the first error is the one
    reported)."""
    return contextlib.suppress(OSError, AttributeError)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _check_complete(path: Path, arrays: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise RunError(f"refusing to write {path}: the {what} lacks {', '.join(missing)}")


def _plain(value: Any) -> Any:
    """JSON-safe scalars: numpy/torch numbers to float, NaN/inf to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _writer_alive(path: Path, info: dict[str, Any]) -> bool:
    """Whether the process that says it writes the run still does (see the module docstring)."""
    if info.get("host", host_name()) == host_name():
        return _lock_holder(path) is not None
    return time.time() - float(info.get("updated", 0)) < STALE_SECONDS


def _lock_holder(path: Path) -> int | None:
    """The pid of a live process holding the run, or None (a stale lock from a crash is ignored)."""
    try:
        pid = int((path / LOCK_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as error:
        raise RunError(f"{path} is not valid JSON ({error}); the run may be corrupt") from None


# ---------------------------------------------------------------------------------------------
# Reader.


@dataclass
class Artifact:
    """A complete file in the run directory, with the step or index in its name."""

    path: Path
    number: int
    """The step (evaluations, checkpoints), update (snapshots) or index (episodes)."""
    index: int = 0
    """The episode's index among those played at `number` (evaluations)."""

    def load(self) -> dict[str, np.ndarray]:
        return load_arrays(self.path)


class Run:
    """Read a run directory, whether finished, still being written, or left by a crash.

    Metrics are read incrementally: each call reads only what was appended since the last one.
    Records that a resumed session superseded (see `_supersede`) are dropped.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise RunError(f"no run directory at {self.path}")
        self._records: list[dict[str, Any]] = []
        self._offset = 0
        self.skipped_lines = 0

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    def info(self) -> dict[str, Any]:
        """run.json, plus `status` corrected to 'crashed' when the writer died without saying so
        (on its host: its pid is gone; elsewhere: its heartbeat is older than STALE_SECONDS)."""
        info = read_json(self.path / RUN_FILE)
        if info.get("status") == "running" and not _writer_alive(self.path, info):
            info["status"] = "crashed"
        if info.get("schema", SCHEMA) > SCHEMA:
            raise RunError(
                f"{self.path} was written with schema {info['schema']}, newer than this "
                f"workbench reads ({SCHEMA}); update the workbench"
            )
        return info

    @property
    def status(self) -> str:
        return self.info().get("status", "empty")

    def request_stop(self) -> None:
        """Ask the writer, wherever it runs, to stop cleanly: it polls for the STOP file."""
        (self.path / STOP_FILE).write_text(f"asked by {host_name()} at {time.time():.0f}\n")

    def config(self) -> dict[str, Any]:
        return read_json(self.path / CONFIG_FILE)

    def metrics(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All complete metric records so far (optionally of one kind), oldest first."""
        self._read_new_lines()
        if kind is None:
            return list(self._records)
        return [record for record in self._records if record.get("kind") == kind]

    def series(self, kind: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric, skipping records without it."""
        rows = [(r["step"], r[key]) for r in self.metrics(kind) if r.get(key) is not None]
        if not rows:
            return np.zeros(0), np.zeros(0)
        steps, values = zip(*rows, strict=True)
        return np.asarray(steps), np.asarray(values, dtype=float)

    def _read_new_lines(self) -> None:
        path = self.path / METRICS_FILE
        try:
            with open(path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # only complete lines; a partial one is read next time
        for line in chunk[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # not JSON, or not even UTF-8
                record = None
            if not _is_record(record):
                self.skipped_lines += 1
                continue
            if record.get("kind") == "start":
                self._supersede(record["step"])
            self._records.append(record)
        self._offset += end

    def _supersede(self, step: int) -> None:
        """A session resumed from a checkpoint at `step` logs again what the interrupted one
        logged past it: keep only the newer records."""
        self._records = [r for r in self._records if r["kind"] == "start" or r["step"] < step]

    def episodes(self) -> list[Artifact]:
        return episode_artifacts(self.path / EPISODES)

    def evaluations(self) -> list[Artifact]:
        return _artifacts(self.path / EVAL, EVAL_PREFIX)

    def snapshots(self) -> list[Artifact]:
        return _artifacts(self.path / SNAPSHOTS, SNAPSHOT_PREFIX)

    def checkpoints(self) -> list[Artifact]:
        return _artifacts(self.path / CHECKPOINTS, CHECKPOINT_PREFIX, CHECKPOINT_SUFFIX)

    def weights(self) -> list[Artifact]:
        """Every saved agent, oldest step first: the checkpoints and, in a run kept in export
        form (a shipped one), `EXPORT_WEIGHTS` (its step read from the file's metadata)."""
        found = self.checkpoints()
        if (self.path / EXPORT_WEIGHTS).is_file():
            found.append(Artifact(self.path / EXPORT_WEIGHTS, export_step(self.path)))
        return sorted(found, key=lambda artifact: artifact.number)


def export_step(folder: Path) -> int:
    """The env step of an export's weights (from the safetensors metadata; 0 if unreadable)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(Path(folder) / EXPORT_WEIGHTS), framework="numpy") as reader:
            return int((reader.metadata() or {}).get("step", 0))
    except (SafetensorError, OSError, ValueError):
        return 0


def episode_artifacts(folder: Path) -> list[Artifact]:
    """The episodes saved in `folder` (a run's episodes/), in order."""
    return _artifacts(folder, EPISODE_PREFIX)


def _artifacts(folder: Path, prefix: str, suffix: str = ARRAYS_SUFFIX) -> list[Artifact]:
    found = []
    for path in _listdir(folder):
        stem = path.name.removeprefix(prefix).removesuffix(suffix)
        if path.name.startswith(prefix) and path.name.endswith(suffix):
            digits, _, index = stem.partition("_")
            if digits.isdigit():
                found.append(Artifact(path, int(digits), int(index) if index.isdigit() else 0))
    return sorted(found, key=lambda a: (a.number, a.path.name))


def _is_record(record: Any) -> bool:
    """What `RunWriter.log` writes: an object with a kind and an integer step."""
    return isinstance(record, dict) and "kind" in record and isinstance(record.get("step"), int)


def _listdir(folder: Path) -> Iterator[Path]:
    try:
        yield from folder.iterdir()
    except FileNotFoundError:
        return


def load_snapshot(
    snapshot: Artifact | str | Path, keys: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """A snapshot's arrays (only `keys` when given: the rest is not read), checked against the
    contract: a missing key or inconsistent shapes raise RunError saying which."""
    path = snapshot_path(snapshot)
    try:
        with np.load(path, allow_pickle=False) as data:
            wanted = data.files if keys is None else keys
            missing = [key for key in (SNAPSHOT_KEYS if keys is None else keys) if key not in data]
            if missing:
                raise RunError(
                    f"{path} is not a complete snapshot: it lacks {', '.join(missing)} "
                    "(snapshots are written by workbench.snapshots.Snapshotter)"
                )
            arrays = {key: data[key] for key in wanted}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise RunError(f"cannot read snapshot {path}: {error}") from None
    _check_shapes(path, arrays)
    return arrays


def _check_shapes(path: Path, arrays: dict[str, np.ndarray]) -> None:
    latents = {len(arrays[key]) for key in LATENT_KEYS if key in arrays}
    rollouts = {arrays[key].shape[1] for key in ROLLOUT_KEYS[1:] if key in arrays}
    if "imag_start" in arrays:
        rollouts.add(len(arrays["imag_start"]))
    horizon = {arrays[key].shape[0] - 1 for key in ("imag_reward", "imag_cost") if key in arrays}
    if "imag_disagreement" in arrays:
        horizon.add(len(arrays["imag_disagreement"]))
    if len(latents) > 1 or len(rollouts) > 1 or len(horizon) > 1:
        raise RunError(
            f"{path} has inconsistent shapes ({ {k: v.shape for k, v in arrays.items()} }); "
            "it may be corrupt"
        )


def snapshot_path(snapshot: Artifact | str | Path) -> Path:
    return Path(snapshot.path if isinstance(snapshot, Artifact) else snapshot)


def find_runs(root: str | Path) -> list[Run]:
    """Every run directory directly under `root` (or `root` itself), newest first."""
    root = Path(root)
    candidates = [root] if (root / CONFIG_FILE).exists() else _listdir(root)
    runs = [Run(p) for p in candidates if p.is_dir() and (p / CONFIG_FILE).exists()]
    return sorted(runs, key=lambda r: (r.path / CONFIG_FILE).stat().st_mtime, reverse=True)
