"""Prompt sets that more than one benchmark evaluates on, and the sampling helpers they share.

The repository's own benign/borderline set (`benchmarks/data/benign_eval.jsonl`, always first, so the demo
needs nothing but PyPI), XSTest's 250 safe prompts (borderline: they only sound harmful), refusal_direction's
harmless test split (benign Alpaca instructions); seeded category allocation, deduplication by normalised
text, and the provenance record of a file that ships with the repository. Used by `safety` and `utility`.
"""
from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.datasources import Candidate, HFSource, MirrorSource, read_csv_bytes, read_jsonl_bytes, read_text
from harness.errors import HarnessError
from harness.hashing import hash_bytes
from harness.types import EvalItem

BENIGN_EVAL_PATH = Path(__file__).resolve().parent / "data" / "benign_eval.jsonl"


def _only(files: dict[str, bytes]) -> bytes:
    return next(iter(files.values()))


def load_benign_eval(path: Path = BENIGN_EVAL_PATH) -> list[EvalItem]:
    """The repository's own benign/borderline set (fields id, prompt, category in {benign, borderline})."""
    if not path.is_file():
        raise HarnessError(f"{path} is missing; it ships with the repository (reinstall or restore it)")
    items = []
    for row in read_jsonl_bytes(path.read_bytes()):
        kind = row["category"]
        if kind not in ("benign", "borderline"):
            raise HarnessError(f"{path}: item {row.get('id')!r} has category {kind!r}; "
                               "expected 'benign' or 'borderline'")
        items.append(EvalItem(id=f"benign_eval:{row['id']}", prompt=row["prompt"],
                              category=row.get("topic") or kind, kind=kind, source="benign_eval"))
    return items


def xstest_safe(files: dict[str, bytes]) -> list[EvalItem]:
    """XSTest's safe prompts; category = XSTest prompt type (homonyms, safe_targets, ...)."""
    rows = read_jsonl_bytes(files["rows.jsonl"]) if "rows.jsonl" in files else read_csv_bytes(_only(files))
    # The mirror CSV numbers prompts from 1 in file order; the HF copy has no id column.
    return [EvalItem(id=f"xstest:{row.get('id') or i + 1}", prompt=row["prompt"], category=row["type"],
                     kind="borderline", source="xstest")
            for i, row in enumerate(rows) if row["label"] == "safe"]


def harmless_test(files: dict[str, bytes]) -> list[EvalItem]:
    rows = json.loads(read_text(_only(files)))
    return [EvalItem(id=f"refusal_direction:harmless_test:{i}", prompt=row["instruction"],
                     category="benign", kind="benign", source="refusal_direction")
            for i, row in enumerate(rows)]


XSTEST_CANDIDATES = (
    Candidate(MirrorSource(("xstest/xstest_prompts.csv",)), xstest_safe),
    Candidate(HFSource("walledai/XSTest", "f1d713187c61b6ae64e602d74f0b3d812cc2e8e8", split="test"),
              xstest_safe),
)
HARMLESS_CANDIDATES = (
    Candidate(MirrorSource(("refusal_direction/splits/harmless_test.json.gz",)), harmless_test),
)



# --- sampling and provenance ---------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lowercase words only: the key for spotting the same prompt in two sources."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def dedupe(items: Iterable[EvalItem], seen: set[str]) -> list[EvalItem]:
    kept = []
    for item in items:
        key = normalise(item.prompt)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def allocate(available: dict[str, int], n: int, rng: random.Random) -> dict[str, int]:
    """Split n over categories as evenly as their sizes allow (water-filling).

    Small categories give all they have and the rest is shared among the others; when n does not
    divide evenly, a seeded order decides which categories get one more.
    """
    quota = {category: 0 for category in available}
    remaining = min(n, sum(available.values()))
    open_categories = sorted(c for c, size in available.items() if size > 0)
    rng.shuffle(open_categories)
    while remaining > 0 and open_categories:
        share, extra = divmod(remaining, len(open_categories))
        for index, category in enumerate(open_categories):
            want = share + (1 if index < extra else 0)
            take = min(want, available[category] - quota[category])
            quota[category] += take
            remaining -= take
        open_categories = [c for c in open_categories if quota[c] < available[c]]
    return quota


def fill(first: list[EvalItem], extra: list[EvalItem], n: int | None, rng: random.Random) -> list[EvalItem]:
    """The repository's own items first, then a seeded sample of the external ones, up to n."""
    if n is None:
        return first + extra
    if n <= len(first):
        return rng.sample(first, n)
    return first + rng.sample(extra, min(n - len(first), len(extra)))


def repository_record(path: Path) -> dict[str, Any]:
    """Provenance of a data file that ships with this repository, in the resolver's record format."""
    digest = hash_bytes(path.read_bytes())
    return {"dataset": path.stem, "source": "repository", "location": f"benchmarks/data/{path.name}",
            "version": None, "sha256": digest, "files": {path.name: digest}, "tried_before": []}
