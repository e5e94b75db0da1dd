"""`workbench export RUN --out DIR`: a trained agent in a form others can read without this
code or pickle, as model hubs share RL agents.

    workbench export runs/a --out exports/a --episodes 5
    workbench eval exports/a                 # an export loads wherever a run does

Steps, in order:
1. Load the run's newest (or a given) checkpoint safely (`torch.load(weights_only=True)`).
2. Write DIR/model.safetensors: the world model's and the agent's weights, keyed
   "world_model.<name>" and "agent.<name>", with format, version, step and action_dim in the
   file's metadata; and DIR/config.json: the run's resolved config.
3. Evaluate the export itself (`evaluation.evaluate_run` on DIR, held-out seeds) for its return
   and episode cost, so the card's numbers come from what was written.
4. Write DIR/README.md: a model card whose YAML front matter follows the model hubs' RL cards
   (`model-index` with `mean_reward` and `mean_cost` as "mean +/- std") plus task, algorithm,
   cost limit and env steps, then how it was made.

`workbench.checkpoint.load_agent(DIR)` reads it back: safetensors and JSON, nothing unpickled.
"""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path
from typing import Any

from workbench.runs import (
    CONFIG_FILE,
    EXPORT_WEIGHTS,
    MODEL_CARD,
    check_target,
    make_folder,
    write_atomic,
    write_json,
)


def add_command(commands) -> None:
    p = commands.add_parser(
        "export", help="write a run's agent as safetensors + config JSON + a model card"
    )
    p.add_argument("run_dir", type=Path, help="the run directory to export")
    p.add_argument("--out", type=Path, required=True, help="the export folder (created)")
    p.add_argument("--checkpoint", type=Path, help="a checkpoint file (default: the newest)")
    p.add_argument("--episodes", type=int, default=5, help="held-out episodes for the card")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=_export)


def _export(args) -> int:
    card = export_run(
        args.run_dir,
        args.out,
        checkpoint=args.checkpoint,
        episodes=args.episodes,
        device=args.device,
    )
    print(
        f"exported {args.run_dir} (step {card['env_steps']}) to {args.out}: {EXPORT_WEIGHTS}, "
        f"{CONFIG_FILE}, {MODEL_CARD}; return {card['mean_reward']}, cost {card['mean_cost']}"
    )
    return 0


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    episodes: int = 5,
    device: str = "cpu",
) -> dict[str, Any]:
    """Export a run's agent to `out` (steps 1-4 above); returns the card's fields."""
    from workbench.checkpoint import load, load_latest
    from workbench.evaluation import evaluate_run

    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1 (the card reports them), got {episodes}")
    run_dir, out = Path(run_dir), Path(out)
    check_target(out, "--out", own=EXPORT_WEIGHTS)  # a new folder, or an export to replace
    payload = load(Path(checkpoint)) if checkpoint else load_latest(run_dir)
    make_folder(out, "--out")
    write_weights(out / EXPORT_WEIGHTS, payload)
    write_json(out / CONFIG_FILE, payload["config"])
    report = evaluate_run(out, episodes=episodes, device=device)
    card = card_fields(payload, report, run_dir)
    write_atomic(out / MODEL_CARD, lambda tmp: tmp.write_text(model_card(card, payload)))
    return card


def write_weights(path: Path, payload: dict[str, Any]) -> None:
    """The checkpoint's state dicts as one safetensors file (contiguous, unshared copies)."""
    import torch
    from safetensors.torch import save_file

    from workbench.checkpoint import EXPORT_FORMAT, EXPORT_VERSION, PARTS

    tensors = {
        f"{part}.{name}": tensor.detach().to("cpu").contiguous().clone()
        for part in PARTS
        for name, tensor in payload[part].items()
        if isinstance(tensor, torch.Tensor)
    }
    metadata = {
        "format": EXPORT_FORMAT,
        "version": str(EXPORT_VERSION),
        "step": str(payload["step"]),
        "action_dim": str(payload["action_dim"]),
    }
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def card_fields(payload: dict[str, Any], report: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """What the model card's front matter says beside the model-index."""
    config = payload["config"]
    return {
        "task": config["env"]["task"],
        "algorithm": config["algo"],
        "mean_reward": f"{report['return_mean']:.2f} +/- {report['return_std']:.2f}",
        "mean_cost": f"{report['cost_mean']:.2f} +/- {report['cost_std']:.2f}",
        "cost_limit": float(config["agent"]["cost_limit"]),
        "env_steps": int(payload["step"]),
        "evaluation_episodes": int(report["episodes"]),
        "seed": int(config["train"]["seed"]),
        "source_run": run_dir.name,
    }


def model_card(card: dict[str, Any], payload: dict[str, Any]) -> str:
    """README.md: YAML front matter (a hub's RL card, plus the safe-RL fields), then prose."""
    import yaml

    name = f"{card['algorithm']}-{card['task']}"
    front = {
        "library_name": "workbench",
        "tags": [
            "reinforcement-learning",
            "safe-reinforcement-learning",
            "world-models",
            "pixels",
            card["task"],
            card["algorithm"],
        ],
        "model-index": [
            {
                "name": name,
                "results": [
                    {
                        "task": {
                            "type": "reinforcement-learning",
                            "name": "reinforcement-learning",
                        },
                        "dataset": {"name": card["task"], "type": card["task"]},
                        "metrics": [
                            _metric("mean_reward", card["mean_reward"]),
                            _metric("mean_cost", card["mean_cost"]),
                        ],
                    }
                ],
            }
        ],
        **card,
    }
    return "\n".join([
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {name}",
        "",
        f"A `{card['algorithm']}` agent with its world model, trained from 64x64 pixels on "
        f"Safety-Gymnasium's `{card['task']}` by the workbench ({_how_made(card, payload)}).",
        "",
        f"- Held-out evaluation ({card['evaluation_episodes']} episodes, seeds never trained on, "
        f"actions sampled as in training): return {card['mean_reward']}, episode cost "
        f"{card['mean_cost']} against a cost limit of {card['cost_limit']:g}.",
        f"- Files: `{EXPORT_WEIGHTS}` (weights, keys `world_model.*` and `agent.*`; format, step "
        f"and action_dim in its metadata) and `{CONFIG_FILE}` (every setting it was trained with).",
        "- Load it: `workbench.checkpoint.load_agent(FOLDER)`; evaluate it: `workbench eval FOLDER`.",
        "",
    ])  # fmt: skip


def _metric(name: str, value: str) -> dict[str, Any]:
    return {"type": name, "value": value, "name": name, "verified": False}


def _how_made(card: dict[str, Any], payload: dict[str, Any]) -> str:
    config = payload["config"]
    try:
        version = importlib.metadata.version("workbench")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return (
        f"`workbench train --task {card['task']} --algo {card['algorithm']} --seed {card['seed']}` "
        f"for {card['env_steps']} env steps, action repeat {config['env']['action_repeat']}, "
        f"on {config['train']['device']}; exported from run `{card['source_run']}` with "
        f"`workbench export` {version} on {time.strftime('%Y-%m-%d')}"
    )
