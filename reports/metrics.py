"""What the reports know about metrics: read from the MetricSpecs each run recorded (metrics.json
`metric_specs`), never guessed from names: which metrics are headline columns, their labels, and which way
is better.
"""
from __future__ import annotations

from typing import Any, Iterable

from harness.eval.metrics import MetricSpec, spec_for


def specs_of(runs: Iterable[Any]) -> list[MetricSpec]:
    """The metrics the runs declare, in declaration order (the first declaration of a name wins)."""
    specs: dict[str, MetricSpec] = {}
    for run in runs:
        for spec in run.specs:
            specs.setdefault(spec.name, spec)
    return list(specs.values())


def headline(runs: Iterable[Any]) -> list[MetricSpec]:
    """The headline metrics of runs of one benchmark: their columns in tables."""
    return [spec for spec in specs_of(runs) if spec.headline]


def primary_metric(runs: Iterable[Any]) -> str | None:
    """The first headline metric: the one plots use for 'score'."""
    columns = headline(runs)
    return columns[0].name if columns else None


def lower_is_better(runs: Iterable[Any], metric: str) -> bool:
    """The metric's declared direction (a per-group metric takes its base metric's); False when undeclared."""
    found = spec_for(specs_of(runs), metric)
    return bool(found) and not found[0].higher_is_better


def is_fraction(values: Iterable[float | None]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(0.0 <= v <= 1.0 for v in present)


def format_number(value: float | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}" if percent else f"{value:.3g}"


def format_metric(metric: dict[str, Any] | None, percent: bool) -> str:
    """`value [lo, hi]` (in % when the column holds fractions); 'n/a' for a missing value."""
    if not metric or metric.get("value") is None:
        return "n/a"
    lo, hi = metric.get("ci95") or (None, None)
    unit = "%" if percent else ""
    seeds = ""
    if (metric.get("n_seeds") or 1) > 1:  # a mean over training seeds (harness/seed_stats.py)
        seeds = f" ({metric['n_seeds']} seeds, sd {format_number(metric.get('sd_between'), percent)})"
    if lo is None or hi is None:
        return f"{format_number(metric['value'], percent)}{unit}{seeds}"
    return (f"{format_number(metric['value'], percent)}{unit} [{format_number(lo, percent)}, "
            f"{format_number(hi, percent)}]{seeds}")
