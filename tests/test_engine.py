"""The engine on the fast fake task: hook order, stopping, the run directory, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fakes import FAKE_FACTORIES, Recorder
from workbench.engine import Engine
from workbench.hooks import Checkpoint, EnvStep, Hook, StopAfter
from workbench.runs import Run, RunError


def test_hooks_are_called_in_lifecycle_order(tiny_config, tmp_path):
    recorder = Recorder()
    engine = Engine(tiny_config, tmp_path / "run", [recorder], factories=FAKE_FACTORIES)
    engine.train()
    calls = recorder.calls
    assert calls[0] == "on_train_start" and calls[-1] == "on_train_end"
    # Every update is world model, then imagination, then agent, in that order.
    updates = [
        c
        for c in calls
        if c in ("on_world_model_update", "on_imagination_event", "on_agent_update")
    ]
    expected = (
        tiny_config.train.steps - tiny_config.train.prefill
    ) // tiny_config.train.train_every
    assert (
        updates == ["on_world_model_update", "on_imagination_event", "on_agent_update"] * expected
    )
    # No update happens during the prefill: the first update follows `prefill` env steps.
    assert calls.index("on_world_model_update") > tiny_config.train.prefill
    assert calls.count("on_env_step") == tiny_config.train.steps
    assert calls.count("on_episode_end") == tiny_config.train.steps // 50  # 100 physics / repeat 2
    # The final checkpoint and evaluation come after the last update, before train end.
    tail = calls[calls.index("on_train_end") - 2 : -1]
    assert sorted(tail) == ["on_checkpoint", "on_evaluation"]


def test_hooks_only_observe_an_event_emitted_from_a_hook_is_refused(tiny_config, tmp_path):
    class Meddler(Hook):
        def on_env_step(self, event: EnvStep) -> None:
            engine.bus.emit(Checkpoint(event.step, path="elsewhere"))

    engine = Engine(tiny_config, tmp_path / "run", [Meddler()], factories=FAKE_FACTORIES)
    with pytest.raises(RuntimeError, match="Checkpoint emitted while hooks handle EnvStep"):
        engine.train()
    assert Run(tmp_path / "run").status == "crashed"


def test_a_hook_returning_false_stops_training_cleanly(fake_envs, tiny_config, tmp_path):
    stopper = StopAfter(updates=2)
    engine = Engine(tiny_config, tmp_path / "run", [stopper], progress=False)
    assert engine.train() == "stopped"
    assert stopper.seen == [1, 2] and engine.counters["update"] == 2
    run = Run(tmp_path / "run")
    assert run.status == "stopped"
    assert run.checkpoints(), "a stopped run still saves its final checkpoint"


def test_run_directory_holds_metrics_episodes_checkpoints_and_evaluation(
    fake_envs, tiny_config, tmp_path
):
    Engine(tiny_config, tmp_path / "run", progress=False).train()
    run = Run(tmp_path / "run")
    assert run.status == "finished"
    assert run.info()["schema"] == 1 and run.config()["algo"] == "dreamer"
    episodes = run.metrics("episode")
    assert len(episodes) == len(run.episodes()) == 2
    assert episodes[-1]["cumulative_cost"] == pytest.approx(sum(e["cost"] for e in episodes))
    train = run.metrics("train")
    assert train and {"wm/recon", "wm/kl", "agent/actor_loss", "fps"} <= train[0].keys()
    arrays = run.episodes()[0].load()
    assert arrays["obs"].shape == (51, 64, 64, 3) and arrays["obs"].dtype == np.uint8
    assert arrays["is_first"][0] and not arrays["is_first"][1:].any()
    evaluation = run.evaluations()[0].load()
    assert {
        "frame",
        "recon",
        "pred_cost",
        "disagreement",
        "value",
        "cost_value",
    } <= evaluation.keys()
    assert evaluation["frame"].shape == evaluation["recon"].shape
    assert [c.number for c in run.checkpoints()] == [60, 120]


def test_resume_continues_counters_and_keeps_episodes(fake_envs, tiny_config, tmp_path):
    Engine(tiny_config, tmp_path / "run", progress=False).train()
    before = Run(tmp_path / "run")
    updates_before = before.metrics("train")[-1]["update"]
    engine = Engine.resume(tmp_path / "run", steps=220, progress=False)
    assert engine.step == 120 and engine.counters["update"] == updates_before
    assert engine.replay.num_episodes == 2 and engine.replay.num_steps == 102
    engine.train()
    run = Run(tmp_path / "run")
    assert run.metrics("train")[-1]["update"] == (220 - tiny_config.train.prefill) // 10
    assert len(run.episodes()) == 4
    assert run.checkpoints()[-1].number == 220


def test_existing_run_is_never_overwritten(fake_envs, tiny_config, tmp_path):
    Engine(tiny_config, tmp_path / "run", progress=False).train()
    with pytest.raises(RunError, match="--resume"):
        Engine(tiny_config, tmp_path / "run", progress=False)


def test_a_run_being_written_cannot_be_resumed(fake_envs, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    Engine(tiny_config, run_dir, progress=False).train()
    (run_dir / ".lock").write_text("1")  # pid 1 is alive
    with pytest.raises(RunError, match="still being written"):
        Engine.resume(run_dir, progress=False)


def test_resume_of_an_empty_directory_says_what_is_wrong(tmp_path):
    with pytest.raises(RunError, match="holds no run"):
        Engine.resume(tmp_path, progress=False)


def test_reader_skips_partial_lines_and_reads_incrementally(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(json.dumps({"kind": "train", "step": 1, "x": 1.0}) + "\n" + '{"kind": "tra')
    run = Run(run_dir)
    assert [r["step"] for r in run.metrics()] == [1]
    with open(metrics, "a") as f:
        f.write('in", "step": 2, "x": 2.0}\n')
    assert [r["step"] for r in run.metrics("train")] == [1, 2]
    assert run.series("train", "x")[1].tolist() == [1.0, 2.0]


def test_crashed_run_is_reported_as_crashed(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (run_dir / "run.json").write_text(json.dumps({"schema": 1, "status": "running", "pid": 999999}))
    assert Run(run_dir).status == "crashed"
    assert Run(run_dir).metrics() == [] and Run(run_dir).checkpoints() == []


def test_reader_drops_records_a_resumed_session_superseded(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    records = [("start", 0), ("episode", 40), ("episode", 90), ("start", 50), ("episode", 90)]
    lines = [json.dumps({"kind": kind, "step": step}) for kind, step in records]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert [r["step"] for r in Run(run_dir).metrics("episode")] == [40, 90]


def test_a_non_empty_folder_that_is_no_run_is_left_alone(fake_envs, tiny_config, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="holds no run"):
        Engine(tiny_config, tmp_path, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("algo", ["dreamer", "bsrp-lag", "barrier"])
def test_bf16_autocast_path_trains(fake_envs, tmp_path, algo):
    """The mixed-precision path CUDA uses by default, exercised with CPU autocast."""
    from workbench.config import resolve

    config = resolve("tiny", {"train.device": "cpu", "train.precision": "bf16", "algo": algo})
    assert Engine(config, tmp_path / "run", progress=False).train() == "finished"
    losses = Run(tmp_path / "run").series("train", "wm/loss")[1]
    assert len(losses) and np.isfinite(losses).all()


def test_a_run_ending_on_an_evaluation_step_is_evaluated_once_there(fake_envs, tmp_path):
    from workbench.config import resolve

    config = resolve("tiny", {"train.device": "cpu", "train.eval_every": 60})
    Engine(config, tmp_path / "run", progress=False).train()
    assert [r["step"] for r in Run(tmp_path / "run").metrics("eval")] == [60, 120]


class _Lead(Recorder):
    """Records hook calls, and at each world-model update how far collection had got."""

    def __init__(self):
        super().__init__()
        self.leads: list[tuple[int, int]] = []

    def on_train_start(self, event):
        self.engine = event.engine
        self.calls.append("on_train_start")

    def on_world_model_update(self, event):
        self.leads.append((event.update, self.engine.source.collector.step))
        self.calls.append("on_world_model_update")


def test_overlapped_collection_keeps_the_replay_ratio_and_the_hook_order(
    fake_envs, tiny_config, tmp_path
):
    serial, overlapped = Recorder(), _Lead()
    Engine(tiny_config, tmp_path / "serial", [serial], progress=False).train()
    tiny_config.train.overlap = True
    engine = Engine(tiny_config, tmp_path / "overlap", [overlapped], progress=False)
    assert engine.train() == "finished"
    assert overlapped.calls == serial.calls  # the same events, in the same order
    train = tiny_config.train
    assert engine.counters["update"] == (train.steps - train.prefill) // train.train_every
    for update, collected in overlapped.leads:  # at most one update's worth of steps ahead
        assert collected < train.prefill + (update + 1) * train.train_every
    assert (
        engine.source.collector.agent is not engine.agent
    )  # acting with its own copy of the weights


def test_overlapped_run_resumes(fake_envs, tiny_config, tmp_path):
    tiny_config.train.overlap = True
    Engine(tiny_config, tmp_path / "run", progress=False).train()
    engine = Engine.resume(tmp_path / "run", steps=tiny_config.train.steps + 40, progress=False)
    assert engine.train() == "finished" and engine.step == tiny_config.train.steps + 40
    train = tiny_config.train
    assert engine.counters["update"] == (engine.step - train.prefill) // train.train_every
