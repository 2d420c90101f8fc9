"""Intervals that hold their level (harness/stats.py): exact values, and coverage measured by simulation."""
from math import sqrt

import numpy as np
import pytest

from harness.stats import holm_adjust, mean_metric, newcombe_paired_interval, rate_interval, wilson_interval

MIN_COVERAGE = 0.93  # nominal 0.95; below 0.93 an interval no longer says what it claims


# --- one rate -------------------------------------------------------------------------------------------

def test_wilson_interval_matches_a_hand_computed_case():
    # 5 of 20, z = 1.959964: centre = (0.25 + z²/40) / (1 + z²/20) = 0.2902813,
    # half-width = z / (1 + z²/20) * sqrt(0.25 * 0.75 / 20 + z²/1600) = 0.1784196.
    lo, hi = wilson_interval(5, 20)
    assert lo == pytest.approx(0.1118617, abs=1e-6) and hi == pytest.approx(0.4687009, abs=1e-6)
    # 0 of 10: the upper bound is z² / (n + z²).
    z2 = 1.959964 ** 2
    assert wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2), abs=1e-6))
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2), abs=1e-6), 1.0)
    assert wilson_interval(5, 20, level=0.99)[0] < lo  # a higher level widens it
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_rate_interval_widens_wilson_next_to_the_bounds_only():
    # 1 and 2 of n <= 50 (1-3 for larger n): the lower bound is at most the one-sided Poisson bound lambda_k / n.
    assert rate_interval(1, 10)[0] == pytest.approx(-np.log(0.95) / 10)  # lambda_1 = -ln(0.95) = 0.0513
    assert rate_interval(2, 10)[0] < 0.05 < wilson_interval(2, 10)[0]
    assert rate_interval(8, 10)[1] > 0.95 > wilson_interval(8, 10)[1]
    assert rate_interval(5, 20) == wilson_interval(5, 20)
    assert rate_interval(3, 50) == wilson_interval(3, 50) and rate_interval(3, 51) != wilson_interval(3, 51)


def test_mean_metric_uses_wilson_for_rates_and_the_bootstrap_otherwise():
    rate = mean_metric([True] * 2 + [False] * 22)
    assert rate["interval"] == "wilson" and rate["n"] == 24 and rate["value"] == pytest.approx(2 / 24)
    assert rate["ci95"] == pytest.approx(list(rate_interval(2, 24)))
    none_yet = mean_metric([0.0] * 24)  # the bootstrap gave [0, 0] here: no uncertainty at all
    assert none_yet["ci95"][0] == 0.0 and none_yet["ci95"][1] > 0.1
    assert mean_metric([1] * 24)["ci95"][1] == 1.0 and mean_metric([1] * 24)["ci95"][0] < 0.9
    scores = mean_metric([0.2, 0.4, 0.5, 0.9])
    assert scores["interval"] == "bootstrap" and scores["ci95"][0] <= 0.5 <= scores["ci95"][1]
    assert mean_metric([]) == {"value": None, "ci95": [None, None], "n": 0}


@pytest.mark.parametrize("n", [10, 24, 50, 100])
@pytest.mark.parametrize("p", [0.0, 0.05, 0.2, 0.5])
def test_rate_interval_covers_the_true_rate(n, p):
    """20,000 binomial draws per cell; mean_metric's interval for k successes of n is rate_interval(k, n)."""
    rng = np.random.default_rng(1000 * n + int(100 * p))
    successes = rng.binomial(n, p, size=20_000)
    bounds = np.array([rate_interval(k, n) for k in range(n + 1)])
    lo, hi = bounds[successes, 0], bounds[successes, 1]
    assert np.mean((lo <= p) & (p <= hi)) >= MIN_COVERAGE


# --- a difference of paired rates -----------------------------------------------------------------------

def paired_cells(p_base: float, p_cand: float, correlation: float) -> list[float]:
    """Probabilities of (both 1, only baseline 1, only candidate 1, both 0) for two correlated 0/1 outcomes."""
    both = p_base * p_cand + correlation * sqrt(p_base * (1 - p_base) * p_cand * (1 - p_cand))
    cells = [both, p_base - both, p_cand - both, 1 - p_base - p_cand + both]
    assert min(cells) >= 0, "these marginals cannot have this correlation"
    return cells


def test_newcombe_interval_brackets_the_difference_and_respects_the_bounds():
    lo, hi = newcombe_paired_interval(both=10, only_baseline=2, only_candidate=9, neither=19)
    assert lo < 7 / 40 < hi and 0 < lo  # 9 vs 2 discordant pairs of 40: the candidate rate is higher
    lo, hi = newcombe_paired_interval(0, 0, 0, 24)  # both runs 0/24: no difference seen, but not certainty
    assert lo < 0 < hi and hi > 0.1
    lo, hi = newcombe_paired_interval(0, 30, 0, 0)  # 30/30 -> 0/30
    assert lo == -1.0 and -1 < hi < -0.8
    # Swapping baseline and candidate mirrors the interval.
    lo, hi = newcombe_paired_interval(10, 2, 9, 19)
    assert newcombe_paired_interval(10, 9, 2, 19) == pytest.approx((-hi, -lo))


# (n, baseline rate, candidate rate, correlation of the two outcomes on an item)
PAIRED_SETTINGS = [(10, 0.3, 0.3, 0.0), (24, 0.05, 0.05, 0.5), (24, 0.3, 0.5, 0.3), (24, 0.05, 0.15, 0.3),
                   (32, 0.5, 0.5, 0.0), (50, 0.2, 0.35, 0.3), (50, 0.02, 0.08, 0.0), (72, 0.15, 0.25, 0.6),
                   (100, 0.5, 0.3, 0.6), (24, 0.0, 0.05, 0.0), (50, 0.1, 0.15, 0.7)]


@pytest.mark.parametrize("n, p_base, p_cand, correlation", PAIRED_SETTINGS)
def test_newcombe_interval_covers_the_true_difference(n, p_base, p_cand, correlation):
    rng = np.random.default_rng(n + int(1000 * (p_base + 2 * p_cand + 4 * correlation)))
    tables = rng.multinomial(n, paired_cells(p_base, p_cand, correlation), size=5_000)
    intervals = {table: newcombe_paired_interval(*table) for table in set(map(tuple, tables))}
    truth = p_cand - p_base
    covered = [intervals[table][0] <= truth + 1e-12 and truth - 1e-12 <= intervals[table][1]
               for table in map(tuple, tables)]
    assert np.mean(covered) >= MIN_COVERAGE


# --- several tests at once ------------------------------------------------------------------------------

def test_holm_adjust_textbook_example():
    # Holm's procedure on four hypotheses (the Wikipedia example): sorted 0.005, 0.01, 0.03, 0.04 times
    # 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, made non-decreasing: 0.02, 0.03, 0.06, 0.06. At alpha = 0.05 the
    # hypotheses with p = 0.01 and 0.005 are rejected, those with 0.04 and 0.03 are not.
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_adjust_edge_cases():
    assert holm_adjust([]) == []
    assert holm_adjust([0.02]) == [0.02]  # one test: nothing to correct
    assert holm_adjust([0.5, 0.6, 0.9]) == [1.0, 1.0, 1.0]  # capped at 1
    assert holm_adjust([0.01, 0.01, 0.04]) == pytest.approx([0.03, 0.03, 0.04])  # ties share the larger factor
    p = np.random.default_rng(0).uniform(size=12)
    adjusted = holm_adjust(list(p))
    assert all(a >= q for a, q in zip(adjusted, p))  # never below the raw p
    assert all(a <= min(1.0, 12 * q) for a, q in zip(adjusted, p))  # never above Bonferroni
