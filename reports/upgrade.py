"""`harness upgrade PATH...`: converts run directories and pinned baselines written before the evaluation
core (sample format 1: scores as loose record fields, metrics described by name-based rules in the reports)
to the current format (sample format 2: each record's `scores`, and the benchmark's MetricSpecs in
metrics.json), and configs written before typed options to typed ones (the aligner's and the benchmark's
options, resolved from what the run recorded and its preset). Rates whose interval predates the Wilson
interval get it, recomputed from their per-item records, and judged rates their correction for judge error
(harness/prevalence.py). Values and items are kept exactly. Idempotent.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from harness import registry
from harness.config import benchmark_options
from harness.errors import HarnessError
from harness.fileio import read_json_file
from harness.hashing import hash_json
from harness.eval.loop import SAMPLE_FORMAT, add_corrected_rates
from harness.eval.metrics import compute_metrics, specs_from_document
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


def upgraded_document(document: dict, where: Path) -> tuple[dict, list[dict]]:
    if not isinstance(document, dict) or not isinstance(document.get("benchmark"), str):
        raise HarnessError(f"{where}: the results name no benchmark (the file is damaged); it cannot be upgraded")
    specs = document.get("metric_specs") or benchmark_specs(document["benchmark"])
    return {**document, "metric_specs": specs, "sample_format": SAMPLE_FORMAT}, specs


def with_current_intervals(document: dict, records: list[dict], seed: int) -> dict:
    """Rates whose interval predates the calibrated one (no "interval" entry: the percentile bootstrap) get the
    Wilson interval from their per-item records, and judged rates their correction for judge error
    (harness/prevalence.py); a value the records do not reproduce exactly (value and n) is left as it was."""
    specs = specs_from_document(document)
    fresh = compute_metrics(specs, records, seed)
    metrics = {name: dict(value) if isinstance(value, dict) else value
               for name, value in (document.get("metrics") or {}).items()}
    for name, old in metrics.items():
        new = fresh.get(name)
        if not isinstance(old, dict) or "interval" in old or not new or new.get("interval") != "wilson":
            continue
        if new["n"] == old.get("n") and old.get("value") is not None and abs(new["value"] - old["value"]) <= 1e-9:
            old.update(ci95=new["ci95"], interval="wilson")
    add_corrected_rates(specs, metrics, records, recorded_judges(document, specs), seed)
    return {**document, "metrics": metrics}


def recorded_judges(document: dict, specs: list) -> dict[str, dict]:
    """role -> the judge identity the results record for it."""
    from reports.collect import RunRecord

    run = RunRecord(Path("."), {}, {}, document)
    found: dict[str, dict] = {}
    for spec in specs:
        identity = run.judge_for(spec.judge_role, spec.name) if spec.judge_role else None
        if identity is not None:
            found.setdefault(spec.judge_role, identity)
    return found


# Budget keys of format-1 configs that an aligner's typed options name differently.
LEGACY_OPTION_NAMES = {"icl_k": "k"}


def upgraded_config(config: dict) -> dict:
    """A config of an earlier version as a current one: typed aligner options (format 1 had a `budget` of every
    aligner's knobs), and the benchmark's options (sizes and answer length, which earlier versions took from
    the preset by name) as the preset resolves them."""
    if not isinstance(config, dict):
        return config
    config = typed_aligner_options(config)
    if "benchmark_options" in config:
        return config
    try:
        options = benchmark_options(config["benchmark"], config["preset"])
    except (HarnessError, KeyError) as exc:
        raise HarnessError(f"cannot upgrade a run of benchmark {config.get('benchmark')} with preset "
                           f"{config.get('preset')}: {exc}") from None
    upgraded = dict(config)
    upgraded["benchmark_options"] = as_dict(options)
    return upgraded


def typed_aligner_options(config: dict) -> dict:
    """A format-1 config (a `budget` of every aligner's knobs, untyped `aligner_options`) as a typed one: the
    aligner's options from the effective values it recorded."""
    if "budget" not in config:
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


def upgraded_manifest(manifest: dict, config: dict) -> dict:
    """The manifest's copy of the config, and the hash that identifies it, as the upgraded config's."""
    if not isinstance(manifest, dict):
        return manifest
    updated = dict(manifest)
    if "config" in manifest:
        updated["config"] = config
    if "config_hash" in manifest:
        updated["config_hash"] = hash_json(config)
    return updated


def read_mapping(path: Path, what: str) -> dict:
    data = read_json_file(path, what)
    if not isinstance(data, dict):
        raise HarnessError(f"{what} {path} is not a JSON object; it was not written by harness")
    return data


def planned_config_files(run_dir: Path) -> list[tuple[Path, dict]]:
    """config.json, and the manifest that records it, of one run directory (a parent or a child run), upgraded
    (not written yet)."""
    config_path = run_dir / "config.json"
    if not config_path.exists():
        return []
    config = upgraded_config(read_mapping(config_path, "run file"))
    planned = [(config_path, config)]
    manifest_path = run_dir / "manifest.json"
    if manifest_path.exists():
        planned.append((manifest_path, upgraded_manifest(read_mapping(manifest_path, "run file"), config)))
    return planned


def upgrade_run_directory(path: Path) -> None:
    """Reads and converts every file first; only then writes, so a file that cannot be read or converted leaves
    the whole run as it was."""
    planned = planned_config_files(path)
    for child in sorted((path / "domains").glob("*/")):  # domain generalization's child runs
        planned += planned_config_files(child)
    metrics_path = path / "metrics.json"
    upgraded, specs = upgraded_document(read_mapping(metrics_path, "run file"), metrics_path)
    samples = [(file, [upgraded_record(upgraded["benchmark"], specs, r) for r in read_jsonl(file)])
               for file in sorted((path / "samples").glob("*.jsonl"))]
    evaluated = next((records for file, records in samples if file.name == "eval.jsonl"), None)
    if evaluated is not None:
        upgraded = with_current_intervals(upgraded, evaluated, run_seed(path / "config.json"))
    for file, data in planned:
        write_json_atomic(file, data)
    for file, records in samples:
        staging = file.with_name(f".{file.name}.upgrade")
        staging.unlink(missing_ok=True)
        with JsonlWriter(staging) as writer:
            for record in records:
                writer.write(record)
        staging.replace(file)
    write_json_atomic(metrics_path, upgraded)


def upgrade_baseline(path: Path, data: dict) -> None:
    from reports.collect import BASELINE_FORMAT

    document, specs = upgraded_document(data.get("document") or {}, path)
    records = [upgraded_record(document["benchmark"], specs, r) for r in data.get("records") or []]
    config = upgraded_config(data.get("config") or {})
    document = with_current_intervals(document, records, int(config.get("seed") or 0))
    write_json_atomic(path, {**data, "format": BASELINE_FORMAT, "config": config,
                             "manifest": upgraded_manifest(data.get("manifest") or {}, config),
                             "document": document, "records": records})


def run_seed(config_path: Path) -> int:
    config = read_mapping(config_path, "run file") if config_path.exists() else {}
    return int(config.get("seed") or 0)


def upgrade(path: Path) -> str:
    """Upgrades one run directory or pinned baseline file in place; returns what was done."""
    if path.is_dir():
        if not (path / "metrics.json").exists():
            raise HarnessError(f"{path} holds no finished run (no metrics.json); nothing to upgrade")
        upgrade_run_directory(path)
        return f"upgraded run {path}"
    if path.is_file():
        data = read_json_file(path, "baseline file")
        if not isinstance(data, dict) or not str(data.get("format", "")).startswith("harness-baseline/"):
            raise HarnessError(f"{path} is neither a run directory nor a pinned baseline file")
        upgrade_baseline(path, data)
        return f"upgraded baseline {path}"
    raise HarnessError(f"{path}: no such run directory or baseline file")
