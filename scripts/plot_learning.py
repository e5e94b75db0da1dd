"""Learning curves of one or more runs as a PNG: world-model health on held-out evaluation
episodes, training return and episode cost, and each safe agent's operating point.

    python scripts/plot_learning.py OUT.png RUN_DIR [RUN_DIR ...]

Runs are read through `workbench.runs.Run`, like every other viewer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from workbench.runs import Run  # noqa: E402

PANELS = [  # (record kind, key, title, reference line)
    ("eval", "health/reward_r2", "reward head R² (held-out)", 0.5),
    ("eval", "health/cost_auroc", "cost head AUROC (held-out)", 0.85),
    ("eval", "health/object_error", "recon error on hazard/goal pixels", None),
    ("eval", "health/action_std", "actor's action spread (eval)", None),
    ("episode", "return", "training episode return", 0.0),
    ("episode", "cost", "training episode cost", None),
    ("train", "lagrange/multiplier", "Lagrange multiplier", None),
    ("train", "planner/feasible_fraction", "planner: feasible plans", None),
    ("train", "cerl/feasible", "CERL: feasible updates", None),
    ("train", "barrier/unsafe_accuracy", "barrier: unsafe states with B < 0", None),
]


def main(out: str, run_dirs: list[str]) -> None:
    runs = [Run(path) for path in run_dirs]
    panels = [p for p in PANELS if any(_series(run, p[0], p[1])[0] for run in runs)]
    columns = 3
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows), squeeze=False)
    for axis, (kind, key, title, reference) in zip(axes.flat, panels, strict=False):
        for index, run in enumerate(runs):  # one colour per run in every panel
            steps, values = _series(run, kind, key)
            marker = "o" if len(steps) < 20 else None
            axis.plot(steps, values, marker=marker, color=f"C{index}", label=run.name)
        if reference is not None:
            axis.axhline(reference, color="grey", linestyle="--", linewidth=1)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("env steps", fontsize=8)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    print(f"wrote {out}")


def _series(run: Run, kind: str, key: str) -> tuple[list[int], list[float]]:
    rows = [(r["step"], r[key]) for r in run.metrics(kind) if isinstance(r.get(key), int | float)]
    return [s for s, _ in rows], [v for _, v in rows]


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
