"""rliable's aggregates (workbench.stats) and compare's use of them, against values computed by
hand from the exact bootstrap distributions of small tables."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tests.test_compare import make_request, make_run, ten_episodes
from workbench import compare, stats


def test_interquartile_mean_drops_the_outer_quarters():
    assert stats.interquartile_mean([1, 2, 3, 100]) == 2.5  # mean of 2 and 3
    assert stats.interquartile_mean([4, 1, 3, 2, 8, 6, 5, 7]) == 4.5  # mean of 3, 4, 5, 6
    assert stats.interquartile_mean([1, 5]) == 3.0  # too few to cut: the mean
    with pytest.raises(ValueError, match="at least one score"):
        stats.interquartile_mean([])


def test_bootstrap_interval_of_two_seeds():
    # Resamples of (0, 10): the mean is 0, 5 or 10 with probabilities 1/4, 1/2, 1/4.
    assert stats.confidence_interval([0, 10]) == (0.0, 10.0)
    # The 30% and 70% quantiles both fall in the middle half: 5.
    assert stats.confidence_interval([0, 10], confidence=0.4) == (5.0, 5.0)
    assert stats.confidence_interval([3, 3, 3]) == (3.0, 3.0)


def test_bootstrap_is_stratified_by_task():
    # Task A's runs (0, 10) are redrawn among themselves, task B's (4, 4) among themselves, so
    # a resample always holds two 4s: IQM 2, 4 or 7 with probabilities 1/4, 1/2, 1/4.
    table = np.array([[0.0, 4.0], [10.0, 4.0]])
    assert stats.confidence_interval(table) == (2.0, 7.0)
    # Unstratified, a resample could be all zeros or all tens: a wider interval.
    pooled = stats.stratified_bootstrap(table.reshape(-1))
    assert np.percentile(pooled, 2.5) < 2.0 and np.percentile(pooled, 97.5) > 7.0


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="confidence must be between 0 and 1, got 1.5"):
        stats.confidence_interval([1, 2], confidence=1.5)
    with pytest.raises(ValueError, match=r"non-empty \(runs x tasks\) table"):
        stats.confidence_interval([])


def test_compare_reports_iqm_and_ci_beside_mean_and_std(tmp_path):
    make_request(tmp_path, ["dreamer", "bsrp-lag"], seeds=[0, 1, 2, 3])
    for seed, final in enumerate([1, 2, 3, 100]):
        make_run(tmp_path, "dreamer", seed, ten_episodes([final] * 10, cost=seed))
    for seed in (0, 1):  # two of four seeds finished
        make_run(tmp_path, "bsrp-lag", seed, ten_episodes([10 * seed] * 10, cost=0))

    summary = compare.summarise(tmp_path)

    dreamer, bsrp = summary["algorithms"]
    assert dreamer["seeds"] == 4 and bsrp["seeds"] == 2
    assert dreamer["final_return_mean"] == 26.5  # the outlier drags the mean ...
    assert dreamer["final_return_iqm"] == 2.5  # ... not the IQM
    # IQM 1 needs three or four draws of 1: probability 13/256 > 2.5%, likewise for 100.
    assert (dreamer["final_return_ci_low"], dreamer["final_return_ci_high"]) == (1.0, 100.0)
    # Cumulative cost per seed: 0, 10, 20, 30 (ten episodes of cost = seed).
    assert dreamer["cumulative_cost_iqm"] == 15.0
    assert (bsrp["final_return_iqm"], bsrp["final_return_ci_low"]) == (5.0, 0.0)
    assert bsrp["final_return_ci_high"] == 10.0

    markdown = (tmp_path / "table.md").read_text()
    assert "| dreamer | 4 | 2.50 [1.00, 100.00] | 1.50 [0.00, 3.00] |" in markdown
    assert "| bsrp-lag | 2 | 5.00 [0.00, 10.00] |" in markdown
    assert "| dreamer | 4 | 26.50 ± 42.44 |" in markdown  # mean ± std kept beside
    with open(tmp_path / "table.csv") as f:
        table = {row["algo"]: row for row in csv.DictReader(f)}
    assert float(table["dreamer"]["final_return_iqm"]) == 2.5
    assert float(table["bsrp-lag"]["final_return_ci_high"]) == 10.0
