"""The leaderboard as CSV, Markdown and JSON."""
from __future__ import annotations

import csv
import io
import json
from importlib.metadata import version
from typing import Any

from reports.leaderboard import Column, Leaderboard, Row
from reports.metrics import format_metric, is_fraction

LEADERBOARD_FORMAT = "harness-leaderboard/1"


def percent_columns(board: Leaderboard) -> dict[str, bool]:
    """Columns whose values and intervals are all fractions are printed in percent."""
    result = {}
    for column in board.columns:
        cells = [row.cells.get(column.key) or {} for row in board.rows]
        numbers = [c.get("value") for c in cells] + [x for c in cells for x in (c.get("ci95") or [])]
        result[column.key] = is_fraction(numbers)
    return result


def column_title(column: Column, percent: bool) -> str:
    arrow = "↓" if column.lower_is_better else "↑"
    return f"{column.benchmark}: {column.label}{' (%)' if percent else ''} {arrow}"


def format_cost(row: Row) -> list[str]:
    cost = row.cost
    wall = f"{cost['wall_s']:.0f}" if cost["wall_s"] is not None else "n/a"
    if cost.get("cache_hits"):
        wall += "*"  # see leaderboard.CACHE_NOTE
    return [wall, str(cost["tokens_generated"]), str(cost["tokens_trained"])]


def format_score(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def header(board: Leaderboard, percent: dict[str, bool]) -> list[str]:
    return (["model", "aligner", "comparable"] + [column_title(c, percent[c.key]) for c in board.columns]
            + ["wall time (s)", "tokens generated", "tokens trained", "mean rank ↓", "mean win rate ↑"])


def escape_markdown(text: object) -> str:
    """Text from outside (model and aligner names, settings, labels, paths) made safe to quote in Markdown:
    it cannot open HTML tags or split a table cell, and stays on one line."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return " ".join(text.splitlines())


def to_markdown(board: Leaderboard, title: str = "Leaderboard") -> str:
    percent = percent_columns(board)
    head = [escape_markdown(cell) for cell in header(board, percent)]
    lines = [f"# {escape_markdown(title)}", "",
             "Each cell: value [95% CI]. ↓ lower is better, ↑ higher is better. Mean rank and mean win rate are "
             "taken per headline metric, averaged within each benchmark, then across benchmarks (comparable rows "
             "only).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in board.rows:
        cells = [format_metric(row.cells.get(c.key), percent[c.key]) for c in board.columns]
        flag = "yes" if row.comparable else f"**no**: {escape_markdown(row.setting)}"
        lines.append("| " + " | ".join([escape_markdown(row.model), escape_markdown(row.name), flag] + cells
                                       + format_cost(row)
                                       + [format_score(row.mean_rank), format_score(row.mean_win_rate)]) + " |")
    lines += ["", "Reference setting per benchmark (runs that differ are flagged):", ""]
    for benchmark, key in sorted(board.reference.items()):
        limit = "none" if key["limit"] is None else key["limit"]
        setting = f"{benchmark}: preset {key['preset']}, --limit {limit}, data {key['data']}, judge {key['judge']}"
        lines.append(f"- {escape_markdown(setting)}")
    if board.notes:
        lines += ["", "Notes:", ""] + [f"- {escape_markdown(note)}" for note in board.notes]
    return "\n".join(lines) + "\n"


def to_csv(board: Leaderboard) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    metric_fields = [f"{c.key}{suffix}" for c in board.columns for suffix in ("", ":ci_low", ":ci_high", ":n")]
    writer.writerow(["model", "aligner", "variant", "comparable", "not_comparable_because"] + metric_fields
                    + ["wall_s", "tokens_generated", "tokens_trained", "runs", "mean_rank", "mean_win_rate"])
    for row in board.rows:
        values: list[Any] = []
        for column in board.columns:
            cell = row.cells.get(column.key) or {}
            lo, hi = cell.get("ci95") or (None, None)
            values += [cell.get("value"), lo, hi, cell.get("n")]
        cost = row.cost
        writer.writerow([row.model, row.aligner, row.variant, row.comparable, row.setting] + values
                        + [cost["wall_s"], cost["tokens_generated"], cost["tokens_trained"], cost["runs"],
                           row.mean_rank, row.mean_win_rate])
    return buffer.getvalue()


def to_document(board: Leaderboard) -> dict[str, Any]:
    return {
        "format": LEADERBOARD_FORMAT,
        "harness_version": version("harness"),
        "columns": [{"key": c.key, "benchmark": c.benchmark, "metric": c.metric, "label": c.label,
                     "lower_is_better": c.lower_is_better} for c in board.columns],
        "reference": board.reference,
        "rows": [{"model": row.model, "aligner": row.aligner, "variant": row.variant, "comparable": row.comparable,
                  "not_comparable_because": row.setting or None, "cells": row.cells, "cost": row.cost,
                  "mean_rank": row.mean_rank, "mean_win_rate": row.mean_win_rate,
                  "runs": [run.provenance() for run in row.runs]} for row in board.rows],
        "notes": board.notes,
    }


def to_json(board: Leaderboard) -> str:
    return json.dumps(to_document(board), indent=2, ensure_ascii=False, default=str) + "\n"
