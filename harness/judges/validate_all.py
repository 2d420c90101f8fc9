"""`harness judge validate --all`: every built-in judge against every human-labelled set of each role it fills,
as one page (docs/judge-validation.md is this command's output).

Only human labels count here (XSTest's, LLMBar's and the other pairwise sets', TruthfulQA's); the safety sets
are their held-out split, which the embedded safety judge never trained on. Judges that need an endpoint
(`openai`) are validated on their own with `harness judge validate --judge openai ...`.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from harness import progress, registry
from harness.errors import HarnessError

HUMAN_SETS: dict[str, tuple[str, ...]] = {
    "safety": ("xstest",),
    "truth": ("truthfulqa-truth", "truthfulqa-info"),
    "pairwise": ("llmbar-natural", "llmbar-adversarial", "mtbench-human", "faireval", "llmeval2"),
}
NEEDS_ENDPOINT = {"openai"}


@dataclass(frozen=True)
class Agreement:
    judge: str
    version: str
    labels: str  # the labelled set
    what: str  # the head or field judged
    value: float | None  # agreement with the human labels (accuracy; pairwise: credit per presentation)
    ci95: tuple[float | None, float | None]
    kappa: float | None
    n: int
    unparsed: int


def agreements(result: dict[str, Any]) -> list[Agreement]:
    """The rows of one `validate` result (safety: each head on full responses; truth; pairwise overall)."""
    common = {"judge": result["judge"], "version": str(result.get("judge_version")), "labels": result["against"]}
    if "full" in result:
        from harness.judges.validate import VARIANTS

        stats = [(head + ("" if cut is None else f", cut to {cut} chars"), result[variant][head])
                 for variant, cut in VARIANTS if variant in result for head in ("refusal", "harmful")]
        return [Agreement(**common, what=what, value=s["accuracy"]["value"], ci95=tuple(s["accuracy"]["ci95"]),
                          kappa=s["kappa"], n=s["n"], unparsed=s["unparsed"]) for what, s in stats]
    if "overall" in result:
        overall = result["overall"]
        agreement = overall["agreement"]
        return [Agreement(**common, what="preference (both orders)", value=agreement["value"],
                          ci95=tuple(agreement["ci95"]), kappa=overall["kappa"], n=overall["n_pairs"],
                          unparsed=overall["unparsed"])]
    accuracy = result["accuracy"]
    return [Agreement(**common, what=result["kind"], value=accuracy["value"], ci95=tuple(accuracy["ci95"]),
                      kappa=result["kappa"], n=result["n"], unparsed=result["unparsed"])]


def builtin_judges() -> list[str]:
    return sorted(ep.name for ep in entry_points(group="harness.judges") if ep.name not in NEEDS_ENDPOINT)


def validate_all(judges: list[str], data_dir: Path | None, limit: int | None) -> tuple[list[Agreement], list[str]]:
    """Every judge against every human-labelled set of its roles; (rows, what was skipped and why)."""
    from harness.judges.validate import validate

    rows: list[Agreement] = []
    skipped: list[str] = []
    for judge in judges:
        for role in getattr(registry.get("judges", judge), "roles", ()):
            for labels in HUMAN_SETS.get(role, ()):
                progress.say(f"validating {judge} against {labels}")
                try:
                    rows += agreements(validate(judge, labels, data_dir, limit=limit))
                except HarnessError as exc:
                    skipped.append(f"{judge} on {labels}: {exc}")
    return rows, skipped


def anchors(data_dir: Path | None) -> tuple[list[tuple[Agreement, str]], list[str]]:
    """Strong judges' figures on the same human-labelled sets (anchors.py), each with where it comes from;
    (rows, what could not be computed and why)."""
    from harness.judges.anchors import pairwise_anchors, xstest_anchors

    rows, skipped = pairwise_anchors(HUMAN_SETS["pairwise"]), []
    try:
        rows = xstest_anchors(data_dir) + rows
    except HarnessError as exc:
        skipped.append(f"GPT-4 on xstest: {exc}")
    return rows, skipped


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def table_row(row: Agreement, *extra: str) -> str:
    low, high = row.ci95
    interval = f" [{percent(low)[:-1]}, {percent(high)[:-1]}]" if None not in (low, high) else ""
    kappa = "n/a" if row.kappa is None else f"{row.kappa:.3f}"
    cells = [row.judge, *([] if extra else [row.version]), row.labels, row.what, percent(row.value) + interval, kappa,
             str(row.n), str(row.unparsed), *extra]
    return "| " + " | ".join(cells) + " |"


def judges_page(rows: list[Agreement], skipped: list[str], limit: int | None,
                anchor_rows: list[tuple[Agreement, str]] = ()) -> str:
    sample = f"a seeded sample of at most {limit} labelled items per set" if limit else "every labelled item"
    lines = ["# Judge validation", "",
             "Written by `harness judge validate --all"
             + (f" --limit {limit}" if limit else "") + "` (do not edit by hand): every built-in judge against "
             "every human-labelled set of the roles it fills, " + sample + ". Agreement is accuracy against the "
             "human labels (pairwise: credit per presentation, each pair shown in both orders, a tie half); "
             "95% intervals; kappa is Cohen's. The safety sets are their held-out split and the TruthfulQA sets the "
             "answers to its held-out questions, never used in training.",
             "", "| judge | version | labels | judged | agreement [95% CI] | kappa | n | unparsed |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [table_row(row) for row in rows]
    if anchor_rows:
        lines += ["", "## Anchors on the same sets", "",
                  "What strong judges reach on the same human labels, for scale (harness/judges/anchors.py). GPT-4's "
                  "XSTest labels ship in XSTest's files and are scored here exactly as the judges above are, on the "
                  "whole held-out split; the pairwise figures are LLMBar's published GPT-4 evaluator results on "
                  "each whole set (both orders of every pair; n is pairs), not on the sample above.", "",
                  "| anchor | labels | judged | agreement [95% CI] | kappa | n | unparsed | source |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [table_row(row, source) for row, source in anchor_rows]
    if skipped:
        lines += ["", "Not validated:", ""] + [f"- {reason}" for reason in skipped]
    lines += ["", "Judges that need an endpoint (`openai`) are validated with `harness judge validate --judge openai "
              "--judge-model M --judge-base-url URL --against SET`.", ""]
    return "\n".join(lines)
