"""A TensorBoard sink: a hook that mirrors a run into TensorBoard's event files (optional extra:
`pip install -e ".[tensorboard]"`). `metrics.jsonl` stays the source of truth; this is a view.

    workbench train --tensorboard ...            # writes RUN/tensorboard/ as it trains
    tensorboard --logdir runs                    # every run, side by side
    wandb sync runs/a/tensorboard                # Weights & Biases users: sync the same folder

What it writes, from the engine's events:
- scalars: `episode/return`, `episode/cost`, `episode/length`, `episode/cumulative_cost` per
  episode; `train/<metric>` averaged over `train.log_every` updates (world model and agent);
  `eval/<metric>` and `eval/health/<metric>` per evaluation;
- the latent snapshots (`train.snapshot_every`) as projector embeddings: the posterior features,
  labelled per point by safety (`unsafe`, cost > 0), cost, predicted cost, disagreement and the
  agent's values (barrier, ...), with the real frames as thumbnails;
- evaluation episodes as videos (animated GIF images, as TensorBoard shows videos), `eval/video_<i>`.
"""

from __future__ import annotations

import io
from collections import defaultdict
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
    WorldModelUpdate,
)
from workbench.runs import load_arrays

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
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def on_train_start(self, event: TrainStart) -> None:
        from torch.utils.tensorboard import SummaryWriter

        engine = event.engine
        folder = Path(self.log_dir) if self.log_dir else Path(engine.run_dir) / LOG_DIR
        # A resumed run replays from its checkpoint: drop what was logged past it.
        self.writer = SummaryWriter(str(folder), purge_step=event.step if event.resumed else None)
        self.log_every = engine.config.train.log_every

    def on_episode_end(self, event: EpisodeEnd) -> None:
        for name, value in (("return", event.ret), ("cost", event.cost), ("length", event.length)):
            self.writer.add_scalar(f"episode/{name}", value, event.step)
        self.writer.add_scalar("episode/cumulative_cost", event.cumulative_cost, event.step)

    def on_world_model_update(self, event: WorldModelUpdate) -> None:
        self._accumulate(event.metrics)

    def on_agent_update(self, event: AgentUpdate) -> None:
        self._accumulate(event.metrics)
        if event.update % self.log_every == 0:
            for key in sorted(self.sums):
                self.writer.add_scalar(
                    f"train/{key}", self.sums[key] / self.counts[key], event.step
                )
            self.sums.clear()
            self.counts.clear()

    def on_evaluation(self, event: Evaluation) -> None:
        for key in event.episodes[0] if event.episodes else ():
            mean = float(np.mean([episode[key] for episode in event.episodes]))
            self.writer.add_scalar(f"eval/{key}", mean, event.step)
        for key, value in event.health.items():
            if isinstance(value, float):
                self.writer.add_scalar(f"eval/health/{key}", value, event.step)
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

    def _accumulate(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if value is not None and np.isfinite(value):
                self.sums[key] += float(value)
                self.counts[key] += 1

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
