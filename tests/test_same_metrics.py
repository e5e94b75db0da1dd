"""Behaviour unchanged: a `tiny` run on the fake task logs exactly the recorded metrics.

The records in `tests/data/tiny_metrics.json` were written by this code before the structure
refactor (issue 10). A change that moves code without changing behaviour leaves them equal;
a change that means to alter training records them again:
`OMP_NUM_THREADS=1 python -m tests.test_same_metrics`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.config import resolve
from workbench.engine import Engine
from workbench.runs import Run

RECORDED = Path(__file__).parent / "data" / "tiny_metrics.json"
ALGOS = ("dreamer", "bsrp-lag", "osrp-lag", "barrier", "cerl")
CLOCK_KEYS = ("time", "fps")


def tiny_run_metrics(algo: str, run_dir: Path) -> list[dict]:
    """The metric records of a seeded `tiny` run of `algo`, without wall-clock values."""
    overrides = {"train.device": "cpu", "env.task": "SafetyPointGoal1-v0", "algo": algo}
    Engine(resolve("tiny", overrides), run_dir, progress=False).train()
    records = Run(run_dir).metrics()
    return [{k: v for k, v in r.items() if k not in CLOCK_KEYS} for r in records]


@pytest.mark.parametrize("algo", ALGOS)
def test_a_tiny_run_logs_the_recorded_metrics(fake_envs, tmp_path, algo):
    recorded = json.loads(RECORDED.read_text())[algo]
    assert tiny_run_metrics(algo, tmp_path / "run") == recorded


def record() -> None:
    """Write the fixture anew (with the fake task patched in, as the test's fixture does)."""
    import tempfile

    import torch

    from tests.conftest import fake_envs

    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_envs.__wrapped__(monkeypatch)
        with tempfile.TemporaryDirectory() as folder:
            metrics = {a: tiny_run_metrics(a, Path(folder) / a) for a in ALGOS}
    RECORDED.write_text(json.dumps(metrics, indent=1) + "\n")


if __name__ == "__main__":
    record()
