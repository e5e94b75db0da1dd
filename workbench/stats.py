"""Aggregate statistics over seeds, as rliable recommends (Agarwal et al. 2021, "Deep RL at the
Edge of the Statistical Precipice"): the interquartile mean and stratified bootstrap confidence
intervals, computed with numpy and scipy alone.

- Interquartile mean (IQM): the mean of the middle 50% of the scores (`scipy.stats.trim_mean`
  with 25% cut from each end, over all runs of all tasks together). With fewer than 4 scores
  nothing is cut and it is the plain mean.
- Stratified bootstrap: each resample draws, for every task (stratum) on its own, as many runs
  as it has, with replacement; the statistic of each resample makes the bootstrap distribution.
- Percentile confidence interval: its (1 - c)/2 and (1 + c)/2 quantiles, for confidence c.

A comparison in this workbench has one task, so its strata are one column; the functions take a
(runs x tasks) table so the same code serves several tasks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

CONFIDENCE = 0.95
REPETITIONS = 2000
SEED = 0
"""Bootstrap defaults: a fixed seed, so a comparison's table is the same every time."""


def interquartile_mean(scores: ArrayLike) -> float:
    """The mean of the middle 50% of all scores (every run of every task together)."""
    values = np.asarray(scores, dtype=float).ravel()
    if not values.size:
        raise ValueError("the interquartile mean needs at least one score")
    return float(stats.trim_mean(values, proportiontocut=0.25))


def stratified_bootstrap(
    scores: ArrayLike,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    repetitions: int = REPETITIONS,
    seed: int = SEED,
) -> np.ndarray:
    """The bootstrap distribution of `statistic` (default: the IQM) over resamples of a
    (runs x tasks) table that redraw each task's runs with replacement, task by task.
    `statistic` maps a (repetitions x scores) array to one value per row."""
    table = _as_table(scores)
    runs, tasks = table.shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, runs, size=(repetitions, runs, tasks))
    resampled = table[rows, np.arange(tasks)].reshape(repetitions, runs * tasks)
    if statistic is None:
        return stats.trim_mean(resampled, proportiontocut=0.25, axis=1)
    return np.asarray(statistic(resampled), dtype=float)


def confidence_interval(
    scores: ArrayLike,
    confidence: float = CONFIDENCE,
    repetitions: int = REPETITIONS,
    seed: int = SEED,
) -> tuple[float, float]:
    """The stratified bootstrap percentile interval of the IQM."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    distribution = stratified_bootstrap(scores, repetitions=repetitions, seed=seed)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(distribution, [tail, 100 - tail])
    return float(low), float(high)


def _as_table(scores: ArrayLike) -> np.ndarray:
    """Scores as (runs x tasks); a flat list is one task's runs."""
    table = np.asarray(scores, dtype=float)
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError(
            f"scores must be a non-empty (runs x tasks) table, got shape {table.shape}"
        )
    return table
