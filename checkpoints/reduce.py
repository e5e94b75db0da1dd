"""Reduce a finished run directory to what the notebooks and the dashboard need, to ship it here.

    python checkpoints/reduce.py runs/pretrained-barrier-s0 checkpoints/pointgoal1-barrier

Kept: config.json, run.json, metrics.jsonl; the newest checkpoint without its optimiser and RNG
states (so it loads for inspection and evaluation, `workbench.checkpoint.load_agent`, but cannot
be resumed); the newest snapshot and the newest evaluation episode, recompressed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from workbench import checkpoint
from workbench.runs import CHECKPOINTS, CONFIG_FILE, EVAL, METRICS_FILE, RUN_FILE, SNAPSHOTS, Run

TRAINING_ONLY = ("optimizers", "rng")
"""Checkpoint entries only a resumed training needs."""


def reduce(source: Path, target: Path) -> None:
    run = Run(source)
    if run.status != "finished":
        raise SystemExit(f"{source} is {run.status}; ship only a finished run")
    if target.exists():
        raise SystemExit(f"{target} exists; remove it first")
    for folder in (CHECKPOINTS, SNAPSHOTS, EVAL):
        (target / folder).mkdir(parents=True)
    for name in (CONFIG_FILE, RUN_FILE, METRICS_FILE):
        shutil.copy2(source / name, target / name)
    newest = run.checkpoints()[-1].path
    state = checkpoint.load(newest)
    torch.save(
        {k: v for k, v in state.items() if k not in TRAINING_ONLY},
        target / CHECKPOINTS / newest.name,
    )
    for folder, artifact in ((SNAPSHOTS, run.snapshots()[-1]), (EVAL, run.evaluations()[-1])):
        np.savez_compressed(target / folder / artifact.path.name, **artifact.load())
    for path in sorted(target.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size / 1e6:7.2f} MB  {path.relative_to(target)}")
    total = sum(path.stat().st_size for path in target.rglob("*") if path.is_file())
    print(f"{total / 1e6:7.2f} MB  in all")


if __name__ == "__main__":
    reduce(Path(sys.argv[1]), Path(sys.argv[2]))
