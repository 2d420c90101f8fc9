"""Statistics over training seeds: one cell from several runs that differ only in their training seed.

A method's score on a small model can move more between training seeds than between methods, so a cell over k
seeds reports the mean of the per-seed values, the between-seed standard deviation, and a 95% interval for the
mean over training seeds (the population of seeds, not just these k). The interval is the union of:

- the two-level bootstrap percentile interval (resample seeds, then items within each resampled seed), which
  carries the item-level noise of each run;
- the t interval over the k per-seed values (mean +- t(k-1) * sd / sqrt(k)), which carries the between-seed
  variation; with 2-3 seeds the bootstrap alone under-covers badly when seeds disagree (86% at k=3 in
  tests/test_seed_stats.py), because 3 values cannot show their own spread;
- for 0/1 outcomes, the pooled rate interval of all items (harness/stats.py `rate_interval`), so that k runs
  that all scored 0/n get an interval that says how small the rate might still be, not [0, 0].

The simulation in tests/test_seed_stats.py checks coverage of at least 93% over seed counts 2-5, item counts
24-100, rates 0-0.5 and between-seed spreads from none to large. Metrics that are not means of per-item values
(a length-controlled win rate, a judge-corrected rate) have per-seed values only: their interval is the union
of the t interval over seeds and the mean of the runs' own intervals.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

from harness.stats import is_binary, rate_interval

N_BOOTSTRAP = 2000
LEVEL = 0.95


def two_level_bootstrap(groups: Sequence[Sequence[float]], seed: int = 0, n_boot: int = N_BOOTSTRAP) -> np.ndarray:
    """Bootstrap distribution of the mean over groups: each draw resamples the groups, then the items of each."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(g, dtype=float) for g in groups]
    # Per group, n_boot item-level resampled means; a two-level draw takes one of them for each resampled group.
    resampled = np.stack([a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1) for a in arrays])
    chosen_groups = rng.integers(0, len(arrays), size=(n_boot, len(arrays)))
    chosen_draws = rng.integers(0, n_boot, size=(n_boot, len(arrays)))
    return resampled[chosen_groups, chosen_draws].mean(axis=1)


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    data = np.asarray(values, dtype=float)
    k = len(data)
    half = float(scipy_stats.t.ppf(0.5 + LEVEL / 2, k - 1)) * float(data.std(ddof=1)) / math.sqrt(k)
    return float(data.mean()) - half, float(data.mean()) + half


def over_seeds(groups: Sequence[Sequence[float]], seed: int = 0, n_boot: int = N_BOOTSTRAP) -> dict:
    """The cell of a mean-of-items metric over k >= 2 training seeds (`groups`: each seed's per-item values)."""
    groups = [list(map(float, g)) for g in groups if len(g)]
    means = [float(np.mean(g)) for g in groups]
    boots = two_level_bootstrap(groups, seed, n_boot)
    low, high = (float(q) for q in np.percentile(boots, [50 * (1 - LEVEL), 50 * (1 + LEVEL)]))
    t_low, t_high = t_interval(means)
    low, high = min(low, t_low), max(high, t_high)
    everything = [v for g in groups for v in g]
    binary = is_binary(everything)
    if binary:
        pooled = rate_interval(int(sum(everything)), len(everything), LEVEL)
        low, high = max(0.0, min(low, pooled[0])), min(1.0, max(high, pooled[1]))
    return {"value": float(np.mean(means)), "ci95": [low, high], "n": len(everything), "n_seeds": len(groups),
            "sd_between": float(np.std(means, ddof=1)), "interval": "two-level" + ("+wilson" if binary else "")}


def over_seed_values(values: Sequence[float], intervals: Sequence[Sequence[float | None]],
                     n: int) -> dict:
    """The cell of a metric known only per run (its value and interval) over k >= 2 training seeds."""
    data = [float(v) for v in values]
    low, high = t_interval(data)
    known = all(i and None not in i for i in intervals)
    if known:
        low = min(low, float(np.mean([i[0] for i in intervals])))
        high = max(high, float(np.mean([i[1] for i in intervals])))
    if all(0.0 <= x <= 1.0 for x in data + ([x for i in intervals for x in i] if known else [])):
        low, high = max(0.0, low), min(1.0, high)  # a rate (e.g. a corrected prevalence) stays a rate
    return {"value": float(np.mean(data)), "ci95": [low, high], "n": n, "n_seeds": len(data),
            "sd_between": float(np.std(data, ddof=1)), "interval": "t-over-seeds"}
