"""Checkpoints: saved whole then renamed into place, loaded without executing code.

A checkpoint holds only tensors and plain Python values (config, counters, RNG states, model
and optimiser states), and is read with `torch.load(weights_only=True)`, which refuses
anything else. A checkpoint that fails to load is reported, left on disk, and the previous one
is used instead, so a damaged file never costs the run.

An export (`workbench export`, `workbench/export.py`) is the shareable form of one checkpoint:
a folder with the weights as safetensors (`model.safetensors`, read without any unpickling)
and the config as JSON; `load_agent` reads a run directory, a checkpoint file or an export.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from workbench.config import Config
from workbench.runs import CONFIG_FILE, Run, RunError, checkpoint_path, read_json, write_atomic

if TYPE_CHECKING:
    from workbench.agents.base import AgentLike
    from workbench.world_model import WorldModel

FORMAT = "workbench-checkpoint"
VERSION = 1
EXPORT_FORMAT = "workbench-export"
EXPORT_VERSION = 1
EXPORT_WEIGHTS = "model.safetensors"
PARTS = ("world_model", "agent")
"""The state dicts an export holds, each under its name as a key prefix ("agent.actor...")."""


class CheckpointError(RunError):
    """No usable checkpoint; the message says where it looked and what to do."""


def save(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write `state` as checkpoints/ckpt_<step>.pt and remove all but the newest `keep`."""
    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "step": step, **state}
    write_atomic(path, lambda tmp: torch.save(payload, tmp))
    for old in Run(run_dir).checkpoints()[:-keep]:
        old.path.unlink(missing_ok=True)
    return path


def load(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read one checkpoint file safely; raise CheckpointError if it is not a valid one."""
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
    return payload


def load_latest(run_dir: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The newest checkpoint of a run that loads; damaged ones are skipped with a warning."""
    found = Run(run_dir).checkpoints()
    if not found:
        raise CheckpointError(
            f"{run_dir} has no checkpoint yet (checkpoints are saved every "
            "train.checkpoint_every env steps and at the end of training)"
        )
    for artifact in reversed(found):
        try:
            return load(artifact.path, device)
        except CheckpointError as error:
            warnings.warn(f"skipping damaged checkpoint: {error}", stacklevel=2)
    raise CheckpointError(f"none of the {len(found)} checkpoints in {run_dir} could be read")


def is_export(path: str | Path) -> bool:
    """Whether `path` is an export folder (`workbench export`) rather than a run directory."""
    return (Path(path) / EXPORT_WEIGHTS).is_file()


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
    elif is_export(run_dir):
        payload = load_export(run_dir, device)
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
