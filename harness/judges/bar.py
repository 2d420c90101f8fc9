"""Whether a pairwise judge's win rates can be headline numbers.

A pairwise judge must agree with human preferences on LLMBar-Natural (pairs it never trained on) at least
PAIRWISE_BAR of the time, as measured by `harness judge validate --judge J --against llmbar-natural --record`
and written to its validation record (harness/judges/validation/<judge>.json, next to any per-head record a
safety judge has). Until one does, reports mark the win rates it produced "judge below validation bar" and
leave them out of the rankings: a judge at chance gives win rates near 50% with narrow intervals that look
precise and carry no information.
"""
from __future__ import annotations

import json
from typing import Any

from harness.errors import HarnessError
from harness.fileio import write_json_atomic
from harness.prevalence import validation_path

PAIRWISE_BAR = 0.60
BAR_SET = "llmbar-natural"


def write_pairwise_record(result: dict[str, Any]) -> str:
    """The judge's agreement on BAR_SET from a full `validate_pairwise` result, into its validation record."""
    if result.get("against") != BAR_SET or result.get("limit") is not None:
        raise HarnessError(f"--record for a pairwise judge needs the whole {BAR_SET} set: use --against {BAR_SET} "
                           "without --limit")
    agreement = result["overall"]["agreement"]
    path = validation_path(result["judge"])
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"judge": result["judge"]}
    record["pairwise"] = {"version": str(result["judge_version"]), "set": BAR_SET, "agreement": agreement["value"],
                          "ci95": agreement["ci95"], "n_pairs": result["overall"]["n_pairs"], "bar": PAIRWISE_BAR}
    write_json_atomic(path, record)
    return str(path)


def pairwise_standing(judge: str, version: str | None) -> dict[str, Any] | None:
    """The judge's recorded agreement on BAR_SET and whether it meets the bar; None without a record for this
    version of the judge."""
    path = validation_path(judge)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))["pairwise"]
        agreement = float(record["agreement"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.get("version") != version:
        return None
    return {**record, "meets_bar": agreement >= PAIRWISE_BAR}
