"""Reading finished runs: run directories (and pinned baseline files) into `RunRecord`s."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import registry
from harness.config import PRESETS, aligner_options, benchmark_options
from harness.errors import HarnessError
from harness.eval.metrics import MetricSpec, specs_from_document
from harness.hashing import hash_json
from harness.options import as_dict
from harness.fileio import read_json_file
from harness.store import read_jsonl

BASELINE_FORMAT = "harness-baseline/2"  # 2: records carry scores; the document its MetricSpecs
# Seed domains that say what a good answer looks like in general rather than naming a target domain.
GENERIC_SEED_DOMAINS = frozenset({"benign", "general"})


@dataclass
class RunRecord:
    """One finished run: what was run, what it measured, what it cost, and where its per-item outcomes are."""

    path: Path
    config: dict[str, Any]
    manifest: dict[str, Any]
    document: dict[str, Any]
    embedded_records: list[dict] | None = None  # pinned baselines carry their per-item outcomes inline
    _records: list[dict] | None = field(default=None, repr=False)

    @property
    def benchmark(self) -> str:
        return self.document["benchmark"]

    @property
    def aligner(self) -> str:
        return self.document["aligner"]

    @property
    def model(self) -> str:
        return self.document["model"]

    @property
    def preset(self) -> str:
        return self.document.get("preset") or self.config.get("preset", "")

    @property
    def limit(self) -> int | None:
        return self.document.get("limit", self.config.get("limit"))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def metrics(self) -> dict[str, dict]:
        return self.document.get("metrics", {})

    @property
    def specs(self) -> list[MetricSpec]:
        """The MetricSpecs the run recorded: what each metric aggregates, its label and direction."""
        return specs_from_document(self.document)

    @property
    def judge(self) -> str:
        judge = self.document.get("judge") or {}
        name = judge["name"] if "name" in judge else self.config.get("judge")
        return f"{name or 'no judge'}@{judge.get('version') or '-'}"

    def judge_for(self, role: str, metric: str) -> dict[str, Any] | None:
        """The identity ({"name", "version"}) of the judge that filled `role` for `metric` (results written
        before judge roles key `judges` by metric name; a single judge is `judge`)."""
        judges = self.document.get("judges") if isinstance(self.document.get("judges"), dict) else {}
        found = judges.get(role) or judges.get(metric) or (self.document.get("judge") if not judges else None)
        return found if isinstance(found, dict) and found.get("name") else None

    @property
    def config_hash(self) -> str:
        return self.manifest.get("config_hash") or hash_json(self.config)

    @property
    def eval_items_hash(self) -> str | None:
        return (self.manifest.get("hashes") or {}).get("eval_items")

    @property
    def data_version(self) -> str:
        """A fingerprint of the evaluation data's content; where it was read from (mirror, hub, wheel) is ignored."""
        return data_fingerprint(self.manifest.get("data_sources") or [])

    @property
    def samples_path(self) -> Path | None:
        path = self.path / "samples" / "eval.jsonl"
        return path if self.embedded_records is None and path.exists() else None

    def records(self) -> list[dict]:
        """Per-item evaluation records (samples/eval.jsonl, or the baseline file's own)."""
        if self._records is None:
            self._records = self.embedded_records if self.embedded_records is not None else read_jsonl(
                self.path / "samples" / "eval.jsonl")
        return self._records

    # --- cost -------------------------------------------------------------------------------------------

    @property
    def wall_s(self) -> float | None:
        return self.manifest.get("wall_s")

    @property
    def cache_hits(self) -> int:
        """Generations and judgements served from the shared cache: work its wall time does not include."""
        return int(self.manifest.get("cache_hits", 0))

    @property
    def tokens_generated(self) -> int:
        return int((self.manifest.get("tokens") or {}).get("generated", 0))

    @property
    def tokens_trained(self) -> int:
        return int((self.manifest.get("tokens") or {}).get("trained", 0))

    @property
    def artifact_link(self) -> dict[str, Any] | None:
        """The aligned-model artifact this run evaluated instead of aligning (path, key, content hash, cost)."""
        link = self.manifest.get("artifact")
        return link if isinstance(link, dict) and isinstance(link.get("key"), str) else None

    @property
    def alignment_tokens(self) -> int:
        """Tokens the aligner itself generated or trained on (evaluation excluded): its compute."""
        stages = self.manifest.get("stages") or {}
        evaluated = int((stages.get("evaluate") or {}).get("tokens_generated", 0))
        own = max(0, self.tokens_generated - evaluated) + self.tokens_trained
        cost = (self.artifact_link or {}).get("cost") or {}
        return own + int(cost.get("tokens_generated", 0)) + int(cost.get("tokens_trained", 0))

    # --- what distinguishes this run from its preset's defaults ----------------------------------------

    @property
    def variant(self) -> str:
        """Settings that differ from the preset ('' when none): runs with different variants are different rows."""
        return ", ".join(self.variant_parts())

    def variant_parts(self) -> list[str]:
        """The aligner options, then the benchmark options, that differ from what the preset resolves them to, then
        seed settings."""
        preset = PRESETS.get(self.preset)
        parts = []
        given = self.config.get("aligner_options") or {}
        defaults = preset_options(self.aligner, self.preset) if preset is not None else {}
        parts += [f"{key}={value}" for key, value in sorted(given.items()) if defaults.get(key, value) != value
                  or key not in defaults]
        if preset is not None and "benchmark_options" in self.config:  # sizes given with --eval-option
            sizes = preset_eval_options(self.config.get("benchmark") or self.benchmark, self.preset)
            parts += [f"{key}={value}" for key, value in sorted(self.config["benchmark_options"].items())
                      if sizes.get(key, value) != value or key not in sizes]
        if preset is not None and self.config.get("n_seeds") != preset.n_seeds:
            parts.append(f"seeds={self.config.get('n_seeds')}")
        if self.config.get("seeds_file"):
            parts.append(f"seeds_file={Path(self.config['seeds_file']).name}")
        return parts + self.artifact_seed_parts()

    def artifact_seed_parts(self) -> list[str]:
        """An evaluated artifact's seeds, where they differ from what `harness run` of this benchmark would use:
        another seed set, a seeds file, one seed domain."""
        seeds = (self.artifact_link or {}).get("seeds") or {}
        benchmark = self.config.get("benchmark") or self.benchmark
        try:
            default = registry.get("benchmarks", benchmark).default_seeds
        except HarnessError:
            default = None
        parts = []
        if seeds.get("seed_set") and seeds["seed_set"] != default:
            parts.append(f"seed_set={seeds['seed_set']}")
        if seeds.get("seeds_file"):
            parts.append(f"seeds_file={seeds['seeds_file']}")
        if seeds.get("seed_domain"):
            parts.append(f"seed_domain={seeds['seed_domain']}")
        return parts

    @property
    def iterations(self) -> int | None:
        """How many iterations an iterative aligner ran (ISARA, SPIN, ...); None for one-shot aligners."""
        history = (self.document.get("aligned") or {}).get("iterations")
        if isinstance(history, list):
            return len(history)
        if isinstance(history, int):
            return history
        return None

    def seed_domains(self) -> set[str]:
        """The target domains of the seeds this run was aligned with (generic domains left out)."""
        explicit = ((self.config.get("aligner_options") or {}).get("seed_domain") or self.manifest.get("seed_domain")
                    or ((self.artifact_link or {}).get("seeds") or {}).get("seed_domain"))
        if explicit:
            return {str(explicit)}
        seeds = self.path / "seeds.json"
        if self.embedded_records is not None or not seeds.exists():
            return set()
        try:
            examples = json.loads(seeds.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return set()
        return {e.get("domain", "general") for e in examples} - GENERIC_SEED_DOMAINS

    def provenance(self) -> dict[str, Any]:
        """What a leaderboard row shows about where this number came from."""
        return {
            "run": str(self.path), "benchmark": self.benchmark, "aligner": self.aligner, "model": self.model,
            "preset": self.preset, "limit": self.limit, "seed": self.seed, "variant": self.variant,
            "judge": self.judge, "config_hash": self.config_hash, "config": self.config,
            "versions": self.manifest.get("versions"), "hashes": self.manifest.get("hashes"),
            "model_source": self.manifest.get("model"), "data_version": self.data_version,
            "data_sources": [{k: s.get(k) for k in ("dataset", "source", "version", "sha256")}
                             for s in self.manifest.get("data_sources") or []],
            "hardware": self.manifest.get("hardware"), "wall_s": self.wall_s, "cache_hits": self.cache_hits,
            "tokens_generated": self.tokens_generated, "tokens_trained": self.tokens_trained,
            "samples": str(self.samples_path) if self.samples_path else None,
        }


def preset_options(aligner: str, preset: str) -> dict[str, Any]:
    """What an aligner's options resolve to under a preset with nothing given on the command line."""
    try:
        return as_dict(aligner_options(aligner, preset))
    except HarnessError:  # an aligner whose plugin is not installed here: every recorded option shows
        return {}


def preset_eval_options(benchmark: str, preset: str) -> dict[str, Any]:
    """What a benchmark's options resolve to under a preset with nothing given on the command line."""
    try:
        return as_dict(benchmark_options(benchmark, preset))
    except HarnessError:
        return {}


def data_fingerprint(sources: list[dict]) -> str:
    content = sorted((s.get("dataset"), s.get("sha256") or s.get("version") or s.get("location")) for s in sources)
    return hash_json(content)[:12]


def read_json(path: Path) -> Any:
    return read_json_file(path, "run file")


REQUIRED_FIELDS = ("benchmark", "aligner", "model", "metrics")


def checked(run: RunRecord, source: Path) -> RunRecord:
    missing = [key for key in REQUIRED_FIELDS if key not in run.document]
    if missing or not isinstance(run.config, dict) or not isinstance(run.manifest, dict):
        raise HarnessError(f"{source}: malformed run results (missing {', '.join(missing) or 'config/manifest'}); "
                           "rerun the run or remove it from the report")
    if not isinstance(run.document.get("metric_specs"), list):
        raise HarnessError(f"{run.path} was written by an earlier version of harness (no MetricSpecs); convert it "
                           f"once with `harness upgrade {run.path}`")
    problem = malformed_field(run)
    if problem:
        raise HarnessError(f"{source}: malformed run results ({problem}); rerun the run or remove it from the report")
    return run


def malformed_field(run: RunRecord) -> str | None:
    """What is of the wrong type in a run's results (None when nothing is): names, metrics and MetricSpecs."""
    document = run.document
    for key in ("benchmark", "aligner", "model"):
        if not isinstance(document.get(key), str) or not document[key]:
            return f"{key} is {document.get(key)!r}, not a name"
    if not isinstance(document.get("preset", ""), str):
        return "preset is not a name"
    metrics = document.get("metrics")
    if not isinstance(metrics, dict) or not all(isinstance(v, dict) for v in metrics.values()):
        return "metrics is not a mapping of metric name to {value, ci95, n}"
    for value in metrics.values():
        if not isinstance(value.get("value"), (int, float, type(None))) or isinstance(value.get("value"), bool):
            return "a metric value is not a number"
    try:
        specs_from_document(document)
    except (TypeError, ValueError, AttributeError, KeyError):
        return "metric_specs holds something that is not a MetricSpec"
    return None


def load_run(path: Path | str) -> RunRecord:
    """A finished run directory, or a pinned baseline file written by `harness report --pin-baselines`."""
    path = Path(path)
    if path.is_file():
        data = read_json(path)
        if isinstance(data, dict) and str(data.get("format", "")).startswith("harness-baseline/") \
                and data.get("format") != BASELINE_FORMAT:
            raise HarnessError(f"{path} is a pinned baseline of an earlier format ({data.get('format')}); convert "
                               f"it once with `harness upgrade {path}`")
        if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
            raise HarnessError(f"{path} is neither a run directory nor a pinned baseline file ({BASELINE_FORMAT})")
        return checked(RunRecord(path, data.get("config"), data.get("manifest"), data.get("document") or {},
                                 embedded_records=data.get("records") or []), path)
    if not path.is_dir():
        raise HarnessError(f"{path}: no such run directory")
    if not (path / "metrics.json").exists():
        status = (read_json(path / "manifest.json") or {}).get("status") if (path / "manifest.json").exists() else None
        raise HarnessError(f"{path} holds no finished run (no metrics.json; status: {status or 'none'}); "
                           "finish it by rerunning its `harness run` command")
    document = read_json(path / "metrics.json")
    return checked(RunRecord(path, read_json(path / "config.json"), read_json(path / "manifest.json"),
                             document if isinstance(document, dict) else {}), path / "metrics.json")


def find_runs(paths: list[Path | str]) -> list[RunRecord]:
    """Every finished run under the given directories (a run directory itself, or any folder of runs).

    Unfinished runs found while searching are skipped with a note on stderr; a path that holds no finished
    run at all is an error.
    """
    runs: list[RunRecord] = []
    seen: set[Path] = set()
    for given in map(Path, paths):
        if given.is_file():
            runs.append(load_run(given))
            continue
        if not given.is_dir():
            raise HarnessError(f"{given}: no such directory")
        roots = [config.parent for config in sorted(given.rglob("config.json"))
                 if (config.parent / "manifest.json").exists()
                 and "artifacts" not in config.parent.relative_to(given).parts]
        finished = [root for root in roots if (root / "metrics.json").exists()]
        for root in roots:
            if root not in finished:
                print(f"harness: skipping unfinished run {root}", file=sys.stderr)
        if not finished:
            raise HarnessError(f"{given} holds no finished run (looked for run directories with metrics.json)")
        for root in finished:
            if root.resolve() not in seen:
                seen.add(root.resolve())
                runs.append(load_run(root))
    return runs
