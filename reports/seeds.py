"""Several runs that differ only in their training seed, as one run for `harness compare`.

Each run's items are renamed `seed<S>/<id>`, so a comparison pairs the baseline's seed-S run with the candidate's
seed-S run item by item, and the paired test pools those pairs over seeds. The test treats each (seed, item) pair
as a unit; the per-seed differences are printed beside it (`seed_differences`), so a difference that only one
seed shows is visible.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.eval.metrics import compute_metrics, spec_for
from harness.hashing import hash_json
from reports.collect import RunRecord


def merge_seed_runs(runs: list[RunRecord], side: str) -> RunRecord:
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    for run in runs[1:]:
        for what, mine, theirs in (("benchmark", run.benchmark, first.benchmark), ("aligner", run.aligner, first.aligner),
                                   ("model", run.model, first.model), ("data version", run.data_version,
                                                                       first.data_version),
                                   ("judge", run.judge, first.judge), ("settings", run.variant, first.variant)):
            if mine != theirs:
                raise HarnessError(f"--{side}: {run.path} and {first.path} differ in {what} ({mine} vs {theirs}); the "
                                   f"runs of one side must differ only in their training seed")
    seeds = [run.seed for run in runs]
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"--{side}: two runs have the same training seed ({sorted(seeds)}); give one run per seed")
    records = [{**record, "id": f"seed{run.seed}/{record.get('id')}"} for run in runs for record in run.records()]
    document: dict[str, Any] = {**first.document, "metrics": compute_metrics(first.specs, records, 0)}
    manifest = {**first.manifest, "hashes": {**(first.manifest.get("hashes") or {}),
                                             "eval_items": hash_json(sorted(str(r.eval_items_hash) for r in runs))}}
    config = {**first.config, "seed": min(seeds)}
    merged = RunRecord(Path(f"{first.path} (+{len(runs) - 1} more seeds: {', '.join(map(str, sorted(seeds)))})"),
                       config, manifest, document, embedded_records=records)
    merged.seed_runs = {run.seed: run for run in runs}  # type: ignore[attr-defined]
    return merged


def seed_differences(baseline: RunRecord, candidate: RunRecord, metric: str) -> dict[int, float] | None:
    """Per training seed, candidate minus baseline of `metric` (None unless both sides are several seeds)."""
    a, b = getattr(baseline, "seed_runs", None), getattr(candidate, "seed_runs", None)
    if not a or not b or spec_for(baseline.specs, metric) is None:
        return None
    out = {}
    for seed in sorted(set(a) & set(b)):
        x, y = (a[seed].metrics.get(metric) or {}).get("value"), (b[seed].metrics.get(metric) or {}).get("value")
        if x is not None and y is not None:
            out[seed] = y - x
    return out or None
