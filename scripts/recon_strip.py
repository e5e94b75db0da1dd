"""What the world model draws where the real frame shows hazards or the goal: a PNG of real
frames (top row) above their reconstructions (bottom row), from runs' newest evaluation episodes.

    python scripts/recon_strip.py OUT.png RUN_DIR [RUN_DIR ...]

Per run, the 8 frames of its newest evaluation episode with the most hazard/goal pixels
(`evaluation.object_mask`) are shown, each run a pair of rows labelled with its object error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from workbench.evaluation import object_mask
from workbench.runs import Run

FRAMES = 8
SCALE = 3


def strip(run: Run) -> tuple[np.ndarray, float]:
    """[2*64, 8*64, 3] real above reconstructed, and the object-pixel error over the episode."""
    episode = run.evaluations()[-1].load()
    frames, recons = episode["frame"], episode["recon"]
    mask = object_mask(frames)
    chosen = np.sort(np.argsort(mask.sum((1, 2)))[-FRAMES:])
    error = np.abs(frames.astype(np.float32) - recons.astype(np.float32)).mean(-1) / 255
    top = np.concatenate(list(frames[chosen]), 1)
    bottom = np.concatenate(list(recons[chosen]), 1)
    return np.concatenate([top, bottom], 0), float(error[mask].mean()) if mask.any() else 0.0


def main(out: str, run_dirs: list[str]) -> None:
    panels, labels = [], []
    for path in run_dirs:
        run = Run(path)
        image, error = strip(run)
        panels.append(image)
        labels.append(f"{run.name}: real (top) / reconstruction (bottom), object error {error:.3f}")
    label_height = 14
    rows = []
    for image, label in zip(panels, labels, strict=True):
        big = Image.fromarray(image).resize((image.shape[1] * SCALE, image.shape[0] * SCALE), 0)
        canvas = Image.new("RGB", (big.width, big.height + label_height * SCALE // 2), "white")
        canvas.paste(big, (0, label_height * SCALE // 2))
        ImageDraw.Draw(canvas).text((4, 2), label, fill="black")
        rows.append(np.asarray(canvas))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
