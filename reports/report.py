"""`harness report RUNS... --out DIR`: leaderboard.{csv,md,json}, index.html and plots/*.png from run directories."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.fileio import ensure_directory
from reports.baseline import pin
from reports.collect import find_runs
from reports.html import render_html
from reports.leaderboard import Leaderboard, build_leaderboard
from reports.plots import Plot, make_plots
from reports.render import to_csv, to_json, to_markdown


@dataclass
class Report:
    board: Leaderboard
    files: list[Path]
    plots: list[Plot]
    plot_notes: list[str]
    baselines: list[Path] = field(default_factory=list)


def write_report(run_paths: list[Path], out_dir: Path, title: str = "Leaderboard",
                 pin_baselines: bool = False) -> Report:
    ensure_directory(out_dir, "--out")
    runs = find_runs(run_paths)
    board = build_leaderboard(runs)
    plot_dir = out_dir / "plots"
    for stale in plot_dir.glob("*.png"):  # plots of an earlier report that may not be drawn this time
        stale.unlink()
    plots, plot_notes = make_plots(board, plot_dir)
    outputs = {"leaderboard.csv": to_csv(board), "leaderboard.md": to_markdown(board, title),
               "leaderboard.json": to_json(board), "index.html": render_html(board, plots, plot_notes, out_dir, title)}
    files = []
    for name, text in outputs.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        files.append(out_dir / name)
    report = Report(board, files, plots, plot_notes)
    if pin_baselines:
        report.baselines = [pin(run, out_dir / "baselines") for row in board.rows if row.comparable for run in row.runs]
    return report
