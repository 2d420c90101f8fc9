"""Intervals over training seeds hold their level: coverage simulated over seed counts, item counts, rates and
between-seed spreads (harness/seed_stats.py), and the cells `harness report` builds from several seeds."""
from __future__ import annotations

import numpy as np
import pytest

from harness.seed_stats import over_seed_values, over_seeds, two_level_bootstrap
from report_helpers import outcomes, safety_items, write_run
from reports.collect import find_runs
from reports.leaderboard import build_leaderboard

SIMULATIONS = 300


def simulated_coverage(k: int, n: int, p: float, spread: float, rng: np.random.Generator,
                       interval=None) -> float:
    """How often the interval for the mean over training seeds covers the true mean p, when each seed's true
    rate is p plus a normal deviation of sd `spread`, and each seed's run is scored on n items."""
    covered = 0
    for draw in range(SIMULATIONS):
        rates = np.clip(p + rng.normal(0.0, spread, k), 0.0, 1.0)
        groups = [(rng.random(n) < rate).astype(float) for rate in rates]
        low, high = (interval or (lambda g: over_seeds(g, seed=draw, n_boot=600)["ci95"]))(groups)
        covered += low - 1e-12 <= p <= high + 1e-12
    return covered / SIMULATIONS


CASES = [(k, n, p, spread) for k in (2, 3, 5)
         for n, p, spread in ((100, 0.3, 0.0), (100, 0.3, 0.05), (100, 0.5, 0.1), (24, 0.05, 0.0), (24, 0.0, 0.0),
                              (30, 0.1, 0.03), (100, 0.3, 0.2))]


@pytest.mark.parametrize("k,n,p,spread", CASES)
def test_the_interval_over_seeds_covers_at_least_93_percent(k, n, p, spread):
    coverage = simulated_coverage(k, n, p, spread, np.random.default_rng(1000 * k + n))
    assert coverage >= 0.93, f"coverage {coverage:.3f} at k={k}, n={n}, p={p}, spread={spread}"


def test_the_two_level_bootstrap_alone_under_covers_when_three_seeds_disagree():
    """Why the cell joins it with the t interval over seeds: 3 values cannot show their own spread."""
    def percentile(groups):
        boots = two_level_bootstrap(groups, seed=0, n_boot=600)
        return tuple(np.percentile(boots, [2.5, 97.5]))

    coverage = simulated_coverage(3, 100, 0.5, 0.1, np.random.default_rng(7), percentile)
    assert coverage < 0.9


def test_continuous_scores_are_covered_too():
    rng = np.random.default_rng(3)
    covered = 0
    for draw in range(SIMULATIONS):
        means = 0.4 + rng.normal(0.0, 0.05, 3)
        groups = [np.clip(rng.normal(m, 0.3, 60), -1, 2) for m in means]
        low, high = over_seeds(groups, seed=draw, n_boot=600)["ci95"]
        covered += low <= 0.4 <= high
    assert covered / SIMULATIONS >= 0.93


def test_a_cell_reports_the_mean_over_seeds_its_spread_and_the_number_of_seeds():
    cell = over_seeds([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]])
    assert cell["value"] == pytest.approx(0.5) and cell["n_seeds"] == 3 and cell["n"] == 12
    assert cell["sd_between"] == pytest.approx(0.25)
    assert 0.0 <= cell["ci95"][0] < 0.5 < cell["ci95"][1] <= 1.0
    zeros = over_seeds([[0] * 24, [0] * 24, [0] * 24])
    assert zeros["ci95"][0] == 0.0 and zeros["ci95"][1] > 0.02  # never the collapsed [0, 0]


def test_metrics_known_only_per_run_stay_in_their_range():
    cell = over_seed_values([0.1, 0.5], [[0.0, 0.3], [0.2, 0.8]], n=48)
    assert cell["value"] == pytest.approx(0.3) and cell["n_seeds"] == 2
    assert cell["ci95"] == [0.0, 1.0]  # the t interval over 2 values is wide; a rate stays within [0, 1]


def test_the_leaderboard_groups_runs_that_differ_only_in_training_seed(tmp_path):
    items = safety_items(30, 10, 10)
    for seed, p in ((0, 0.2), (1, 0.3), (2, 0.4)):
        write_run(tmp_path / f"isara-{seed}", "isara", outcomes(items, p, 0.3, seed), seed=seed)
    write_run(tmp_path / "none-0", "none", outcomes(items, 0.5, 0.1, 9), seed=0)
    board = build_leaderboard(find_runs([tmp_path]))
    isara = next(row for row in board.rows if row.aligner == "isara")
    cell = isara.cells["safety:harmful_rate"]
    assert cell["n_seeds"] == 3 and cell["n"] == 90 and cell["sd_between"] > 0
    per_seed = [r.metrics["harmful_rate"]["value"] for r in isara.runs]
    assert cell["value"] == pytest.approx(sum(per_seed) / 3)
    none = next(row for row in board.rows if row.aligner == "none")
    assert none.cells["safety:harmful_rate"]["n_seeds"] == 1
    assert any("training seeds" in note for note in board.notes)
