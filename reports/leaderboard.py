"""A leaderboard from any set of runs: rows = (model, aligner), columns = the benchmarks' headline metrics.

Runs are comparable within a benchmark when they share the preset's evaluation size, the `--limit`, the
data version and the judge. The most common such setting of each benchmark (among runs without --limit,
if any) is its reference; a run that differs goes to a row of its own, flagged as not comparable and left
out of the rankings, never mixed in.
Several seeds of one row are averaged (see `combine`).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from harness.judges.bar import PAIRWISE_BAR, pairwise_standing
from harness.eval.metrics import spec_for
from harness.seed_stats import over_seed_values, over_seeds
from reports.collect import RunRecord
from reports.metrics import headline

# Benchmarks in this order first, any others after them alphabetically.
BENCHMARK_ORDER = ("safety", "truthfulqa", "alpacaeval", "utility")
# A column of a rate corrected for its judge's errors (harness/prevalence.py) is keyed "<metric>@corrected".
CORRECTED = "@corrected"


def metric_of(run: RunRecord, metric: str) -> dict[str, Any] | None:
    """A run's metric by column metric name (a judge-corrected rate lives inside its raw metric)."""
    if metric.endswith(CORRECTED):
        return (run.metrics.get(metric.removesuffix(CORRECTED)) or {}).get("corrected")
    return run.metrics.get(metric)


@dataclass(frozen=True)
class Column:
    benchmark: str
    metric: str
    label: str
    lower_is_better: bool
    ranked: bool = True  # False: shown, but not counted in mean rank / win rate

    @property
    def key(self) -> str:
        return f"{self.benchmark}:{self.metric}"


@dataclass
class Row:
    model: str
    aligner: str
    variant: str  # settings that differ from the preset (a different method configuration)
    setting: str  # how its evaluation differs from the reference ('' = comparable)
    runs: list[RunRecord] = field(default_factory=list)
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    mean_rank: float | None = None
    mean_win_rate: float | None = None

    @property
    def name(self) -> str:
        return f"{self.aligner} ({self.variant})" if self.variant else self.aligner

    @property
    def comparable(self) -> bool:
        return not self.setting

    @property
    def cost(self) -> dict[str, float | int | None]:
        """The runs' own cost plus, once each, the alignments of the artifacts they evaluated (an artifact
        evaluated on three benchmarks was trained once)."""
        artifacts = {link["key"]: link.get("cost") or {} for r in self.runs if (link := r.artifact_link)}
        walls = [r.wall_s for r in self.runs if r.wall_s is not None]
        walls += [c["wall_s"] for c in artifacts.values() if c.get("wall_s") is not None]
        return {"wall_s": round(sum(walls), 1) if walls else None,
                "tokens_generated": sum(r.tokens_generated for r in self.runs)
                + sum(c.get("tokens_generated", 0) for c in artifacts.values()),
                "tokens_trained": sum(r.tokens_trained for r in self.runs)
                + sum(c.get("tokens_trained", 0) for c in artifacts.values()),
                "runs": len(self.runs), "alignments": len(artifacts) + sum(not r.artifact_link for r in self.runs),
                "cache_hits": sum(r.cache_hits for r in self.runs)}


CACHE_NOTE = ("wall time marked *: some of the run's generations or judgements were served from the shared "
              "cache (e.g. computed by an earlier run with the same model, prompts and sampling), so it leaves "
              "their time out; token counts include them either way")


@dataclass
class Leaderboard:
    columns: list[Column]
    rows: list[Row]
    reference: dict[str, dict[str, Any]]
    notes: list[str]


def comparability_key(run: RunRecord) -> dict[str, Any]:
    return {"preset": run.preset, "limit": run.limit, "data": run.data_version, "judge": run.judge}


def choose_reference(runs: list[RunRecord]) -> dict[str, Any]:
    """The most common setting among runs without --limit (quick looks never set the standard), or among all
    runs when every one was limited."""
    full = [r for r in runs if r.limit is None] or runs
    counts = Counter(tuple(comparability_key(r).items()) for r in full)
    return dict(max(counts, key=lambda key: (counts[key], str(key))))


def describe_difference(key: dict[str, Any], reference: dict[str, Any]) -> str:
    reasons = []
    if key["limit"] != reference["limit"]:
        reasons.append(f"--limit {key['limit']}" if key["limit"] is not None else "no --limit")
    if key["preset"] != reference["preset"]:
        reasons.append(f"preset {key['preset']} (reference: {reference['preset']})")
    if key["data"] != reference["data"]:
        reasons.append(f"data version {key['data']} (reference: {reference['data']})")
    if key["judge"] != reference["judge"]:
        reasons.append(f"judge {key['judge']} (reference: {reference['judge']})")
    return "; ".join(reasons)


def combine(runs: list[RunRecord], metric: str) -> dict[str, Any] | None:
    """One cell from runs that differ only in their training seed (harness/seed_stats.py): the mean over seeds,
    its 95% interval over seeds, n_seeds and the between-seed standard deviation; one run: its own metric."""
    present = [(run, found) for run in runs if (found := metric_of(run, metric)) and found.get("value") is not None]
    if not present:
        return None
    if len(present) == 1:
        return {**present[0][1], "n_seeds": 1}
    per_item = [item_outcomes(run, metric) for run, _ in present]
    if all(per_item):
        return over_seeds([list(values.values()) for values in per_item])
    return over_seed_values([m["value"] for _, m in present], [m.get("ci95") or [None, None] for _, m in present],
                            sum(int(m.get("n") or 0) for _, m in present))


def cell_of(runs: list[RunRecord], metric: str) -> dict[str, Any]:
    """`combine`, with an empty cell (value None) where no run has the metric."""
    return combine(runs, metric) or {"value": None, "ci95": [None, None], "n": 0}


def item_outcomes(run: RunRecord, metric: str) -> dict[str, float] | None:
    """The per-item values behind a run's metric, when it is a mean of them that the samples reproduce."""
    from reports.compare import outcomes

    if metric.endswith(CORRECTED):
        return None
    found = spec_for(run.specs, metric)
    if found is None or not found[0].pairable or metric not in run.metrics:
        return None
    return outcomes(found[0], found[1], run, metric)


SEEDS_NOTE = ("cells over several training seeds: the mean over seeds [95% interval for the mean over training "
              "seeds: two-level bootstrap (seeds, then items) joined with the t interval over seeds], the number of "
              "seeds and the between-seed standard deviation (sd); see docs/studies.md")


def ordered_benchmarks(names: set[str]) -> list[str]:
    known = [b for b in BENCHMARK_ORDER if b in names]
    return known + sorted(names - set(known))


def build_columns(runs: list[RunRecord]) -> list[Column]:
    columns = []
    for benchmark in ordered_benchmarks({r.benchmark for r in runs}):
        of_benchmark = [r for r in runs if r.benchmark == benchmark]
        for spec in headline(of_benchmark):
            if any((r.metrics.get(spec.name) or {}).get("value") is not None for r in of_benchmark):
                trusted = spec.judge_role != "pairwise" or not judges_below_bar(of_benchmark, spec.name)
                columns.append(Column(benchmark, spec.name, spec.title if trusted else f"{spec.title} ({BELOW_BAR})",
                                      not spec.higher_is_better, ranked=trusted))
            if any(metric_of(r, spec.name + CORRECTED) for r in of_benchmark):
                columns.append(Column(benchmark, spec.name + CORRECTED, f"{spec.title}, judge-corrected",
                                      not spec.higher_is_better, ranked=False))  # the same rate once more
    return columns


BELOW_BAR = "judge below validation bar"


def judges_below_bar(runs: list[RunRecord], metric: str) -> list[str]:
    """The pairwise judges behind `metric` in these runs that have not shown PAIRWISE_BAR agreement with
    human preferences (harness/judges/bar.py), described for a note."""
    below = {}
    for run in runs:
        judge = run.judge_for("pairwise", metric)
        if judge is None or (run.metrics.get(metric) or {}).get("value") is None:
            continue
        standing = pairwise_standing(judge["name"], judge.get("version"))
        if standing is None:
            below[judge["name"]] = f"{judge['name']} has no validation record for its version {judge.get('version')}"
        elif not standing["meets_bar"]:
            low, high = standing["ci95"]
            below[judge["name"]] = (f"{judge['name']} agrees with human preferences on {standing['set']} "
                                    f"{100 * standing['agreement']:.1f}% [{100 * low:.1f}, {100 * high:.1f}] of "
                                    f"{standing['n_pairs']} pairs, below the {100 * PAIRWISE_BAR:.0f}% bar")
    return sorted(below.values())


def below_bar_notes(runs: list[RunRecord], columns: list[Column]) -> list[str]:
    notes = []
    for column in columns:
        if column.label.endswith(f"({BELOW_BAR})"):
            reasons = judges_below_bar([r for r in runs if r.benchmark == column.benchmark], column.metric)
            notes.append(f"{column.benchmark}: {column.label}: {'; '.join(reasons)}; these win rates carry no "
                         "reliable information and are left out of the rankings")
    return notes


def corrected_notes(runs: list[RunRecord], columns: list[Column]) -> list[str]:
    """What each judge-corrected column rests on: the judge head, its validation set and error rates."""
    notes = []
    for column in columns:
        if not column.metric.endswith(CORRECTED):
            continue
        bases = sorted({(c["judge"], c["head"], c["labels"], c["sensitivity"], c["specificity"])
                        for r in runs if r.benchmark == column.benchmark
                        for c in [metric_of(r, column.metric)] if c})
        described = "; ".join(f"{judge}'s {head} head on {labels}: sensitivity {se:.3f}, specificity {sp:.3f}"
                              for judge, head, labels, se, sp in bases)
        notes.append(f"{column.benchmark}: {column.label}: Rogan-Gladen correction for judge error ({described}); "
                     "it assumes those error rates hold for these responses (docs/judges.md)")
    return notes


def deduplicate(runs: list[RunRecord], notes: list[str]) -> list[RunRecord]:
    unique: dict[tuple[str, str], RunRecord] = {}
    for run in runs:
        key = (run.config_hash, run.data_version)
        if key in unique:
            notes.append(f"{run.path} repeats the configuration of {unique[key].path}; only the latter is shown")
        else:
            unique[key] = run
    return list(unique.values())


def rank(rows: list[Row], columns: list[Column]) -> None:
    """Mean rank and mean win rate of each comparable row: per metric, averaged within each benchmark, then
    across benchmarks (every benchmark weighs the same however many headline metrics it has)."""
    per_row: dict[int, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    comparable = [row for row in rows if row.comparable]
    for column in columns:
        if not column.ranked:
            continue
        entries = [(i, row.cells[column.key]["value"]) for i, row in enumerate(comparable)
                   if (row.cells.get(column.key) or {}).get("value") is not None]
        if len(entries) < 2:
            continue
        for i, value in entries:
            others = [v for j, v in entries if j != i]
            better = sum(1 for v in others if (v < value if column.lower_is_better else v > value))
            ties = sum(1 for v in others if v == value)
            per_row[i][column.benchmark].append((1 + better + ties / 2, (len(others) - better - ties / 2) / len(others)))
    for i, row in enumerate(comparable):
        benchmarks = per_row.get(i)
        if not benchmarks:
            continue
        means = [(sum(r for r, _ in v) / len(v), sum(w for _, w in v) / len(v)) for v in benchmarks.values()]
        row.mean_rank = sum(r for r, _ in means) / len(means)
        row.mean_win_rate = sum(w for _, w in means) / len(means)


def build_leaderboard(runs: list[RunRecord]) -> Leaderboard:
    notes: list[str] = []
    runs = deduplicate(runs, notes)
    reference = {b: choose_reference([r for r in runs if r.benchmark == b])
                 for b in sorted({r.benchmark for r in runs})}
    rows: dict[tuple[str, str, str, str], Row] = {}
    for run in runs:
        setting = describe_difference(comparability_key(run), reference[run.benchmark])
        key = (run.model, run.aligner, run.variant, setting)
        rows.setdefault(key, Row(*key)).runs.append(run)
    columns = build_columns(runs)
    for row in rows.values():
        for column in columns:
            cell = combine([r for r in row.runs if r.benchmark == column.benchmark], column.metric)
            if cell is not None:
                row.cells[column.key] = cell
    ordered = list(rows.values())
    rank(ordered, columns)
    ordered.sort(key=lambda r: (not r.comparable, r.mean_win_rate is None, -(r.mean_win_rate or 0), r.model, r.name))
    for benchmark, key in sorted(reference.items()):
        if key["limit"] is not None:
            notes.append(f"every {benchmark} run was made with --limit {key['limit']}: quick-look numbers, "
                         "not the benchmark's full evaluation")
    flagged = [row for row in ordered if not row.comparable]
    if flagged:
        notes.append(f"{len(flagged)} row(s) not comparable with the reference setting of their benchmark; "
                     "they are shown apart and left out of the rankings")
    if any(row.cost["cache_hits"] for row in ordered):
        notes.append(CACHE_NOTE)
    if any((cell or {}).get("n_seeds", 1) > 1 for row in ordered for cell in row.cells.values()):
        notes.append(SEEDS_NOTE)
    notes += corrected_notes(runs, columns) + below_bar_notes(runs, columns)
    return Leaderboard(columns, ordered, reference, notes)
