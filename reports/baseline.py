"""Pinned baselines: a run's results and per-item outcomes in one small JSON file, kept in the repository so
`harness compare BASELINE.json runs/new` can regression-test a new method in CI.

Only identifiers and numeric outcomes of each item are kept: no prompts or responses (the evaluation data is
never copied into the repository), nothing machine-specific such as local paths.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.fileio import path_component
from harness.store import write_json_atomic
from reports.collect import BASELINE_FORMAT, RunRecord

IDENTITY_FIELDS = ("id", "kind", "category", "domain", "source", "scope", "seed_domain", "item_id")
MANIFEST_FIELDS = ("config_hash", "status", "preset", "versions", "model", "hashes", "n_seeds", "n_eval_items",
                   "wall_s", "tokens", "stages", "cache_hits")
SOURCE_FIELDS = ("dataset", "source", "version", "sha256", "files")


def item_outcomes(record: dict[str, Any]) -> dict[str, Any]:
    """A record reduced to its identity and its numeric/boolean outcomes."""
    return {k: v for k, v in record.items()
            if k in IDENTITY_FIELDS or k == "scores" or v is None or isinstance(v, (bool, int, float))}


def baseline_document(run: RunRecord) -> dict[str, Any]:
    manifest = {k: run.manifest[k] for k in MANIFEST_FIELDS if k in run.manifest}
    if run.artifact_link:  # the artifact's identity and cost; not its path, which is a private machine path
        manifest["artifact"] = {k: v for k, v in run.artifact_link.items() if k != "path"}
    manifest["data_sources"] = [{k: s.get(k) for k in SOURCE_FIELDS if k in s}
                                for s in run.manifest.get("data_sources") or []]
    document = {k: v for k, v in run.document.items() if k != "run"}
    return {"format": BASELINE_FORMAT, "config": run.config, "manifest": manifest, "document": document,
            "records": [item_outcomes(r) for r in run.records()]}


def baseline_name(run: RunRecord) -> str:
    parts = [run.benchmark, run.aligner] + ([run.variant] if run.variant else []) + [run.preset, f"seed{run.seed}"]
    return path_component("-".join(parts), max_length=200) + ".json"


def pin(run: RunRecord, out_dir: Path) -> Path:
    """Write the run's baseline file under out_dir/<model>/; returns its path."""
    path = out_dir / path_component(run.model) / baseline_name(run)
    write_json_atomic(path, baseline_document(run))
    return path
