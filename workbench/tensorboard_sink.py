"""A TensorBoard sink: a hook that mirrors a run into TensorBoard's event files (optional extra:
`pip install -e ".[tensorboard]"`). `metrics.jsonl` stays the source of truth; this is a view.

    workbench train --tensorboard ...            # writes RUN/tensorboard/ as it trains
    tensorboard --logdir runs                    # every run, side by side
    wandb sync runs/a/tensorboard                # Weights & Biases users: sync the same folder

What it writes, from the run directory as the engine's events announce it:
- scalars: each metric record of `metrics.jsonl` as `<kind>/<metric>`, read through
  `workbench.runs.Run` (never counted again): `episode/return`, `episode/cost`, `episode/length`,
  `episode/cumulative_cost` per episode; `train/<metric>` averaged over `train.log_every` updates
  (world model and agent); `eval/<metric>` and `eval/health/<metric>` per evaluation;
- the latent snapshots (`train.snapshot_every`) as projector embeddings: the posterior features,
  labelled per point by safety (`unsafe`, cost > 0), cost, predicted cost, disagreement and the
  agent's values (barrier, ...), with the real frames as thumbnails;
- evaluation episodes as videos (animated GIF images, as TensorBoard shows videos), `eval/video_<i>`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from workbench.hooks import (
    AgentUpdate,
    EpisodeEnd,
    Evaluation,
    Hook,
    Snapshot,
    TrainEnd,
    TrainStart,
)
from workbench.runs import Run, load_arrays, measurements

LOG_DIR = "tensorboard"
"""The sink's folder inside a run directory."""
LABELS = ("unsafe", "cost", "pred_cost", "disagreement", "value", "cost_value", "barrier")
"""Per-latent snapshot columns written as the embedding's metadata (those present)."""


class TensorBoardHook(Hook):
    """Writes scalars, latent embeddings and evaluation videos for TensorBoard (see above)."""

    def __init__(self, log_dir: str | Path | None = None, fps: int = 10, thumbnail: int = 32):
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise ImportError(
                "the TensorBoard sink needs the tensorboard package: "
                'pip install -e ".[tensorboard]"'
            ) from None
        self.log_dir = log_dir
        self.fps = fps
        self.thumbnail = thumbnail

    def on_train_start(self, event: TrainStart) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run = Run(event.engine.writer.path)
        self.read = len(self.run.metrics())  # a resumed run's records are in TensorBoard already
        folder = Path(self.log_dir) if self.log_dir else self.run.path / LOG_DIR
        # A resumed run replays from its checkpoint: drop what was logged past it.
        self.writer = SummaryWriter(str(folder), purge_step=event.step if event.resumed else None)

    def on_episode_end(self, event: EpisodeEnd) -> None:
        """The episode's record is written: mirror it."""
        self._mirror_new_records()

    def on_agent_update(self, event: AgentUpdate) -> None:
        """Every `train.log_every` updates a training record is written: mirror it."""
        self._mirror_new_records()

    def _mirror_new_records(self) -> None:
        """Each metric record appended since the last call, as `<kind>/<metric>` scalars."""
        records = self.run.metrics()
        for record in records[self.read :]:
            for key, value in measurements(record).items():
                self.writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])
        self.read = len(records)

    def on_evaluation(self, event: Evaluation) -> None:
        self._mirror_new_records()
        for index, path in enumerate(event.paths):
            frames = load_arrays(Path(path))["frame"]
            self._add_video(f"eval/video_{index}", frames, event.step)

    def on_snapshot(self, event: Snapshot) -> None:
        import torch

        arrays = load_arrays(Path(event.path))
        present = [name for name in LABELS if name in arrays]
        rows = [
            [_cell(arrays[name][i]) for name in present] for i in range(len(arrays["features"]))
        ]
        thumbnails = arrays["frame"][:, :: self._stride(arrays), :: self._stride(arrays)]
        self.writer.add_embedding(
            arrays["features"].astype(np.float32),
            metadata=rows,
            metadata_header=present,
            label_img=torch.from_numpy(thumbnails.transpose(0, 3, 1, 2) / np.float32(255)),
            global_step=event.step,
            tag="latents",
        )

    def on_train_end(self, event: TrainEnd) -> None:
        self.writer.close()

    def _stride(self, arrays: dict[str, np.ndarray]) -> int:
        return max(1, arrays["frame"].shape[1] // self.thumbnail)

    def _add_video(self, tag: str, frames: np.ndarray, step: int) -> None:
        """An episode [T, H, W, 3] uint8 as an animated GIF image summary."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        _, height, width, channels = frames.shape
        image = Summary.Image(
            height=height,
            width=width,
            colorspace=channels,
            encoded_image_string=gif_bytes(frames, self.fps),
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self.writer._get_file_writer().add_summary(summary, step)


def gif_bytes(frames: np.ndarray, fps: int) -> bytes:
    """Frames [T, H, W, 3] uint8 encoded as a looping animated GIF."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    with io.BytesIO() as buffer:
        images[0].save(
            buffer,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=int(1000 / fps),
            loop=0,
        )
        return buffer.getvalue()


def _cell(value: np.generic) -> str:
    """One metadata cell (the projector's TSV): booleans as 0/1, numbers to 4 digits."""
    if value.dtype == bool:
        return str(int(value))
    return f"{float(value):.4g}"
