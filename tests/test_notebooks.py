"""The teaching notebooks run top to bottom with their fast parameters (as CI runs them), and
their exercises check answers: right ones pass, wrong ones get a hint, none raise."""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
import pytest

from workbench import lessons

NOTEBOOKS = sorted(lessons.LESSONS.glob("*.ipynb"))
SOURCES = sorted(lessons.LESSONS.glob("*.py"))


@pytest.mark.notebook
@pytest.mark.real
@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_with_fast_parameters(path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv(lessons.FAST_ENV, "1")
    notebook = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells), "commit notebooks cleared"
    start = time.perf_counter()
    nbclient.NotebookClient(
        notebook, timeout=240, resources={"metadata": {"path": path.parent}}
    ).execute()
    seconds = time.perf_counter() - start
    printed = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "SCALE = 0.1" in printed  # it really ran with the fast parameters
    exercises = printed.count("not answered yet")
    assert exercises == sum("check(" in cell.source for cell in notebook.cells)
    print(f"{path.name}: {seconds:.0f} s, {exercises} exercises")
    EXECUTED[path.stem] = notebook


EXECUTED: dict[str, Any] = {}
"""The notebooks the test above executed, by name, for the next one to read."""


@pytest.mark.notebook
def test_executed_lessons_show_every_figure_without_a_kernel():
    import nbformat
    import plotly.graph_objects as go

    from workbench.inspect import figures

    if not EXECUTED:
        pytest.skip("no lesson executed in this session (the test above executes them)")
    if figures.figure_png(go.Figure()) is None:
        pytest.skip("figures get no static images here: kaleido or Chromium is missing")
    for name, notebook in EXECUTED.items():
        shown = [out.get("data", {}) for cell in notebook.cells for out in cell.get("outputs", [])]
        plots = [data for data in shown if "application/vnd.plotly.v1+json" in data]
        assert all("image/png" in data for data in plots), f"{name}: a figure without its image"
        copies = "".join(data.get("text/html", "") for data in shown)
        assert "plotly-graph-div" not in copies, f"{name}: a widget's figure without its image"
        assert len(nbformat.writes(notebook)) < 5e6, f"{name}: over 5 MB once executed"


def test_committed_notebooks_are_made_from_their_sources():
    import nbformat

    assert [path.stem for path in SOURCES] == [path.stem for path in NOTEBOOKS]
    for source in SOURCES:
        committed = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
        made = lessons.lesson_notebook(source)
        assert _cells(committed) == _cells(made), (
            f"{source.stem}.ipynb differs from {source.name}: run `python -m workbench.lessons`"
        )


def _cells(notebook) -> list[tuple[str, str, str]]:
    return [(cell.id, cell.cell_type, cell.source) for cell in notebook.cells]


def test_every_exercise_is_asked_with_its_question():
    asked = {}
    for source in SOURCES:
        for cell in lessons.lesson_notebook(source).cells:
            for name in re.findall(r"\*\*Exercise `([^`]+)`\.\*\*", cell.source):
                asked[name] = cell.source
    assert sorted(asked) == sorted(lessons.EXERCISES)
    for name, text in asked.items():
        assert lessons.EXERCISES[name].question in text, f"{name}: not the question of EXERCISES"


# ---------------------------------------------------------------------------------------------
# The exercises.

DATA = {
    "quickstart/unsafe_fraction": {"labels": np.array([1, 0, 0, 0], bool)},
    "quickstart/majority_accuracy": {"labels": np.array([1, 0, 0, 0], bool)},
    "cmdp/episode_cost": {"costs": np.array([0.0, 1.0, 2.0])},
    "cmdp/discounted_cost": {"costs": np.array([0.0, 1.0, 2.0]), "gamma": 0.5},
    "cmdp/within_budget": {"episode_costs": np.array([30.0, 10.0, 25.0]), "budget": 25.0},
    "world_model/worst_step": {"errors": np.array([0.1, 0.5, 0.2])},
    "world_model/which_is_better": {"recon_errors": [0.1, 0.2], "imagined_errors": [0.3, 0.4]},
    "barrier/decay": {},
    "barrier/invariance": {},
    "barrier/hand_written": {"centre": np.zeros(2), "radius": 0.5},
    "ensembles/more_uncertain": {"familiar": [0.1, 0.2], "unfamiliar": [0.5, 0.9]},
    "ensembles/worst_member": {"member_costs": np.array([0.2, 0.7, 0.1])},
    "ensembles/feasible": {"member_costs": np.array([0.2, 0.7, 0.1]), "budget": 0.5},
    "lagrange/next_multiplier": {
        "integral": 0.5,
        "violation": 2.0,
        "ki": 0.1,
        "kp": 0.3,
        "limit": 100.0,
    },  # fmt: skip
    "planning/elites": {
        "returns": np.array([3.0, 5.0, 1.0, 4.0, 2.0]),
        "costs": np.array([0.0, 2.0, 0.0, 1.0, 0.0]),
        "budget": 1.0,
        "count": 2,
    },
    "offline/latent_action": {"u": np.array([0.0, 10.0]), "bound": 2.0},
    "offline/safe_fraction": {"costs": np.array([0.0, 1.0, 0.0, 0.0])},
}
RIGHT = {
    "quickstart/unsafe_fraction": 0.25,
    "quickstart/majority_accuracy": 0.75,
    "cmdp/episode_cost": 3.0,
    "cmdp/discounted_cost": 1.0,  # 0 + 0.5 * 1 + 0.25 * 2
    "cmdp/within_budget": [1, 2],
    "world_model/worst_step": 1,
    "world_model/which_is_better": "Reconstruction",
    "barrier/decay": 0.9,
    "barrier/invariance": lambda b_now, b_next, alpha: b_next - (1 - alpha) * b_now >= 0,
    "barrier/hand_written": lambda x: np.linalg.norm(x, axis=-1) - 0.5,
    "ensembles/more_uncertain": "unfamiliar",
    "ensembles/worst_member": 0.7,
    "ensembles/feasible": False,
    "lagrange/next_multiplier": 1.3,  # integral 0.5 + 0.1 * 2 = 0.7, plus 0.3 * 2
    "planning/elites": {3, 0},
    "offline/latent_action": [0.0, 2.0],
    "offline/safe_fraction": 0.75,
}
WRONG = {
    "barrier/invariance": lambda b_now, b_next, alpha: b_next >= b_now,
    "barrier/hand_written": lambda x: 0.5 - np.linalg.norm(x, axis=-1),  # signs swapped
    "world_model/which_is_better": "imagination",
    "ensembles/more_uncertain": "familiar",
    "ensembles/feasible": True,
    "cmdp/within_budget": [1],
    "planning/elites": [1, 3],
}


def test_every_exercise_is_tested_here():
    assert set(DATA) == set(RIGHT) == set(lessons.EXERCISES)


@pytest.mark.parametrize("name", sorted(lessons.EXERCISES))
def test_exercise_says_right_wrong_or_not_answered(name, capsys):
    data = DATA[name]
    assert lessons.check(name, RIGHT[name], **data) is True
    assert "right!" in capsys.readouterr().out
    wrong = WRONG.get(name, 123.0)
    assert lessons.check(name, wrong, **data) is False
    assert "not yet. Hint:" in capsys.readouterr().out
    assert lessons.check(name, ..., **data) is False  # the reference is checked, quietly
    assert "not answered yet" in capsys.readouterr().out
    assert lessons.check(name, lambda *_: 1 / 0, **data) is False  # a crashing answer is wrong


def test_a_broken_reference_is_a_lesson_error(monkeypatch):
    broken = lessons.Exercise("?", "?", reference=lambda: 1.0, is_right=lambda answer: False)
    monkeypatch.setitem(lessons.EXERCISES, "broken", broken)
    with pytest.raises(lessons.LessonError):
        lessons.check("broken", ...)
    with pytest.raises(KeyError, match="no exercise 'nope'"):
        lessons.check("nope", 1)


def test_solution_shows_the_reference(capsys):
    assert lessons.solution("cmdp/episode_cost", costs=np.ones(3)) == 3.0
    assert "3.0" in capsys.readouterr().out


def test_scale_knob(monkeypatch):
    monkeypatch.delenv(lessons.FAST_ENV, raising=False)
    assert lessons.notebook_scale(2.0) == 2.0
    monkeypatch.setenv(lessons.FAST_ENV, "1")
    assert lessons.notebook_scale(2.0) == lessons.FAST_SCALE
    assert lessons.scaled(500, 0.1) == 50 and lessons.scaled(500, 0.01, minimum=20) == 20


def test_pretrained_run_is_shipped_small_and_loads():
    from workbench.checkpoint import load_agent
    from workbench.inspect.projection import load_snapshot
    from workbench.runs import Run

    path = lessons.pretrained_run()
    run = Run(path)
    assert run.status == "finished" and run.evaluations() and run.snapshots()
    shipped = [
        file for file in path.rglob("*") if file.is_file() and ".viewer-cache" not in file.parts
    ]
    assert sum(file.stat().st_size for file in shipped) < 25e6
    loaded = load_agent(path)
    assert loaded.config.algo == "barrier" and loaded.step == run.weights()[-1].number == 20000
    assert "barrier" in load_snapshot(run.snapshots()[-1])
