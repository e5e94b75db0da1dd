"""Reduce a finished run directory to what the notebooks and the dashboard need, to ship it here.

    python checkpoints/reduce.py runs/pretrained-barrier-s0 checkpoints/pointgoal1-barrier

Kept: run.json and metrics.jsonl; the newest checkpoint's agent in export form (`workbench
export`: model.safetensors, config.json and a model card, README.md), without optimiser and RNG
states, so it loads for inspection and evaluation (`workbench.checkpoint.load_agent`) but cannot
be resumed; the newest snapshot and the newest evaluation episode, recompressed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from workbench.export import export_run
from workbench.runs import EVAL, METRICS_FILE, RUN_FILE, SNAPSHOTS, Run

EPISODES = 5
"""Held-out episodes the model card reports (`workbench export --episodes`)."""


def reduce(source: Path, target: Path) -> None:
    run = Run(source)
    if run.status != "finished":
        raise SystemExit(f"{source} is {run.status}; ship only a finished run")
    if target.exists():
        raise SystemExit(f"{target} exists; remove it first")
    export_run(source, target, episodes=EPISODES)
    for name in (RUN_FILE, METRICS_FILE):
        shutil.copy2(source / name, target / name)
    for folder, artifact in ((SNAPSHOTS, run.snapshots()[-1]), (EVAL, run.evaluations()[-1])):
        (target / folder).mkdir()
        np.savez_compressed(target / folder / artifact.path.name, **artifact.load())
    for path in sorted(target.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size / 1e6:7.2f} MB  {path.relative_to(target)}")
    total = sum(path.stat().st_size for path in target.rglob("*") if path.is_file())
    print(f"{total / 1e6:7.2f} MB  in all")


if __name__ == "__main__":
    reduce(Path(sys.argv[1]), Path(sys.argv[2]))
