"""A plan's jobs: one align job per model x aligner x seed set x training seed, writing an artifact, and one eval
job per alignment x benchmark after it (a benchmark that aligns per seed domain itself is a run job instead).

Jobs are plain data (JSON), so a Ray worker can run one as well as this process can.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import registry
from harness.fileio import path_component
from harness.sweep.plan import AUTO_SEED_SET, Plan


@dataclass
class Job:
    id: str
    kind: str  # align | eval | run
    out: str  # the artifact or run directory (absolute)
    config: dict[str, Any]  # AlignConfig fields (align) or RunConfig fields (eval, run)
    depends: list[str] = field(default_factory=list)
    artifact: str | None = None  # eval: the artifact directory of the align job it depends on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_set_of(plan: Plan, benchmark: str) -> str:
    return registry.get("benchmarks", benchmark).default_seeds if plan.seed_set == AUTO_SEED_SET else plan.seed_set


def expand(plan: Plan, out: Path) -> list[Job]:
    """Every job of the plan, each alignment before the evaluations that need it."""
    out = Path(out).resolve()
    jobs: list[Job] = []
    for model in plan.models:
        for entry in plan.aligners:
            for seed in plan.seeds:
                for domain in plan.seed_domains:
                    jobs += jobs_of_alignment(plan, out, model, entry, seed, domain)
    return jobs


def jobs_of_alignment(plan: Plan, out: Path, model: str, entry: Any, seed: int, domain: str | None) -> list[Job]:
    """The align jobs of one (model, aligner, training seed, seed domain), one per seed set its benchmarks use,
    each followed by the evaluations of its benchmarks; a benchmark that aligns per domain itself is a run job."""
    from harness.align_run import AlignConfig
    from harness.config import RunConfig

    jobs: list[Job] = []
    label = entry.label + (f"-{domain}" if domain else "")
    by_seed_set: dict[str, list[str]] = {}
    for benchmark in plan.benchmarks:
        if getattr(registry.get("benchmarks", benchmark), "aligns_itself", False):
            config = RunConfig.from_preset(entry.name, benchmark, plan.preset, options=entry.options,
                                           eval_options=plan.eval_options.get(benchmark), model=model,
                                           backend=plan.backend, backend_options=plan.backend_options,
                                           seed=seed, limit=plan.limit,
                                           judge=judge_of(plan, benchmark))
            jobs.append(Job(f"run:{benchmark}:{model}:{label}:seed{seed}", "run",
                            str(run_dir(out, benchmark, model, label, plan.preset, seed)), config.to_dict()))
        else:
            by_seed_set.setdefault(seed_set_of(plan, benchmark), []).append(benchmark)
    for seed_set, benchmarks in by_seed_set.items():
        align = AlignConfig.from_preset(entry.name, plan.preset, options=entry.options, model=model,
                                        backend=plan.backend, backend_options=plan.backend_options, seed=seed,
                                        seed_set=seed_set, seed_domain=domain,
                                        decontaminate=list(benchmarks), limit=plan.limit)
        name = f"{label}-{seed_set}-{plan.preset}-seed{seed}"
        artifact = out / "artifacts" / path_component(model) / path_component(name)
        align_id = f"align:{model}:{label}:{seed_set}:seed{seed}"
        jobs.append(Job(align_id, "align", str(artifact), align.to_dict()))
        for benchmark in benchmarks:
            jobs.append(Job(f"eval:{benchmark}:{model}:{label}:seed{seed}", "eval",
                            str(run_dir(out, benchmark, model, label, plan.preset, seed)),
                            {"benchmark": benchmark, "preset": plan.preset, "seed": seed, "limit": plan.limit,
                             "judge": judge_of(plan, benchmark), "eval_options": plan.eval_options.get(benchmark) or {},
                             **({"backend_options": plan.backend_options} if plan.backend_options else {})},
                            depends=[align_id], artifact=str(artifact)))
    return jobs


def judge_of(plan: Plan, benchmark: str) -> str | None:
    return plan.judges.get(benchmark) or registry.get("benchmarks", benchmark).default_judge()


def run_dir(out: Path, benchmark: str, model: str, label: str, preset: str, seed: int) -> Path:
    return out / "runs" / path_component(benchmark) / path_component(model) / path_component(
        f"{label}-{preset}-seed{seed}")


def is_finished(job: Job) -> bool:
    """Finished jobs are skipped: a complete manifest (and, for an alignment, its aligned.json)."""
    from harness.fileio import read_json_file

    root = Path(job.out)
    manifest = root / "manifest.json"
    if not manifest.is_file() or (job.kind == "align" and not (root / "aligned.json").is_file()):
        return False
    try:
        return (read_json_file(manifest, "manifest") or {}).get("status") == "complete"
    except Exception:
        return False


def run_job(job: Job, backends: dict | None = None) -> None:
    """Runs one job in this process (raises on failure). `backends` keeps loaded models between jobs."""
    from harness.align_run import AlignConfig, execute_align
    from harness.artifact import open_artifact
    from harness.config import RunConfig
    from harness.judges.build import judge_option_values
    from harness.runner import execute

    backends = {} if backends is None else backends
    if job.kind == "align":
        config_data = {k: v for k, v in job.config.items() if k != "kind"}
        config = AlignConfig(**config_data)
        execute_align(config, Path(job.out), backend=shared_backend(backends, config))
    elif job.kind == "run":
        config = RunConfig(**job.config)
        execute(config, Path(job.out), backend=shared_backend(backends, config))
    else:
        artifact = open_artifact(Path(job.artifact))
        spec, judge = job.config, job.config["judge"]
        config = artifact.run_config(spec["benchmark"], spec["preset"], spec["seed"], limit=spec["limit"], judge=judge,
                                     judge_options=judge_option_values(judge, {}) if judge else {},
                                     eval_options=spec["eval_options"], backend_options=spec.get("backend_options", {}))
        execute(config, Path(job.out), backend=shared_backend(backends, config),
                artifact=artifact.root)


def shared_backend(backends: dict, config: Any) -> Any:
    """One loaded model per process: a job on another model replaces it (two would double the memory)."""
    from harness.hashing import hash_json
    from harness.models.loading import load_model

    key = (config.backend, config.model, hash_json(config.backend_options))
    if key not in backends:
        backends.clear()
        backends[key] = load_model(config.backend, config.model, config.backend_options)
    return backends[key]
