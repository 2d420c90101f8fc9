"""`harness upgrade PATH...`: converts run directories and pinned baselines written before the evaluation
core (sample format 1: scores as loose record fields, metrics described by name-based rules in the reports)
to the current format (sample format 2: each record's `scores`, and the benchmark's MetricSpecs in
metrics.json). Values, intervals and items are kept exactly; only the description is added. Idempotent.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from harness import registry
from harness.errors import HarnessError
from harness.eval.loop import SAMPLE_FORMAT
from harness.eval.pairwise import discrete
from harness.options import Layer, as_dict, names as option_names, resolve
from harness.store import JsonlWriter, read_jsonl, write_json_atomic


def both(record: dict, first: str, second: str) -> bool | None:
    a, b = record.get(first), record.get(second)
    return None if a is None or b is None else bool(a and b)


def truthfulqa_scores(record: dict) -> dict[str, Any]:
    scores = {"mc1": record.get("mc1"), "mc2": record.get("mc2")}
    if "truthful" in record:
        scores.update({"true": record["truthful"], "informative": record.get("informative"),
                       "true_informative": both(record, "truthful", "informative")})
    return scores


def pairwise_scores(record: dict) -> dict[str, Any]:
    return {"score": record.get("score"), "discrete": discrete(record.get("score"))}


def utility_scores(record: dict) -> dict[str, Any]:
    field = {"mmlu": "correct", "over_refusal": "refusal", "helpfulness": "score"}.get(record.get("kind"), "")
    return {field: record.get(field)} if field else {}


# How the built-in benchmarks' format-1 records held their scores (other benchmarks: a field per score).
LEGACY_SCORES: dict[str, Callable[[dict], dict[str, Any]]] = {
    "truthfulqa": truthfulqa_scores,
    "alpacaeval": pairwise_scores,
    "alpacaeval-ae1": pairwise_scores,
    "utility": utility_scores,
    "domain-generalization-truthfulqa": truthfulqa_scores,
}


def upgraded_record(benchmark: str, specs: list[dict], record: dict) -> dict:
    if isinstance(record.get("scores"), dict):
        return record
    legacy = LEGACY_SCORES.get(benchmark)
    scores = legacy(record) if legacy else {s["score"]: record.get(s["score"]) for s in specs if s["score"] in record}
    return {**record, "scores": scores}


def benchmark_specs(benchmark: str) -> list[dict]:
    try:
        return [spec.to_dict() for spec in registry.get("benchmarks", benchmark).metrics]
    except HarnessError as exc:
        raise HarnessError(f"cannot upgrade a run of {benchmark}: {exc} (install or --include its plugin)") from None


def upgraded_document(document: dict) -> tuple[dict, list[dict]]:
    specs = document.get("metric_specs") or benchmark_specs(document["benchmark"])
    return {**document, "metric_specs": specs, "sample_format": SAMPLE_FORMAT}, specs


# Budget keys of format-1 configs that an aligner's typed options name differently.
LEGACY_OPTION_NAMES = {"icl_k": "k"}


def upgraded_config(config: dict) -> dict:
    """A format-1 config (a `budget` of every aligner's knobs, untyped `aligner_options`) as a typed one: the
    aligner's options from the effective values it recorded."""
    if not isinstance(config, dict) or "budget" not in config:
        return config
    budget = config.get("budget") or {}
    legacy = {LEGACY_OPTION_NAMES.get(k, k): v for k, v in budget.items()} | dict(config.get("aligner_options") or {})
    try:
        options_class = registry.get("aligners", config["aligner"]).options_class
    except HarnessError as exc:
        raise HarnessError(f"cannot upgrade a run of aligner {config.get('aligner')}: {exc}") from None
    known = set(option_names(options_class))
    options = resolve(options_class, [Layer("recorded config:", {k: v for k, v in legacy.items() if k in known})],
                      f"aligner {config['aligner']}")
    upgraded = {k: v for k, v in config.items() if k != "budget"}
    return {**upgraded, "aligner_options": as_dict(options), "eval_batch_size": budget.get("gen_batch_size", 32)}


def upgrade_run_directory(path: Path) -> None:
    config_path = path / "config.json"
    if config_path.exists():
        write_json_atomic(config_path, upgraded_config(json.loads(config_path.read_text(encoding="utf-8"))))
    metrics_path = path / "metrics.json"
    document = json.loads(metrics_path.read_text(encoding="utf-8"))
    upgraded, specs = upgraded_document(document)
    for samples in sorted((path / "samples").glob("*.jsonl")):
        records = [upgraded_record(document["benchmark"], specs, r) for r in read_jsonl(samples)]
        staging = samples.with_name(f".{samples.name}.upgrade")
        staging.unlink(missing_ok=True)
        with JsonlWriter(staging) as writer:
            for record in records:
                writer.write(record)
        staging.replace(samples)
    write_json_atomic(metrics_path, upgraded)


def upgrade_baseline(path: Path, data: dict) -> None:
    from reports.collect import BASELINE_FORMAT

    document, specs = upgraded_document(data.get("document") or {})
    records = [upgraded_record(document["benchmark"], specs, r) for r in data.get("records") or []]
    write_json_atomic(path, {**data, "format": BASELINE_FORMAT, "config": upgraded_config(data.get("config") or {}),
                             "document": document, "records": records})


def upgrade(path: Path) -> str:
    """Upgrades one run directory or pinned baseline file in place; returns what was done."""
    if path.is_dir():
        if not (path / "metrics.json").exists():
            raise HarnessError(f"{path} holds no finished run (no metrics.json); nothing to upgrade")
        upgrade_run_directory(path)
        return f"upgraded run {path}"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HarnessError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict) or not str(data.get("format", "")).startswith("harness-baseline/"):
            raise HarnessError(f"{path} is neither a run directory nor a pinned baseline file")
        upgrade_baseline(path, data)
        return f"upgraded baseline {path}"
    raise HarnessError(f"{path}: no such run directory or baseline file")
