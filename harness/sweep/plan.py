"""Study plans: models x aligners (with options) x benchmarks x training seeds at one preset, as YAML.

    models: [smollm2-135m-instruct]
    aligners: [none, sft-seeds, {isara: {iterations: 2}}]
    benchmarks: [safety, truthfulqa]
    seeds: [0, 1, 2]
    preset: tiny

Optional keys: judges (benchmark -> judge), seed_set (a built-in seed set for every alignment, or `auto`: each
benchmark's own, alignments shared by benchmarks with the same set), limit, eval_options (benchmark -> options),
backend, backend_options (e.g. a server's base_url), retries, resources (cpus, gpus, memory_gb of each job on Ray), title. Every name and value is checked
before any job runs; an error names the plan's line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import registry
from harness.config import PRESETS, aligner_options, benchmark_options
from harness.errors import HarnessError
from harness.fileio import parse_yaml_text, read_text_file
from harness.judges.build import judge_option_values
from harness.seeds import builtin_seed_file

KEYS = ("models", "aligners", "benchmarks", "seeds", "preset", "judges", "seed_set", "seed_domains", "limit",
        "eval_options", "backend", "backend_options", "retries", "resources", "title", "description")
REQUIRED = ("models", "aligners", "benchmarks", "seeds", "preset")
AUTO_SEED_SET = "auto"
PLAN_DIR = Path(__file__).resolve().parents[1] / "plans"  # built-in plans, package data


@dataclass(frozen=True)
class Resources:
    """What one job asks a Ray cluster for."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float | None = None


@dataclass(frozen=True)
class AlignerEntry:
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The aligner's name, plus a short hash of its options when it has any (two entries may differ only there)."""
        from harness.hashing import hash_json

        return self.name if not self.options else f"{self.name}-{hash_json(self.options)[:8]}"


@dataclass
class Plan:
    source: str
    models: list[str]
    aligners: list[AlignerEntry]
    benchmarks: list[str]
    seeds: list[int]
    preset: str
    judges: dict[str, str] = field(default_factory=dict)
    seed_set: str = AUTO_SEED_SET
    # One alignment per target domain of the seed set (domain generalization); [None]: one on the whole set.
    seed_domains: list[str | None] = field(default_factory=lambda: [None])
    limit: int | None = None
    eval_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    backend: str = "hf"
    backend_options: dict[str, Any] = field(default_factory=dict)
    retries: int = 1
    resources: Resources = field(default_factory=Resources)
    title: str = ""


class Lines:
    """Where each value of a YAML document starts (1-based lines), by its path of keys and list positions."""

    def __init__(self, text: str):
        self.lines: dict[tuple, int] = {}
        try:
            root = yaml.compose(text)
        except yaml.YAMLError:
            root = None
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
                self.lines[path + (name, "<key>")] = key.start_mark.line + 1
                self._walk(value, path + (name,))
        elif isinstance(node, yaml.SequenceNode):
            for index, value in enumerate(node.value):
                self._walk(value, path + (index,))

    def at(self, *path: Any) -> int | None:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path)


def builtin_plans() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PLAN_DIR.glob("*.yaml"))}


def resolve_plan_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise HarnessError(f"plan file {path} does not exist")
        return path
    plans = builtin_plans()
    if name_or_path not in plans:
        raise HarnessError(f"unknown plan {name_or_path!r}: not a file, and not a built-in plan "
                           f"({', '.join(plans) or 'none'})")
    return plans[name_or_path]


def load_plan(name_or_path: str) -> Plan:
    path = resolve_plan_path(name_or_path)
    text = read_text_file(path, "plan file")
    data = parse_yaml_text(text, f"plan file {path}")
    return PlanReader(path, data, Lines(text)).read()


class PlanReader:
    def __init__(self, path: Path, data: Any, lines: Lines):
        self.path, self.data, self.lines = path, data, lines

    def fail(self, message: str, *where: Any) -> HarnessError:
        line = self.lines.at(*where)
        return HarnessError(f"plan {self.path}" + (f" line {line}" if line else "") + f": {message}")

    def read(self) -> Plan:
        data = self.data
        if not isinstance(data, dict):
            raise self.fail("expected a mapping with models, aligners, benchmarks, seeds and preset")
        for key in data:
            if key not in KEYS:
                raise self.fail(f"unknown key {key!r}; known: {', '.join(KEYS)}", key, "<key>")
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise self.fail(f"missing {', '.join(missing)} (a plan needs {', '.join(REQUIRED)})")
        preset = self.name(data["preset"], "preset", ("preset",))
        if preset not in PRESETS:
            raise self.fail(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}", "preset")
        backend = self.name(data.get("backend", "hf"), "backend", ("backend",))
        self.registered("backends", backend, "backend")
        backend_options = self.backend_options(backend)
        models = [self.name(m, "model", ("models", i)) for i, m in enumerate(self.items("models"))]
        benchmarks = [self.name(b, "benchmark", ("benchmarks", i)) for i, b in enumerate(self.items("benchmarks"))]
        for i, name in enumerate(benchmarks):
            self.registered("benchmarks", name, "benchmarks", i)
        aligners = [self.aligner(entry, i, preset) for i, entry in enumerate(self.items("aligners"))]
        seeds = [self.whole(s, "seed", 0, "seeds", i) for i, s in enumerate(self.items("seeds"))]
        for values, what in ((models, "model"), (benchmarks, "benchmark"), (seeds, "seed"),
                             ([a.label for a in aligners], "aligner")):
            doubled = sorted({str(v) for v in values if values.count(v) > 1})
            if doubled:
                raise self.fail(f"{what} {doubled[0]} is listed twice", what + "s")
        limit = data.get("limit")
        plan = Plan(source=str(self.path), models=models, aligners=aligners, benchmarks=benchmarks, seeds=seeds,
                    preset=preset, backend=backend, backend_options=backend_options, seed_set=self.seed_set(data.get("seed_set", AUTO_SEED_SET)),
                    limit=None if limit is None else self.whole(limit, "limit", 1, "limit"),
                    retries=self.whole(data.get("retries", 1), "retries", 0, "retries"),
                    title=str(data.get("title") or ""))
        plan.seed_domains = self.seed_domains(plan.seed_set)
        plan.judges = self.judges(benchmarks)
        plan.eval_options = self.eval_options(benchmarks, preset)
        plan.resources = self.resources()
        return plan

    def items(self, key: str) -> list:
        value = self.data[key]
        if not isinstance(value, list) or not value:
            raise self.fail(f"{key}: expected a non-empty list", key)
        return value

    def name(self, value: Any, what: str, where: tuple) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{what}: expected a name, got {value!r}", *where)
        return value.strip()

    def whole(self, value: Any, what: str, low: int, *where: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(f"{what}: expected a whole number of at least {low}, got {value!r}", *where)
        return value

    def registered(self, kind: str, name: str, *where: Any) -> None:
        if name not in registry.names(kind):
            raise self.fail(f"unknown {kind[:-1]} {name!r}; known: {', '.join(registry.names(kind))}", *where)

    def aligner(self, entry: Any, index: int, preset: str) -> AlignerEntry:
        where = ("aligners", index)
        if isinstance(entry, dict):
            if len(entry) != 1:
                raise self.fail("an aligner with options is one mapping {name: {option: value}}", *where)
            name, options = next(iter(entry.items()))
            options = options or {}
            if not isinstance(options, dict):
                raise self.fail(f"aligner {name}: options must be a mapping of option names to values", *where)
        else:
            name, options = entry, {}
        name = self.name(name, "aligner", where)
        self.registered("aligners", name, *where)
        try:
            aligner_options(name, preset, {str(k): v for k, v in options.items()}, flag=f"aligner {name}:")
        except HarnessError as exc:
            raise self.fail(str(exc), *where, name) from None
        return AlignerEntry(name, {str(k): v for k, v in options.items()})

    def seed_set(self, value: Any) -> str:
        name = self.name(value, "seed_set", ("seed_set",))
        if name != AUTO_SEED_SET:
            try:
                builtin_seed_file(name)
            except HarnessError:
                raise self.fail(f"unknown seed set {name!r}; use auto or a built-in set (safety, truthfulqa, "
                                "alpacaeval)", "seed_set") from None
        return name

    def seed_domains(self, seed_set: str) -> list[str | None]:
        from harness.align_run import seed_domains
        from harness.seeds import load_seeds

        given = self.data.get("seed_domains")
        if given is None:
            return [None]
        itself = [b for b in self.data.get("benchmarks") or [] if isinstance(b, str)
                  and getattr(registry.get("benchmarks", b), "aligns_itself", False)]
        if itself:
            raise self.fail(f"seed_domains: benchmark {itself[0]} already aligns once per seed domain itself; "
                            "list a benchmark such as safety instead", "seed_domains")
        if seed_set == AUTO_SEED_SET:
            raise self.fail("seed_domains needs one seed set: name it with seed_set (e.g. seed_set: safety)",
                            "seed_domains")
        known = seed_domains(load_seeds(builtin_seed_file(seed_set)))
        if given == "all":
            return list(known)
        if not isinstance(given, list) or not given:
            raise self.fail("seed_domains: expected all or a non-empty list of domains", "seed_domains")
        for index, domain in enumerate(given):
            if domain not in known:
                raise self.fail(f"seed domain {domain!r} is not in seed set {seed_set}; its domains: "
                                f"{', '.join(known)}", "seed_domains", index)
        return [str(d) for d in given]

    def judges(self, benchmarks: list[str]) -> dict[str, str]:
        given = self.data.get("judges") or {}
        if not isinstance(given, dict):
            raise self.fail("judges: expected a mapping of benchmark to judge", "judges")
        for benchmark, judge in given.items():
            if benchmark not in benchmarks:
                raise self.fail(f"judges: {benchmark!r} is not one of the plan's benchmarks", "judges", benchmark)
            judge = self.name(judge, "judge", ("judges", benchmark))
            self.registered("judges", judge, "judges", benchmark)
            if not registry.get("benchmarks", benchmark).judge_roles:
                raise self.fail(f"judges: benchmark {benchmark} uses no judge", "judges", benchmark)
            try:
                judge_option_values(judge, {})
            except HarnessError as exc:
                raise self.fail(str(exc), "judges", benchmark) from None
        return {str(b): str(j) for b, j in given.items()}

    def eval_options(self, benchmarks: list[str], preset: str) -> dict[str, dict[str, Any]]:
        given = self.data.get("eval_options") or {}
        if not isinstance(given, dict):
            raise self.fail("eval_options: expected a mapping of benchmark to options", "eval_options")
        for benchmark, options in given.items():
            if benchmark not in benchmarks:
                raise self.fail(f"eval_options: {benchmark!r} is not one of the plan's benchmarks", "eval_options",
                                benchmark)
            if not isinstance(options, dict):
                raise self.fail(f"eval_options: {benchmark}: expected a mapping of option names to values",
                                "eval_options", benchmark)
            try:
                benchmark_options(benchmark, preset, options, flag=f"eval_options {benchmark}:")
            except HarnessError as exc:
                raise self.fail(str(exc), "eval_options", benchmark) from None
        return {str(b): dict(o) for b, o in given.items()}

    def backend_options(self, backend: str) -> dict[str, Any]:
        from harness.models.loading import backend_option_values

        given = self.data.get("backend_options") or {}
        if not isinstance(given, dict):
            raise self.fail("backend_options: expected a mapping of option names to values", "backend_options")
        try:
            return backend_option_values(backend, {str(k): v for k, v in given.items()})
        except HarnessError as exc:
            raise self.fail(str(exc), "backend_options") from None

    def resources(self) -> Resources:
        given = self.data.get("resources") or {}
        if not isinstance(given, dict):
            raise self.fail("resources: expected a mapping with cpus, gpus, memory_gb", "resources")
        values: dict[str, float] = {}
        for key, value in given.items():
            if key not in ("cpus", "gpus", "memory_gb"):
                raise self.fail(f"resources: unknown key {key!r}; known: cpus, gpus, memory_gb", "resources", key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
                raise self.fail(f"resources: {key} must be a non-negative number, got {value!r}", "resources", key)
            values[key] = float(value)
        return Resources(**values)
