"""PNG plots of a leaderboard (matplotlib, no display needed). Only comparable rows are plotted.

Each plot function returns the plots it could draw and a note for each it could not (what runs it needs).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from matplotlib.figure import Figure

from reports.collect import RunRecord
from reports.leaderboard import Column, Leaderboard, Row, cell_of
from reports.metrics import is_fraction, lower_is_better, primary_metric

MAX_PANELS = 12
# Settings that choose the seeds: a heatmap row per seed domain instead of a separate method.
SEED_SETTINGS = ("seeds_file=", "seed_domain=", "seeds=")
DPI = 100


@dataclass(frozen=True)
class Plot:
    path: Path
    title: str
    caption: str


def error_bar(metric: dict[str, Any], scale: float) -> tuple[float, float, float]:
    """(value, below, above) in plot units; zero-length bars where an interval is missing."""
    value = metric["value"] * scale
    lo, hi = metric.get("ci95") or (None, None)
    below = max(0.0, value - lo * scale) if lo is not None else 0.0
    above = max(0.0, hi * scale - value) if hi is not None else 0.0
    return value, below, above


def unit(values: list[float | None]) -> tuple[float, str]:
    return (100.0, " (%)") if is_fraction(values) else (1.0, "")


def save(figure: Figure, out_dir: Path, name: str) -> Path:
    path = out_dir / f"{name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    return path


def slug(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "_" for ch in part) for part in parts)


def comparable_runs(board: Leaderboard) -> list[tuple[Row, RunRecord]]:
    return [(row, run) for row in board.rows if row.comparable for run in row.runs]


def domains_of(runs: list[RunRecord], metric: str) -> list[str]:
    return sorted({name.split("/", 1)[1] for run in runs for name in run.metrics if name.startswith(metric + "/")})


def method_label(run: RunRecord, ignored: tuple[str, ...]) -> str:
    """The aligner and its settings, leaving out those a plot puts on an axis."""
    others = [part for part in run.variant_parts() if not part.startswith(ignored)]
    return run.aligner + (f" ({', '.join(others)})" if others else "")


def grid(n_panels: int) -> tuple[int, int]:
    cols = min(4, n_panels)
    return math.ceil(n_panels / cols), cols


# --- 1. metric per iteration, per domain --------------------------------------------------------------

def iteration_curves(board: Leaderboard, out_dir: Path) -> tuple[list[Plot], list[str]]:
    """Primary metric against the number of iterations of iterative aligners; iteration 0 = the `none` run."""
    pairs = comparable_runs(board)
    plots = []
    for model, benchmark in sorted({(run.model, run.benchmark) for _, run in pairs
                                    if run.iterations is not None and "curves" not in run.document}):
        runs = [run for _, run in pairs if run.model == model and run.benchmark == benchmark]
        metric = primary_metric(runs)
        if metric is None:
            continue
        unaligned = [r for r in runs if r.aligner == "none" and not r.variant]
        lines: dict[str, dict[int, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
        for run in runs:
            if run.iterations is not None:
                lines[method_label(run, ("iterations=",))][run.iterations].append(run)
        for points in lines.values():
            points[0] += unaligned
        if not any(metric in r.metrics for points in lines.values() for rs in points.values() for r in rs):
            continue
        panels = ["all"] + domains_of(runs, metric)[: MAX_PANELS - 1]
        scale, units = unit([r.metrics.get(metric, {}).get("value") for r in runs])
        n_rows, n_cols = grid(len(panels))
        figure = Figure(figsize=(3.2 * n_cols, 2.6 * n_rows + 0.6))
        for index, panel in enumerate(panels):
            axes = figure.add_subplot(n_rows, n_cols, index + 1)
            name = metric if panel == "all" else f"{metric}/{panel}"
            for label, points in sorted(lines.items()):
                cells = {t: cell_of(points[t], name) for t in sorted(points)}
                curve = [(t, *error_bar(cell, scale)) for t, cell in cells.items() if cell.get("value") is not None]
                if curve:
                    xs, ys, below, above = zip(*curve)
                    axes.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, label=label)
            label_iteration_panel(axes, panel, metric + units if index == 0 else None)
        figure.suptitle(f"{benchmark}: {metric} per iteration ({model}; iteration 0 = unaligned)", fontsize=10)
        plots.append(Plot(save(figure, out_dir, slug("iterations", benchmark, model)),
                          f"{benchmark}: {metric} per iteration, {model}",
                          "Each point is a run aligned for that many iterations (iteration 0: the `none` run); "
                          "bars are 95% CIs; one panel per evaluation domain."))
    plots += recorded_curves(board, out_dir)
    notes = [] if plots else ["iteration curves: need runs of an iterative aligner (isara, spin) with "
                              "--set iterations=1, 2, ... and a `none` run for iteration 0, or a "
                              "domain-generalization run of one"]
    return plots, notes


def label_iteration_panel(axes, title: str, ylabel: str | None) -> None:
    """Title, integer iteration axis; the first panel (given a ylabel) also carries the legend."""
    axes.set_title(title, fontsize=9)
    axes.set_xlabel("iteration", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.xaxis.get_major_locator().set_params(integer=True)
    if ylabel is not None:
        axes.set_ylabel(ylabel, fontsize=8)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)


def recorded_curves(board: Leaderboard, out_dir: Path) -> list[Plot]:
    """Curves a run recorded itself (the domain-generalization benchmarks evaluate every iteration):
    one panel per evaluation domain, one line per seed domain."""
    plots = []
    for row, run in comparable_runs(board):
        curves = run.document.get("curves") or {}
        if not curves:
            continue
        metric = (run.document.get("matrix") or {}).get("metric", "value")
        eval_domains = list(dict.fromkeys(e for by_eval in curves.values() for e in by_eval))[:MAX_PANELS]
        points = [p for by_eval in curves.values() for line in by_eval.values() for p in line]
        scale, units = unit([p.get("value") for p in points])
        n_rows, n_cols = grid(len(eval_domains))
        figure = Figure(figsize=(3.2 * n_cols, 2.6 * n_rows + 0.6))
        for index, eval_domain in enumerate(eval_domains):
            axes = figure.add_subplot(n_rows, n_cols, index + 1)
            for seed_domain, by_eval in sorted(curves.items()):
                curve = [(p["iteration"], *error_bar(p, scale)) for p in by_eval.get(eval_domain, [])
                         if p.get("value") is not None]
                if curve:
                    xs, ys, below, above = zip(*curve)
                    style = "-" if seed_domain == eval_domain else "--"  # solid: evaluated in its own domain
                    axes.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, linestyle=style,
                                  label=f"seeds: {seed_domain}")
            label_iteration_panel(axes, eval_domain, metric + units if index == 0 else None)
        figure.suptitle(f"{run.benchmark}: {metric} per iteration, {row.name}, {run.model} "
                        "(iteration 0 = unaligned)", fontsize=10)
        plots.append(Plot(save(figure, out_dir, slug("iterations", run.benchmark, row.name, run.model,
                                                      f"seed{run.seed}")),
                          f"{run.benchmark}: {metric} per iteration, {row.name}, {run.model}",
                          "One panel per evaluation domain, one line per seed domain (solid where they are the "
                          "same); each model evaluated after every iteration; bars are 95% CIs."))
    return plots


# --- 2. domain generalization -------------------------------------------------------------------------

def heatmap(rows: list[str], columns: list[str], cells: list[list[dict | None]], metric: str, lower: bool,
            title: str) -> Figure:
    """A labelled seed-domain x evaluation-domain matrix of metric values (missing cells left blank)."""
    values = [[(c or {}).get("value") for c in line] for line in cells]
    scale, units = unit([v for line in values for v in line])
    shown = [[math.nan if v is None else v * scale for v in line] for line in values]
    figure = Figure(figsize=(1.6 + 0.75 * len(columns), 1.4 + 0.45 * len(rows)))
    axes = figure.add_subplot(1, 1, 1)
    limits = {"vmin": 0, "vmax": 100} if scale == 100 else {}  # rates: one colour scale for every heatmap
    image = axes.imshow(shown, cmap="viridis_r" if lower else "viridis", aspect="auto", **limits)
    for i, line in enumerate(shown):
        for j, value in enumerate(line):
            if not math.isnan(value):
                dark = sum(image.cmap(image.norm(value))[:3]) < 1.5  # light text on dark cells
                axes.text(j, i, f"{value:.0f}" if scale == 100 else f"{value:.2f}", ha="center", va="center",
                          fontsize=7, color="white" if dark else "black")
    axes.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=7)
    axes.set_yticks(range(len(rows)), rows, fontsize=7)
    axes.set_xlabel("evaluation domain", fontsize=8)
    axes.set_ylabel("seed domain", fontsize=8)
    figure.colorbar(image, ax=axes, label=metric + units)
    axes.set_title(title, fontsize=9)
    return figure


def generalization_heatmaps(board: Leaderboard, out_dir: Path) -> tuple[list[Plot], list[str]]:
    """Seed domain x evaluation domain: from a run's own `matrix` (the domain-generalization benchmarks), or
    assembled from separate runs whose seeds each come from one target domain."""
    plots = []
    for row, run in comparable_runs(board):
        matrix = run.document.get("matrix")
        if not matrix or not matrix.get("values"):
            continue
        rows = ["(unaligned)"] + list(matrix["seed_domains"])
        cells = [matrix.get("unaligned") or [None] * len(matrix["eval_domains"])] + matrix["values"]
        metric = matrix.get("metric", "value")
        figure = heatmap(rows, matrix["eval_domains"], cells, metric, lower_is_better([run], metric),
                         f"{run.benchmark}: {row.name}, {run.model}, seed {run.seed}")
        plots.append(Plot(save(figure, out_dir, slug("generalization", run.benchmark, row.name, run.model,
                                                      f"seed{run.seed}")),
                          f"{run.benchmark}: domain generalization of {row.name}, {run.model}",
                          f"{metric} of the model aligned with the seeds of one domain (rows) on each evaluation "
                          "domain (columns); the first row is the unaligned model."))

    groups: dict[tuple[str, str, str], dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for _, run in comparable_runs(board):
        domains = run.seed_domains()
        if len(domains) == 1 and "matrix" not in run.document:
            groups[(run.model, method_label(run, SEED_SETTINGS), run.benchmark)][next(iter(domains))].append(run)
    for (model, name, benchmark), by_seed in sorted(groups.items()):
        runs = [r for rs in by_seed.values() for r in rs]
        metric = primary_metric(runs)
        eval_domains = domains_of(runs, metric) if metric else []
        if len(by_seed) < 2 or not eval_domains:
            continue
        seed_domains = sorted(by_seed)
        columns = eval_domains + ["all"]
        cells = [[cell_of(by_seed[s], metric if d == "all" else f"{metric}/{d}")
                  for d in columns] for s in seed_domains]
        figure = heatmap(seed_domains, columns, cells, metric, lower_is_better(runs, metric),
                         f"{benchmark}: {name}, {model}")
        plots.append(Plot(save(figure, out_dir, slug("generalization", benchmark, name, model)),
                          f"{benchmark}: domain generalization of {name}, {model}",
                          f"{metric} when the seeds come from one domain (rows) and evaluation is on each domain "
                          "(columns); one run per seed domain."))
    notes = [] if plots else ["domain-generalization heatmap: need a domain-generalization run, or runs whose "
                              "seeds come from a single domain each (--seeds-file), at least two seed domains"]
    return plots, notes


# --- 3. win rates -------------------------------------------------------------------------------------

def rows_with_values(board: Leaderboard, columns: list[Column]) -> list[Row]:
    """The comparable rows that have a value in at least one of `columns` (rows that ran the benchmark)."""
    return [row for row in board.rows if row.comparable
            and any((row.cells.get(c.key) or {}).get("value") is not None for c in columns)]


def win_rates(board: Leaderboard, out_dir: Path) -> tuple[list[Plot], list[str]]:
    """Every headline win-rate metric, one figure per benchmark, one panel per metric, 95% CI bars."""
    plots = []
    for benchmark in dict.fromkeys(c.benchmark for c in board.columns):
        columns = [c for c in board.columns if c.benchmark == benchmark and "win_rate" in c.metric]
        rows = rows_with_values(board, columns)
        if not rows:
            continue
        labels = [f"{row.name} / {row.model}" for row in rows]
        figure = Figure(figsize=(3.6 * len(columns) + 1.5, 1.2 + 0.4 * len(rows)))
        for index, column in enumerate(columns):
            axes = figure.add_subplot(1, len(columns), index + 1)
            cells = [row.cells.get(column.key) or {} for row in rows]
            scale, units = unit([c.get("value") for c in cells] + [x for c in cells for x in c.get("ci95") or []])
            bars = [error_bar(c, scale) if c.get("value") is not None else (0.0, 0.0, 0.0) for c in cells]
            axes.barh(range(len(rows)), [b[0] for b in bars], xerr=[[b[1] for b in bars], [b[2] for b in bars]],
                      capsize=3, color="#4c72b0")
            axes.set_yticks(range(len(rows)), labels if index == 0 else [""] * len(rows), fontsize=7)
            axes.invert_yaxis()
            axes.set_xlabel(f"{column.label}{units}", fontsize=8)
            axes.tick_params(labelsize=7)
        figure.suptitle(f"{benchmark}: win rates (95% CI)", fontsize=10)
        plots.append(Plot(save(figure, out_dir, slug("winrate", benchmark)), f"{benchmark}: win rates",
                          "Win rates with 95% CIs for the rows that ran the benchmark (the axis names the opponent; "
                          "a missing bar: no value)."))
    notes = [] if plots else ["win rates: no benchmark with a win_rate metric (e.g. alpacaeval) among the runs"]
    return plots, notes


# --- 4. safety / utility trade-off --------------------------------------------------------------------

def tradeoff(board: Leaderboard, out_dir: Path) -> tuple[list[Plot], list[str]]:
    """Harmful rate against over-refusal, one point per row: the safety/utility trade-off."""
    points = []
    for row in board.rows:
        runs = [r for r in row.runs if "harmful_rate" in r.metrics and "over_refusal" in r.metrics]
        if row.comparable and runs:
            points.append((row, cell_of(runs, "over_refusal"),
                           cell_of(runs, "harmful_rate")))
    if not points:
        return [], ["safety trade-off: need runs of a benchmark reporting harmful_rate and over_refusal (safety)"]
    figure = Figure(figsize=(6.0, 4.6))
    axes = figure.add_subplot(1, 1, 1)
    models = sorted({row.model for row, _, _ in points})
    markers = "osD^v<>"
    for row, over, harmful in points:
        x, x_lo, x_hi = error_bar(over, 100.0)
        y, y_lo, y_hi = error_bar(harmful, 100.0)
        axes.errorbar([x], [y], xerr=[[x_lo], [x_hi]], yerr=[[y_lo], [y_hi]], capsize=3,
                      marker=markers[models.index(row.model) % len(markers)], alpha=0.85)
        label = row.name if len(models) == 1 else f"{row.name} / {row.model}"
        axes.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("over-refusal on safe prompts (%)  ← better", fontsize=8)
    axes.set_ylabel("harmful rate on harmful prompts (%)  ← better", fontsize=8)
    axes.set_title("safety vs utility (bottom left is best; 95% CIs)", fontsize=9)
    return [Plot(save(figure, out_dir, "tradeoff-safety"), "harmful rate vs over-refusal",
                 "Each aligner's harmful rate against its over-refusal (borderline + benign prompts), 95% CIs.")], []


# --- 5. score vs compute ------------------------------------------------------------------------------

def score_vs_compute(board: Leaderboard, out_dir: Path) -> tuple[list[Plot], list[str]]:
    pairs = comparable_runs(board)
    benchmarks = sorted({run.benchmark for _, run in pairs})
    panels = []
    for benchmark in benchmarks:
        runs = [(row, run) for row, run in pairs if run.benchmark == benchmark]
        metric = primary_metric([r for _, r in runs])
        if metric:
            panels.append((benchmark, metric, runs))
    if not panels:
        return [], ["score vs compute: no runs"]
    models = {run.model for _, run in pairs}
    n_rows, n_cols = grid(len(panels))
    figure = Figure(figsize=(4.2 * n_cols, 3.4 * n_rows))
    for index, (benchmark, metric, runs) in enumerate(panels):
        axes = figure.add_subplot(n_rows, n_cols, index + 1)
        scale, units = unit([r.metrics.get(metric, {}).get("value") for _, r in runs])
        by_row: dict[int, list[RunRecord]] = defaultdict(list)
        for row, run in runs:
            by_row[id(row)].append(run)
        rows = {id(row): row for row, _ in runs}
        for key, row_runs in by_row.items():
            cell = cell_of(row_runs, metric)
            if cell.get("value") is None:
                continue
            x = sum(r.alignment_tokens for r in row_runs) / len(row_runs)
            y, lo, hi = error_bar(cell, scale)
            axes.errorbar([x], [y], yerr=[[lo], [hi]], marker="o", capsize=3)
            label = rows[key].name if len(models) == 1 else f"{rows[key].name} / {rows[key].model}"
            axes.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        axes.set_xscale("symlog", linthresh=1000)
        most = max((sum(r.alignment_tokens for r in rs) / len(rs) for rs in by_row.values()), default=0)
        right = max(2000, 3 * most)
        axes.set_xlim(-200, right)  # room for the aligners that spend no tokens (x = 0)
        axes.set_xticks([t for t in (0, 1e3, 1e4, 1e5, 1e6, 1e7) if t <= right])  # no crowding near 0
        axes.set_xlabel("alignment compute (tokens generated + trained)", fontsize=8)
        arrow = "↓" if lower_is_better([r for _, r in runs], metric) else "↑"
        axes.set_ylabel(f"{metric}{units} {arrow}", fontsize=8)
        axes.set_title(benchmark, fontsize=9)
        axes.tick_params(labelsize=7)
    return [Plot(save(figure, out_dir, "score-vs-compute"), "score vs compute",
                 "Each benchmark's primary metric against the tokens the aligner generated and trained on "
                 "(evaluation excluded), mean per run; 95% CIs.")], []


PLOTTERS: tuple[Callable[[Leaderboard, Path], tuple[list[Plot], list[str]]], ...] = (
    iteration_curves, generalization_heatmaps, win_rates, tradeoff, score_vs_compute)


def make_plots(board: Leaderboard, out_dir: Path) -> tuple[list[Plot], list[str]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    plots, notes = [], []
    for plotter in PLOTTERS:
        made, skipped = plotter(board, out_dir)
        plots += made
        notes += skipped
    return plots, notes
