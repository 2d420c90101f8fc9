"""A plain-text comparison table of runs (aligner, headline metrics with 95% CIs, wall time); the columns
are the headline MetricSpecs the runs recorded."""
from __future__ import annotations

from typing import Any

from harness.eval.metrics import specs_from_document


def format_metric(metric: dict[str, Any] | None, percent: bool = True) -> str:
    if not metric or metric.get("value") is None:
        return "n/a"
    lo, hi = metric["ci95"]
    if not percent:
        return f"{metric['value']:.3g} [{lo:.3g}, {hi:.3g}] n={metric['n']}"
    return f"{100 * metric['value']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] n={metric['n']}"


def table_rows(documents: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    columns = [spec for spec in specs_from_document(documents[0]) if spec.headline]
    header = ["aligner", "model"] + [spec.title for spec in columns] + ["wall time"]
    rows = []
    for document in documents:
        wall = document.get("wall_s")
        rows.append([document["aligner"], document["model"]]
                    + [format_metric(document["metrics"].get(spec.name), spec.percent) for spec in columns]
                    + [f"{wall:.0f} s" if wall is not None else "n/a"])
    return header, rows


def render_table(documents: list[dict[str, Any]]) -> str:
    header, rows = table_rows(documents)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def print_table(documents: list[dict[str, Any]]) -> None:
    print(render_table(documents))
