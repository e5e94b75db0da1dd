"""The TensorBoard sink: a `tiny` run's scalars, latent embedding and evaluation video, read back
with TensorBoard's own readers and checked against the run directory (the source of truth)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard")

from google.protobuf import text_format  # noqa: E402
from PIL import Image  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig  # noqa: E402

from workbench.engine import Engine  # noqa: E402
from workbench.runs import Run, load_arrays  # noqa: E402
from workbench.tensorboard_sink import LOG_DIR, TensorBoardHook  # noqa: E402


def test_scalars_embedding_and_video_read_back(fake_envs, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    Engine(tiny_config, run_dir, hooks=[TensorBoardHook()], progress=False).train()
    run = Run(run_dir)
    events = EventAccumulator(str(run_dir / LOG_DIR), size_guidance={"scalars": 0, "images": 0})
    events.Reload()

    # Scalars: every episode, as metrics.jsonl has it; training averages; the evaluation.
    episodes = run.metrics("episode")
    returns = events.Scalars("episode/return")
    assert [s.step for s in returns] == [e["step"] for e in episodes]
    assert np.allclose([s.value for s in returns], [e["return"] for e in episodes])
    cumulative = events.Scalars("episode/cumulative_cost")[-1].value
    assert cumulative == pytest.approx(episodes[-1]["cumulative_cost"])
    assert "train/wm/recon" in events.Tags()["scalars"]
    (evaluation,) = run.metrics("eval")
    assert events.Scalars("eval/return")[-1].value == pytest.approx(evaluation["return"])

    # Video: the evaluation episode, frame by frame, as an animated GIF.
    frames = load_arrays(sorted((run_dir / "eval").glob("*.npz"))[0])["frame"]
    (video,) = events.Images("eval/video_0")
    gif = Image.open(io.BytesIO(video.encoded_image_string))
    assert (video.width, video.height) == (64, 64)
    shown = 0  # GIF merges repeated frames into one longer frame: count display time
    for index in range(gif.n_frames):
        gif.seek(index)
        shown += gif.info["duration"]
    assert shown == len(frames) * 100  # 10 frames per second
    assert np.array_equal(np.asarray(gif.convert("RGB")), frames[-1])  # the fake's flat colours

    # Embedding: the projector's config, tensors, safety labels and thumbnails.
    config = text_format.Parse(
        (run_dir / LOG_DIR / "projector_config.pbtxt").read_text(), ProjectorConfig()
    )
    snapshots = run.snapshots()
    assert len(config.embeddings) == len(snapshots) > 0
    embedding = config.embeddings[-1]
    snapshot = load_arrays(snapshots[-1].path)
    folder = run_dir / LOG_DIR / Path(embedding.tensor_path).parent
    tensors = np.loadtxt(run_dir / LOG_DIR / embedding.tensor_path, delimiter="\t")
    assert tensors.shape == snapshot["features"].shape
    assert np.allclose(tensors, snapshot["features"].astype(np.float32), atol=1e-3)
    with open(run_dir / LOG_DIR / embedding.metadata_path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [int(row["unsafe"]) for row in rows] == snapshot["unsafe"].astype(int).tolist()
    assert (folder / "sprite.png").exists() and embedding.sprite.single_image_dim == [32, 32]


def test_without_the_package_one_clear_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[tensorboard\]"'):
        TensorBoardHook()
