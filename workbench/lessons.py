"""Self-checking exercises and small helpers for the teaching notebooks in `notebooks/`.

    from workbench.lessons import check, solution
    answer = ...                                      # the reader replaces ... with an answer
    check("cmdp/episode_cost", answer, costs=costs)   # prints right, or not yet with a hint
    solution("cmdp/episode_cost", costs=costs)        # stuck? shows the reference answer

`check` never raises on a wrong or missing answer, it only prints feedback, so a notebook whose
answer cells are left empty still runs top to bottom. While an answer is missing, `check` tries
the reference solution on the same data instead and raises `LessonError` if even that fails: a
bug in the lesson, which CI catches by executing every notebook.

Each notebook has one size knob, `SCALE = notebook_scale()`: 1 by default (a few minutes on a
laptop CPU), larger to train longer and sample more, and small when the environment variable
`WORKBENCH_NOTEBOOK_FAST=1` is set (how CI runs them in under a minute each).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.runs import SHIPPED_RUNS

FAST_ENV = "WORKBENCH_NOTEBOOK_FAST"
"""Set to 1 to run every notebook with its fast parameters."""
FAST_SCALE = 0.1
"""The size knob under WORKBENCH_NOTEBOOK_FAST=1."""
PRETRAINED = "pointgoal1-barrier"
"""The run directory under `checkpoints/` that the notebooks open."""
LESSONS = Path(__file__).resolve().parents[1] / "notebooks"
"""The lessons' sources (`*.py`, Jupytext's percent format) and the notebooks made from them."""
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


class LessonError(AssertionError):
    """An exercise's own reference solution fails its check: the lesson, not the reader, is wrong."""


def notebook_scale(default: float = 1.0) -> float:
    """A notebook's size knob: `default`, or `FAST_SCALE` when WORKBENCH_NOTEBOOK_FAST=1."""
    return FAST_SCALE if os.environ.get(FAST_ENV) == "1" else default


def scaled(count: int, scale: float, minimum: int = 1) -> int:
    """`count` times `scale`, rounded, never below `minimum`."""
    return max(minimum, round(count * scale))


def readable_anywhere() -> None:
    """Make every plotly figure this kernel shows carry, beside plotly's interactive form, a PNG
    image of itself (`workbench.inspect.figures.figure_bundle`: no plotly.js, no network), so a
    lesson reads without a kernel: on GitHub or nbviewer, exported with `jupyter nbconvert --to
    html`, offline. The widgets save a copy of their views as images too."""
    import plotly.io as pio
    from plotly.io._base_renderers import MimetypeRenderer

    from workbench.inspect.figures import figure_bundle

    class Readable(MimetypeRenderer):
        def to_mimebundle(self, fig_dict: dict) -> dict:
            import plotly.graph_objects as go

            return figure_bundle(go.Figure(fig_dict, skip_invalid=True))

    pio.renderers["workbench"] = Readable()
    pio.renderers.default = "workbench"


def pretrained_run(name: str = PRETRAINED) -> Path:
    """The shipped pretrained run directory `checkpoints/<name>` of this source tree."""
    path = SHIPPED_RUNS / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"no pretrained run at {path}; the notebooks need a source checkout of the workbench "
            "(with its checkpoints/ folder), installed with `pip install -e .`"
        )
    return path


def lesson_notebook(source: Path) -> Any:
    """The notebook of a lesson's source: its cells, with stable ids and no outputs."""
    import jupytext

    notebook = jupytext.read(source, fmt="py:percent")
    for index, cell in enumerate(notebook.cells):  # rebuilding changes only what changed
        cell.id = f"cell-{index:02d}"
    notebook.metadata = {"kernelspec": KERNELSPEC}
    return notebook


def build_notebooks(folder: Path = LESSONS) -> list[Path]:
    """Write the notebook of every lesson source in `folder`; the notebooks written."""
    import nbformat

    written = []
    for source in sorted(folder.glob("*.py")):
        written.append(source.with_suffix(".ipynb"))
        nbformat.write(lesson_notebook(source), written[-1])
    return written


# ---------------------------------------------------------------------------------------------
# Exercises.


def _same(answer: Any, reference: Any) -> bool:
    """Equal up to float tolerance (numbers, arrays), case (text), or order (sets)."""
    if isinstance(reference, str):
        return isinstance(answer, str) and answer.strip().casefold() == reference.casefold()
    if isinstance(reference, set | frozenset):
        try:
            return {int(x) for x in np.ravel(list(answer))} == reference
        except (TypeError, ValueError):
            return False
    try:
        answer, reference = np.asarray(answer, dtype=float), np.asarray(reference, dtype=float)
    except (TypeError, ValueError):
        return False
    return answer.shape == reference.shape and bool(np.allclose(answer, reference, rtol=1e-3))


def _same_function(answer: Any, reference: Callable, inputs: list[Any]) -> bool:
    """A function that gives the reference's outputs on the given inputs."""
    if not callable(answer):
        return False
    try:
        return all(_same(np.asarray(answer(*x)), np.asarray(reference(*x))) for x in inputs)
    except Exception:  # the reader's code failing is a wrong answer, not a crash
        return False


def _barrier_of_disc(answer: Any, centre: np.ndarray, radius: float) -> bool:
    """A function of points [N, 2] that is positive exactly outside the disc, judged on a grid
    over the toy's square [-2, 2]^2 (points on the disc's edge are skipped)."""
    if not callable(answer):
        return False
    axis = np.linspace(-2, 2, 41)
    points = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    margin = np.sum((points - centre) ** 2, -1) - radius**2
    points, safe = points[np.abs(margin) > 1e-6], margin[np.abs(margin) > 1e-6] > 0
    try:
        values = np.asarray(answer(points), dtype=float).reshape(-1)
    except Exception:
        return False
    return values.shape == safe.shape and bool(np.all((values > 0) == safe))


@dataclass(frozen=True)
class Exercise:
    question: str
    hint: str
    reference: Callable[..., Any]
    """The reference answer, from the exercise's data (keyword arguments)."""
    is_right: Callable[..., bool] | None = None
    """(answer, **data) -> bool; default: the answer equals `reference(**data)`."""

    def right(self, answer: Any, data: dict[str, Any]) -> bool:
        if self.is_right is not None:
            return self.is_right(answer, **data)
        return _same(answer, self.reference(**data))


def _discounted(costs: np.ndarray, gamma: float) -> float:
    return float(np.sum(np.asarray(costs) * gamma ** np.arange(len(costs))))


# References that need an agent's own code import it when asked (torch is slow to import).


def _invariance_holds(b_now: np.ndarray, b_next: np.ndarray, alpha: float) -> np.ndarray:
    import torch

    from workbench.agents.barrier import invariance_violation

    violation = invariance_violation(torch.as_tensor(b_now), torch.as_tensor(b_next), alpha)
    return violation.numpy() == 0


def _next_multiplier(integral: float, violation: float, ki: float, kp: float, limit: float):
    from workbench.agents.lagrange import PIDLagrangian
    from workbench.config import LagrangeConfig

    config = LagrangeConfig(kp=kp, ki=ki, kd=0.0, init=integral, max=limit)
    return PIDLagrangian(config, budget=0.0).update(violation)


def _elites(returns: np.ndarray, costs: np.ndarray, budget: float, count: int) -> set[int]:
    import torch

    from workbench.agents.osrp import select_elites

    chosen = select_elites(torch.as_tensor(returns), torch.as_tensor(costs), budget, count)
    return {int(i) for i in chosen}


_RANDOM = np.random.default_rng(0)
_INVARIANCE_INPUTS = [(_RANDOM.normal(size=20), _RANDOM.normal(size=20), a) for a in (0.1, 0.5)]

EXERCISES: dict[str, Exercise] = {
    # 00_quickstart
    "quickstart/unsafe_fraction": Exercise(
        "What fraction of the snapshot's latent states are unsafe (cost > 0)?",
        "`labels` holds one 0/1 safety label per state; unsafe is 1. Its mean is the fraction.",
        lambda labels: float(np.mean(labels)),
    ),
    "quickstart/majority_accuracy": Exercise(
        "What plain accuracy does a lazy probe get that calls every latent safe?",
        "It is right exactly on the safe latents: one minus the unsafe fraction. This is why "
        "`probe_accuracy` reports balanced accuracy, for which chance is 0.5.",
        lambda labels: float(1 - np.mean(labels)),
    ),
    # 01_safety_gymnasium_and_cmdps
    "cmdp/episode_cost": Exercise(
        "What is the episode cost J_c of the recorded episode (undiscounted)?",
        "The episode cost is the plain sum of the per-step costs.",
        lambda costs: float(np.sum(costs)),
    ),
    "cmdp/discounted_cost": Exercise(
        "What is its discounted cost return, sum over t of gamma^t c_t (t from 0)?",
        "Multiply each step's cost by gamma ** t, t = 0, 1, ..., and sum: np.arange helps.",
        _discounted,
    ),
    "cmdp/within_budget": Exercise(
        "Which of the episodes (their indices) satisfy the constraint J_c <= d?",
        "Compare each episode's cost with the budget; np.flatnonzero gives the indices.",
        lambda episode_costs, budget: {int(i) for i in np.flatnonzero(episode_costs <= budget)},
    ),
    # 02_world_model
    "world_model/worst_step": Exercise(
        "At which step (index) is the open-loop prediction furthest from reality?",
        "np.argmax of the per-step errors.",
        lambda errors: int(np.argmax(errors)),
    ),
    "world_model/which_is_better": Exercise(
        "Which is closer to the real frames on average: 'reconstruction' or 'imagination'?",
        "Compare the means of the two error curves; the reconstruction sees every frame.",
        lambda recon_errors, imagined_errors: (
            "reconstruction" if np.mean(recon_errors) <= np.mean(imagined_errors) else "imagination"
        ),
    ),
    # 03_barrier_functions
    "barrier/decay": Exercise(
        "If B(z) = 1 and alpha = 0.1, what is the least B(z') that keeps the invariance condition?",
        "B(z') - B(z) + alpha B(z) >= 0 means B(z') >= (1 - alpha) B(z).",
        lambda: 0.9,
    ),
    "barrier/invariance": Exercise(
        "Write holds(b_now, b_next, alpha): a boolean array, True where a transition keeps "
        "B(z') - B(z) + alpha B(z) >= 0.",
        "Work on whole numpy arrays: b_next - b_now + alpha * b_now >= 0.",
        lambda: _invariance_holds,
        lambda answer: _same_function(answer, _invariance_holds, _INVARIANCE_INPUTS),
    ),
    "barrier/hand_written": Exercise(
        "Write a barrier B(x) for the toy: positive inside the safe set, negative outside.",
        "The safe set is everything at least `radius` away from the hazard's centre, so "
        "|x - centre|^2 - radius^2 has the right sign.",
        lambda centre, radius: lambda x: np.sum((x - centre) ** 2, -1) - radius**2,
        _barrier_of_disc,
    ),
    # 04_ensembles_and_uncertainty
    "ensembles/more_uncertain": Exercise(
        "Where does the ensemble disagree more on average: 'familiar' or 'unfamiliar' frames?",
        "Compare the means of the two disagreement arrays.",
        lambda familiar, unfamiliar: (
            "unfamiliar" if np.mean(unfamiliar) > np.mean(familiar) else "familiar"
        ),
    ),
    "ensembles/worst_member": Exercise(
        "CERL judges a policy by its worst member: what is Jc_worst for these member estimates?",
        "The pessimistic estimate is the largest cost return over the members.",
        lambda member_costs: float(np.max(member_costs)),
    ),
    "ensembles/feasible": Exercise(
        "Is the policy feasible for CERL, Jc_worst < d? Answer True or False.",
        "Take the worst member's cost return and compare it with the budget d.",
        lambda member_costs, budget: bool(np.max(member_costs) < budget),
    ),
    # 05_lagrangian_vs_planning
    "lagrange/next_multiplier": Exercise(
        "With kd = 0, what is the next multiplier given the integral, the violation, ki, kp and "
        "the clip limit?",
        "integral' = clip(integral + ki * violation, 0, limit); "
        "multiplier = clip(kp * violation + integral', 0, limit).",
        _next_multiplier,
    ),
    "planning/elites": Exercise(
        "Which sequences (indices) does the constrained planner keep as elites?",
        "Among sequences with cost <= budget, the `count` of highest return; when fewer than "
        "`count` are within budget, the `count` of least cost.",
        _elites,
    ),
    # 06_offline_safe_rl
    "offline/latent_action": Exercise(
        "The policy outputs u; LSPC squashes it into [-bound, bound]. What latent action is taken?",
        "The squashed action is bound * tanh(u).",
        lambda u, bound: np.asarray(bound * np.tanh(u)),
    ),
    "offline/safe_fraction": Exercise(
        "What fraction of the dataset's transitions are safe (cost == 0)?",
        "Count the zero costs and divide by the number of transitions.",
        lambda costs: float(np.mean(np.asarray(costs) == 0)),
    ),
}


def check(name: str, answer: Any, **data: Any) -> bool:
    """Print whether `answer` to exercise `name` is right (with a hint when not); never raises
    on a wrong answer. `data` is what the exercise is about (see the notebook's cell)."""
    exercise = _exercise(name)
    if answer is Ellipsis:
        if not exercise.right(exercise.reference(**data), data):
            raise LessonError(f"the reference solution of {name!r} fails its own check")
        print(f"[{name}] not answered yet: replace ... with your answer. Hint: {exercise.hint}")
        return False
    if exercise.right(answer, data):
        print(f"[{name}] right!")
        return True
    print(f"[{name}] not yet. Hint: {exercise.hint}")
    return False


def solution(name: str, **data: Any) -> Any:
    """The reference answer to exercise `name` for this data (printed, and returned)."""
    reference = _exercise(name).reference(**data)
    shown = inspect.getsource(reference) if inspect.isfunction(reference) else reference
    print(f"[{name}] {shown}")
    return reference


def _exercise(name: str) -> Exercise:
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")
    return EXERCISES[name]


if __name__ == "__main__":  # python -m workbench.lessons: the notebooks, from their sources
    for path in build_notebooks():
        print("wrote", path.name)
