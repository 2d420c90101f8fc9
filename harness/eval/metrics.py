"""MetricSpecs: what a benchmark measures, declared once, read by the loop, the reports and `harness compare`.

A metric aggregates one per-sample score (a record's `scores[score]`) over the records that match `where`
(record field -> accepted values). `group_by` adds one metric per value of a record field, named
`<name>/<value>`. A score of None is a verdict the judge's output could not be parsed for: it is left out
of the aggregate and counted in `unparsed`. Aggregations:

- `mean`: the mean with n and a 95% interval (`harness.stats.mean_metric`);
- `win_rate`: AlpacaEval's win rate, the mean with +-1.96 standard errors;
- `custom`: computed by the benchmark's `summary` (e.g. the length-controlled win rate); the spec still
  names it, its direction and its judge, and says it cannot be paired item by item.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from harness.errors import HarnessError
from harness.stats import mean_metric
from harness.winrate import normal_ci, win_rate

AGGREGATIONS = ("mean", "win_rate", "custom")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    score: str  # the per-sample score aggregated (a key of each record's "scores")
    label: str = ""  # the column title in tables; the name when empty
    higher_is_better: bool = True
    aggregation: str = "mean"
    where: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    group_by: str | None = None
    groups: tuple[str, ...] | None = None  # the groups reported, in this order (default: every value, sorted)
    judge_role: str | None = None  # the judge role that produced the score (None: no judge)
    headline: bool = True  # a column of the run's summary table and of the leaderboard
    percent: bool = True  # a rate or probability in [0, 1], printed in percent

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise HarnessError(f"metric {self.name}: unknown aggregation {self.aggregation!r}; "
                               f"known: {', '.join(AGGREGATIONS)}")
        if "/" in self.name:
            raise HarnessError(f"metric {self.name}: '/' is reserved for per-group metrics (use group_by)")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ")

    @property
    def pairable(self) -> bool:
        """Whether the metric is a mean of per-item values, so two runs can be compared item by item."""
        return self.aggregation in ("mean", "win_rate")

    def matches(self, record: Mapping[str, Any], group: str | None = None) -> bool:
        if any(record.get(key) not in accepted for key, accepted in self.where.items()):
            return False
        return group is None or str(record.get(self.group_by)) == group

    def values(self, records: Iterable[Mapping[str, Any]], group: str | None = None) -> list[Any]:
        """The score of every matching record (None where the judge's output was unparsed)."""
        return [(record.get("scores") or {}).get(self.score) for record in records if self.matches(record, group)]

    def item_values(self, records: Iterable[Mapping[str, Any]], group: str | None = None) -> dict[str, float]:
        """item id -> score, for the matching records with a numeric score (for paired comparisons)."""
        chosen = {}
        for record in records:
            value = (record.get("scores") or {}).get(self.score)
            if self.matches(record, group) and isinstance(value, (bool, int, float)) and "id" in record:
                chosen[str(record["id"])] = float(value)
        return chosen

    def group_values(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        if self.group_by is None:
            return []
        present = {str(r.get(self.group_by)) for r in records if self.matches(r) and r.get(self.group_by) is not None}
        return [g for g in self.groups if g in present] if self.groups is not None else sorted(present)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["where"] = {k: list(v) for k, v in self.where.items()}
        data["groups"] = list(self.groups) if self.groups is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MetricSpec":
        known = {f for f in cls.__dataclass_fields__}
        given = {k: v for k, v in data.items() if k in known}
        if not isinstance(given.get("name"), str) or not isinstance(given.get("score"), str):
            raise ValueError("a MetricSpec needs a name and a score (strings)")
        given["where"] = {k: tuple(v) for k, v in (given.get("where") or {}).items()}
        if given.get("groups") is not None:
            given["groups"] = tuple(given["groups"])
        return cls(**given)


def spec_for(specs: Sequence[MetricSpec], metric: str) -> tuple[MetricSpec, str | None] | None:
    """The spec behind a metric name (`name` or `name/group`) and its group, or None."""
    base, _, group = metric.partition("/")
    for spec in specs:
        if spec.name == base and (not group or spec.group_by is not None):
            return spec, group or None
    return None


def mean_aggregate(values: Sequence[float], seed: int) -> dict[str, Any]:
    return mean_metric([float(v) for v in values], seed)


def win_rate_aggregate(values: Sequence[float], seed: int) -> dict[str, Any]:
    if not values:
        return {"value": None, "ci95": [None, None], "n": 0}
    result = win_rate(values)
    error = None if math.isnan(result.standard_error) else result.standard_error  # one item: undefined
    return {"value": result.win_rate, "ci95": normal_ci(result.win_rate, result.standard_error),
            "n": result.n_total, "standard_error": error, "n_wins": result.n_wins,
            "n_losses": result.n_losses, "n_draws": result.n_draws}


AGGREGATORS: dict[str, Callable[[Sequence[float], int], dict[str, Any]]] = {
    "mean": mean_aggregate, "win_rate": win_rate_aggregate}


def aggregate(spec: MetricSpec, values: Sequence[Any], seed: int) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    result = AGGREGATORS[spec.aggregation](present, seed)
    if spec.judge_role is not None:
        result["unparsed"] = len(values) - len(present)
    return result


def compute_metrics(specs: Sequence[MetricSpec], records: Sequence[Mapping[str, Any]],
                    seed: int) -> dict[str, dict[str, Any]]:
    """Every non-custom metric, then each one's per-group variants, in declaration order."""
    metrics: dict[str, dict[str, Any]] = {}
    computed = [spec for spec in specs if spec.aggregation != "custom"]
    for spec in computed:
        metrics[spec.name] = aggregate(spec, spec.values(records), seed)
    for spec in computed:
        for group in spec.group_values(records):
            metrics[f"{spec.name}/{group}"] = aggregate(spec, spec.values(records, group), seed)
    return metrics


def specs_from_document(document: Mapping[str, Any]) -> list[MetricSpec]:
    """The MetricSpecs a run recorded in metrics.json (or a pinned baseline); [] when it has none."""
    return [MetricSpec.from_dict(s) for s in document.get("metric_specs") or []]
