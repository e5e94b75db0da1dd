"""Checkpoints: saved whole then renamed into place, loaded without executing code.

A checkpoint holds only tensors and plain Python values (config, counters, RNG states, model
and optimiser states), and is read with `torch.load(weights_only=True)`, which refuses
anything else. A checkpoint that fails to load is reported, left on disk, and the previous one
is used instead, so a damaged file never costs the run.

An export (`workbench export`, `workbench/export.py`) is the shareable form of one checkpoint:
a folder with the weights as safetensors (`runs.EXPORT_WEIGHTS`, read without any unpickling)
and the config as JSON; `load_agent` reads a run directory, a checkpoint file or an export, and
a run directory may keep its agent as an export instead of checkpoints (the shipped ones do).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from workbench.config import Config
from workbench.device import resolve_device
from workbench.runs import (
    CONFIG_FILE,
    EXPORT_WEIGHTS,
    DivergenceError,
    Run,
    RunError,
    checkpoint_path,
    read_json,
    write_atomic,
)

if TYPE_CHECKING:
    from workbench.agents.base import AgentLike
    from workbench.world_model import WorldModel

FORMAT = "workbench-checkpoint"
VERSION = 1
EXPORT_FORMAT = "workbench-export"
EXPORT_VERSION = 1
PARTS = ("world_model", "agent")
"""The state dicts an export holds, each under its name as a key prefix ("agent.actor...")."""


class CheckpointError(RunError):
    """No usable checkpoint; the message says where it looked and what to do."""


RESUME_KEYS = ("counters", "optimizers", "rng")
"""What a checkpoint needs beyond the weights to be resumed (an inspection copy lacks them)."""


def save(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write `state` as checkpoints/ckpt_<step>.pt and remove all but the newest `keep` readable
    ones (a damaged file neither counts nor is removed). Non-finite weights are never saved."""
    check_finite(state, step)
    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "step": step, **state}
    write_atomic(path, lambda tmp: _write(payload, tmp))
    _known_readable.add(_identity(path))
    readable = [c for c in Run(run_dir).checkpoints() if _is_readable(c.path)]
    for old in readable[:-keep]:
        old.path.unlink(missing_ok=True)
    return path


def _write(payload: dict[str, Any], tmp: Path) -> None:
    """Serialise in memory, then write the bytes: a full disk then fails one plain write with
    OSError(ENOSPC) (torch.save into a file hides it behind a RuntimeError)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with open(tmp, "wb") as f:
        f.write(buffer.getbuffer())


def check_finite(state: dict[str, Any], step: int) -> None:
    """Raise DivergenceError naming the first non-finite weight of the models in `state`."""
    for part in PARTS:
        for name, tensor in state.get(part, {}).items():
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                continue
            if not torch.isfinite(tensor).all():
                raise DivergenceError(
                    f"parameter {part}.{name} is not finite at step {step}: the checkpoint was "
                    "not saved and training stopped; the run keeps its last good checkpoint. Try "
                    "a lower learning rate (--set model.lr=...) or another --seed, in a new --run-dir"
                )


_known_readable: set[tuple[str, int, int]] = set()
"""Checkpoint files (path, size, mtime) this process wrote or loaded, so pruning reads each
foreign file at most once."""


def _identity(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _is_readable(path: Path) -> bool:
    try:
        identity = _identity(path)
    except FileNotFoundError:
        return False
    if identity not in _known_readable:
        try:
            load(path)
        except CheckpointError:
            return False
        _known_readable.add(identity)
    return True


def check_resumable(payload: dict[str, Any]) -> None:
    """Raise CheckpointError if a checkpoint lacks what resuming needs (see `RESUME_KEYS`)."""
    missing = [key for key in RESUME_KEYS if key not in payload]
    if missing:
        raise CheckpointError(
            f"its checkpoint (step {payload.get('step')}) was reduced for inspection and holds "
            f"no {', '.join(missing)}, so it cannot be continued. Evaluate or inspect it "
            "(workbench eval, workbench.checkpoint.load_agent), or train a new run with its "
            "config (see checkpoints/README.md for the command that made it)"
        )


def load(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read one checkpoint file safely; raise CheckpointError if it is not a valid one."""
    device = resolve_device(
        str(device)
    )  # an unavailable device is the caller's error, not the file's
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint file at {path}") from None
    except Exception as error:  # any unpickling failure means a damaged or foreign file
        raise CheckpointError(f"{path} is not a readable checkpoint ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a workbench checkpoint")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has version {payload['version']}; update the workbench")
    with contextlib.suppress(FileNotFoundError):  # pruned by its writer since: still read whole
        _known_readable.add(_identity(path))
    return payload


def load_latest(run_dir: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The newest checkpoint (or export, `Run.weights`) of a run that loads; damaged ones are
    skipped with a warning."""
    found = Run(run_dir).weights()
    if not found:
        raise CheckpointError(
            f"{run_dir} has no checkpoint yet (checkpoints are saved every "
            "train.checkpoint_every env steps and at the end of training)"
        )
    damaged = []
    for artifact in reversed(found):
        try:
            payload = _load_weights(artifact.path, device)
        except CheckpointError as error:
            damaged.append(artifact.path.name)
            reason = error
            continue
        for name in damaged:
            warnings.warn(f"skipping damaged checkpoint {name}", stacklevel=2)
        return payload
    raise CheckpointError(
        f"none of the {len(found)} checkpoints in {run_dir} could be read "
        f"({', '.join(reversed(damaged))}; for example {reason})"
    )


def _load_weights(path: Path, device: str | torch.device) -> dict[str, Any]:
    """A checkpoint file, or an export's weights file read with its folder."""
    return load_export(path.parent, device) if path.name == EXPORT_WEIGHTS else load(path, device)


def load_export(folder: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """An export read as a checkpoint payload (config, step, action_dim, state dicts): the
    weights from safetensors, everything else from JSON; nothing is unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    folder = Path(folder)
    path = folder / EXPORT_WEIGHTS
    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None
    if metadata.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path} is not a workbench export (no format {EXPORT_FORMAT!r})")
    if int(metadata.get("version", 0)) > EXPORT_VERSION:
        raise CheckpointError(f"{path} has version {metadata['version']}; update the workbench")
    config = read_json(folder / CONFIG_FILE)
    if not config:
        raise CheckpointError(f"{folder} has no {CONFIG_FILE} beside its weights")
    states: dict[str, dict[str, torch.Tensor]] = {part: {} for part in PARTS}
    for key, tensor in tensors.items():
        part, _, name = key.partition(".")
        states.setdefault(part, {})[name] = tensor
    return {
        "format": FORMAT,
        "config": config,
        "step": int(metadata["step"]),
        "action_dim": int(metadata["action_dim"]),
        **states,
    }


@dataclass
class Loaded:
    """A trained world model and agent, ready to inspect (evaluation mode, no training)."""

    config: Config
    world_model: WorldModel
    agent: AgentLike
    step: int
    action_dim: int


def load_agent(
    run_dir: str | Path, device: str = "cpu", checkpoint: str | Path | None = None
) -> Loaded:
    """Load the newest (or a given) checkpoint of a run, or an export, for inspection, without
    training."""
    from workbench.agents import make_agent
    from workbench.world_model import WorldModel

    if checkpoint:
        payload = load(Path(checkpoint), device)
    else:
        payload = load_latest(Path(run_dir), device)
    config = Config.from_dict(payload["config"])
    action_dim = payload["action_dim"]
    world_model = WorldModel(config.model, action_dim, config.env.image_size).to(device)
    world_model.load_state_dict(payload["world_model"])
    agent = make_agent(config, world_model, action_dim).to(device)
    agent.load_state_dict(payload["agent"])
    world_model.eval()
    agent.eval()
    return Loaded(config, world_model, agent, payload["step"], action_dim)
