"""Runs on shared storage: a reader on another host tells a running run from a crashed one by
its heartbeat, and stops it through the STOP file the engine polls."""

from __future__ import annotations

import time

import pytest

from workbench import dashboard, runs
from workbench.engine import Engine
from workbench.hooks import Hook, StopFile
from workbench.runs import Run, RunWriter, read_json, write_json


def _on_host(monkeypatch, name: str) -> None:
    monkeypatch.setattr(runs, "host_name", lambda: name)
    monkeypatch.setattr(dashboard, "host_name", lambda: name)


def test_reader_on_another_host_trusts_the_heartbeat(tmp_path, monkeypatch):
    _on_host(monkeypatch, "trainer-1")
    writer = RunWriter(tmp_path / "run", config={})
    assert read_json(tmp_path / "run" / "run.json")["host"] == "trainer-1"

    _on_host(monkeypatch, "laptop")  # the writer's pid means nothing here
    assert Run(tmp_path / "run").status == "running"
    info = read_json(tmp_path / "run" / "run.json")
    write_json(tmp_path / "run" / "run.json", {**info, "updated": time.time() - 301})
    assert Run(tmp_path / "run").status == "crashed"  # silent for more than STALE_SECONDS

    _on_host(monkeypatch, "trainer-1")  # the writer's own host asks the OS instead
    assert Run(tmp_path / "run").status == "running"
    writer.close("finished")
    _on_host(monkeypatch, "laptop")
    assert Run(tmp_path / "run").status == "finished"


def test_logging_refreshes_the_heartbeat(tmp_path, monkeypatch):
    writer = RunWriter(tmp_path / "run", config={})
    info = read_json(tmp_path / "run" / "run.json")
    writer.info["updated"] = info["updated"] - runs.HEARTBEAT_SECONDS
    writer.log("episode", 1, {"return": 0.0})
    assert read_json(tmp_path / "run" / "run.json")["updated"] >= info["updated"]
    writer.info["updated"] = before = time.time()
    writer.log("episode", 2, {"return": 0.0})  # within the period: run.json is not rewritten
    assert read_json(tmp_path / "run" / "run.json")["updated"] < before
    writer.close("finished")


class AskToStopFromElsewhere(Hook):
    """Plays the dashboard on another host: asks to stop once the first episode ends."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch

    def on_train_start(self, event):
        self.run = Run(event.engine.run_dir)

    def on_episode_end(self, event):
        if not (self.run.path / runs.STOP_FILE).exists():
            _on_host(self.monkeypatch, "laptop")
            assert dashboard.stop_training(self.run) > 0  # through the STOP file, no signal
            _on_host(self.monkeypatch, "trainer-1")


def test_the_engine_stops_cleanly_on_the_stop_file(fake_envs, tiny_config, tmp_path, monkeypatch):
    _on_host(monkeypatch, "trainer-1")
    monkeypatch.setattr(StopFile, "every", 0.0)  # look at every step
    engine = Engine(
        tiny_config, tmp_path / "run", [AskToStopFromElsewhere(monkeypatch)], progress=False
    )
    assert engine.train() == "stopped"
    run = Run(tmp_path / "run")
    assert run.status == "stopped" and run.checkpoints()  # a checkpoint to resume from
    assert engine.step < tiny_config.train.steps
    resumed = Engine.resume(tmp_path / "run", progress=False)  # a new session clears the request
    assert not (tmp_path / "run" / runs.STOP_FILE).exists()
    assert resumed.train() == "finished"


def test_stopping_a_run_that_is_not_running_is_one_clear_error(tmp_path):
    writer = RunWriter(tmp_path / "run", config={})
    writer.close("finished")
    with pytest.raises(runs.RunError, match="is not running"):
        dashboard.stop_training(Run(tmp_path / "run"))
