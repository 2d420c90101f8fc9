"""`harness compare BASELINE CANDIDATE`: per-metric paired differences on the items both runs evaluated.

Each difference (candidate - baseline) comes with a 95% CI (Newcombe's paired score interval for binary
outcomes, the paired bootstrap otherwise), a p-value (McNemar's exact test for binary outcomes, a sign-flip
permutation test otherwise) and a verdict at level alpha: better, worse, or no significant difference, by the
metric's direction. Runs of different benchmarks, data versions, judges or evaluation items are refused: their
numbers do not measure the same thing.

The regression gate tests several metrics at once, so it uses Holm-adjusted p-values over the gated metrics:
the chance that it flags any gated metric on which the two runs' methods do not truly differ is at most alpha.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.stats import holm_adjust, mean_metric, paired_difference
from reports.collect import RunRecord
from harness.eval.metrics import MetricSpec, spec_for
from reports.metrics import format_metric, format_number, is_fraction
from reports.seeds import seed_differences

BETTER, WORSE, SAME = "better", "worse", "no significant difference"
TOLERANCE = 1e-6  # the per-item mean must reproduce the reported value to this


@dataclass
class MetricComparison:
    metric: str
    baseline: dict[str, Any]
    candidate: dict[str, Any]
    difference: float | None
    ci95: list[float | None]
    p_value: float | None
    test: str | None
    n_paired: int
    lower_is_better: bool
    verdict: str  # from the raw p-value at alpha: this metric on its own
    interval: str | None = None  # "newcombe" or "bootstrap"
    gated: bool = False  # one of the metrics the regression gate tests
    p_holm: float | None = None  # Holm-adjusted p-value over the gated metrics (None when not gated)

    @property
    def worsening(self) -> float:
        """How much worse the candidate is, in the metric's units (negative when it is better)."""
        if self.difference is None:
            return 0.0
        return self.difference if self.lower_is_better else -self.difference


@dataclass
class Comparison:
    baseline: RunRecord
    candidate: RunRecord
    shared_items: int
    alpha: float
    metrics: list[MetricComparison] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    gate_chosen: bool = False  # the gated metrics were named (--metrics) rather than the top-level default

    @property
    def gated(self) -> list[str]:
        return [m.metric for m in self.metrics if m.gated]

    def regressions(self, threshold: float = 0.0) -> list[MetricComparison]:
        """Gated metrics worse by more than `threshold` with a Holm-adjusted p-value below alpha."""
        return regressions(self.metrics, self.alpha, threshold)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": str(self.baseline.path), "candidate": str(self.candidate.path),
                "benchmark": self.baseline.benchmark, "shared_items": self.shared_items, "alpha": self.alpha,
                "gate": {"metrics": self.gated, "correction": "holm", "controls": "family-wise error rate",
                         "alpha": self.alpha},
                "metrics": [vars(m) for m in self.metrics], "skipped": self.skipped}


def default_gate(metric: str) -> bool:
    """Without --metrics the top-level metrics gate: per-category variants are smaller subsets of them, and many."""
    return "/" not in metric


def apply_holm(metrics: Sequence[MetricComparison], gated: Sequence[str]) -> None:
    """Marks the metrics named in `gated` and sets their Holm-adjusted p-values, adjusting over those of them
    that have a p-value (a metric without paired items has no test and cannot regress)."""
    names = set(gated)
    for m in metrics:
        m.gated, m.p_holm = m.metric in names, None
    tested = [m for m in metrics if m.gated and m.p_value is not None]
    for m, adjusted in zip(tested, holm_adjust([m.p_value for m in tested])):
        m.p_holm = adjusted


def regressions(metrics: Sequence[MetricComparison], alpha: float, threshold: float = 0.0) -> list[MetricComparison]:
    """The gate: gated metrics whose Holm-adjusted p is below alpha, that are worse, by more than `threshold`.
    Holm keeps the chance of flagging any gated metric that does not truly differ at or below alpha."""
    return [m for m in metrics if m.gated and m.p_holm is not None and m.p_holm < alpha
            and m.worsening > max(threshold, 0.0)]


def item_ids(run: RunRecord) -> list[str]:
    records = run.records()
    if not records:
        raise HarnessError(f"{run.path} has no per-item outcomes (samples/eval.jsonl); rerun it to completion")
    if any("id" not in r for r in records):
        raise HarnessError(f"{run.path}: per-item records without an 'id'; cannot pair items")
    return [str(r["id"]) for r in records]


def datasets(run: RunRecord) -> str:
    return ", ".join(sorted(s.get("dataset", "?") for s in run.manifest.get("data_sources") or []))


def check_comparable(baseline: RunRecord, candidate: RunRecord) -> int:
    """Refuses runs whose numbers do not measure the same thing; returns the number of shared items."""
    def refuse(reason: str, fix: str) -> HarnessError:
        return HarnessError(f"cannot compare {baseline.path} with {candidate.path}: {reason}; {fix}")

    if baseline.benchmark != candidate.benchmark:
        raise refuse(f"different benchmarks ({baseline.benchmark} vs {candidate.benchmark})",
                     "compare runs of the same benchmark")
    if baseline.data_version != candidate.data_version:
        raise refuse(f"different data versions ({baseline.data_version}: {datasets(baseline)} vs "
                     f"{candidate.data_version}: {datasets(candidate)})",
                     "evaluate both on the same data (same HARNESS_DATA_DIR mirror or pinned revision)")
    if baseline.judge != candidate.judge:
        raise refuse(f"different judges ({baseline.judge} vs {candidate.judge})", "judge both runs with the same --judge")
    ids_a, ids_b = set(item_ids(baseline)), set(item_ids(candidate))
    if ids_a != ids_b:
        raise refuse(f"different evaluation items ({len(ids_a)} vs {len(ids_b)}, {len(ids_a & ids_b)} shared)",
                     f"run the candidate with the baseline's --preset {baseline.preset}, --seed {baseline.seed}"
                     + (f" and --limit {baseline.limit}" if baseline.limit is not None else " and no --limit"))
    if baseline.eval_items_hash and candidate.eval_items_hash and baseline.eval_items_hash != candidate.eval_items_hash:
        raise refuse("the same item ids hold different prompts", "evaluate both on the same data version")
    return len(ids_a)


def verdict(difference: float | None, p_value: float | None, lower: bool, alpha: float) -> str:
    if difference is None or p_value is None or p_value >= alpha or difference == 0:
        return SAME
    return BETTER if (difference < 0) == lower else WORSE


def compare_outcomes(metric: str, baseline: Sequence[float], candidate: Sequence[float], lower: bool,
                     alpha: float = 0.05, seed: int = 0, baseline_summary: dict[str, Any] | None = None,
                     candidate_summary: dict[str, Any] | None = None) -> MetricComparison:
    """One metric's paired comparison from its per-item outcomes (the same items, in the same order).
    The summaries are the metric as each run reported it; by default they are computed from the outcomes."""
    result = paired_difference(baseline, candidate, seed)
    return MetricComparison(
        metric, baseline_summary or mean_metric(baseline, seed), candidate_summary or mean_metric(candidate, seed),
        result["difference"], result["ci95"], result["p_value"], result["test"], result["n"], lower,
        verdict(result["difference"], result["p_value"], lower, alpha), result["interval"])


def outcomes(spec: MetricSpec, group: str | None, run: RunRecord, metric: str) -> dict[str, float] | None:
    """item id -> the per-item score behind `metric` (its MetricSpec), or None when the samples do not
    reproduce the value and n the run reported (a damaged or inconsistent run must not pass a gate)."""
    values = spec.item_values(run.records(), group)
    reported = run.metrics[metric]
    if not values or reported.get("value") is None:
        return None
    if reported.get("n") is not None and int(reported["n"]) != len(values):
        return None
    if abs(sum(values.values()) / len(values) - float(reported["value"])) > TOLERANCE:
        return None
    return values


def compare_runs(baseline: RunRecord, candidate: RunRecord, alpha: float = 0.05,
                 names: list[str] | None = None, seed: int = 0) -> Comparison:
    """Compares every metric both runs have (or `names`); the gate covers `names`, or else the top-level ones."""
    shared = check_comparable(baseline, candidate)
    comparison = Comparison(baseline, candidate, shared, alpha, gate_chosen=bool(names))
    wanted = names or [m for m in baseline.metrics if m in candidate.metrics]
    for metric in wanted:
        if metric not in baseline.metrics or metric not in candidate.metrics:
            raise HarnessError(f"metric {metric!r} is not in both runs; they have: {', '.join(baseline.metrics)}")
        found, other = spec_for(baseline.specs, metric), spec_for(candidate.specs, metric)
        if not found or found != other or not found[0].pairable:
            comparison.skipped[metric] = "not a mean of per-item outcomes that the samples reproduce; no paired test"
            continue
        spec, group = found
        a = outcomes(spec, group, baseline, metric)
        b = outcomes(spec, group, candidate, metric)
        if a is None or b is None:
            comparison.skipped[metric] = "not a mean of per-item outcomes that the samples reproduce; no paired test"
            continue
        paired = sorted(set(a) & set(b))
        comparison.metrics.append(compare_outcomes(
            metric, [a[i] for i in paired], [b[i] for i in paired], not spec.higher_is_better, alpha, seed,
            baseline.metrics[metric], candidate.metrics[metric]))
    if names and comparison.skipped:  # a metric asked for by name must not pass a gate by being skipped
        raise HarnessError(f"--metrics {', '.join(comparison.skipped)}: not a mean of per-item outcomes that the "
                           "samples reproduce, so no paired test is possible; choose other metrics")
    if not comparison.metrics:
        raise HarnessError(f"no metric of {baseline.path} could be paired item by item: "
                           f"{'; '.join(f'{k}: {v}' for k, v in comparison.skipped.items())}")
    apply_holm(comparison.metrics, names or [m.metric for m in comparison.metrics if default_gate(m.metric)])
    return comparison


def format_p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def format_comparison(comparison: Comparison) -> str:
    base, cand = comparison.baseline, comparison.candidate
    lines = [f"baseline:  {base.path}  ({base.aligner}, {base.model})",
             f"candidate: {cand.path}  ({cand.aligner}, {cand.model})",
             f"benchmark {base.benchmark}: {comparison.shared_items} shared items; alpha = {comparison.alpha}", ""]
    header = ["metric", "baseline", "candidate", "difference [95% CI]", "p", "p (Holm)", "test", "n", "verdict"]
    table = [header]
    for m in comparison.metrics:
        percent = is_fraction([m.baseline.get("value"), m.candidate.get("value")])
        unit = " pts" if percent else ""
        lo, hi = m.ci95
        diff = (f"{format_number(m.difference, percent)}{unit} [{format_number(lo, percent)}, "
                f"{format_number(hi, percent)}]") if m.difference is not None else "n/a"
        arrow = "↓" if m.lower_is_better else "↑"
        table.append([f"{m.metric} {arrow}", format_metric(m.baseline, percent), format_metric(m.candidate, percent),
                      diff, format_p(m.p_value), format_p(m.p_holm) if m.gated else "-", m.test or "",
                      str(m.n_paired), m.verdict])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    gated = comparison.gated
    if gated:
        chosen = "named by --metrics" if comparison.gate_chosen else "the top-level metrics"
        lines.append(f"gate: {', '.join(gated)} ({chosen}); Holm's step-down over these {len(gated)} controls "
                     f"the family-wise error rate at alpha = {comparison.alpha}")
    else:
        lines.append("gate: no top-level metric to gate on (choose some with --metrics)")
    for metric, reason in comparison.skipped.items():
        lines.append(f"(skipped {metric}: {reason})")
    for m in comparison.metrics:
        per_seed = seed_differences(base, cand, m.metric)
        if per_seed and m.gated:
            percent = is_fraction([m.baseline.get("value"), m.candidate.get("value")])
            listed = ", ".join(f"seed {s}: {'+' if d >= 0 else ''}{format_number(d, percent)}" for s, d in per_seed.items())
            lines.append(f"{m.metric} per training seed (candidate - baseline): {listed}")
    return "\n".join(lines)
