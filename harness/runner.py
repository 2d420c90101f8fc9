"""One run: resolve model, data and seeds, align, evaluate, and write everything to the run directory."""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness import progress, registry
from harness.aligner import AlignContext, seeds_hash
from harness.artifact import Artifact, artifact_key, find_artifact, open_artifact
from harness.eval.loop import EvalContext
from harness.config import RunConfig, get_preset
from harness.embedding import EMBEDDER_NAME, embed
from harness.errors import HarnessError
from harness.fileio import path_component
from harness.hashing import hash_file, hash_json
from harness.judges.build import judges_for
from harness.loop.filters import normalise
from harness.models.loading import load_model
from harness.seeds import builtin_seed_file, load_seeds, sample_seeds
from harness.store import Cache, RunStore
from harness.types import Example, EvalItem

PACKAGES = ("harness", "torch", "transformers", "peft", "sentence-transformers", "faiss-cpu", "numpy")
SEED_OVERLAP_SIMILARITY = 0.95


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0],
                            "cpus": os.cpu_count()}
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def default_out_dir(config: RunConfig) -> Path:
    name = f"{config.aligner}-{config.preset}-seed{config.seed}-{hash_json(config.to_dict())[:8]}"
    return Path("runs") / path_component(config.benchmark) / path_component(config.model) / path_component(name)


def resolve_seeds(config: RunConfig, benchmark: Any) -> tuple[list[Example], Path]:
    path = Path(config.seeds_file) if config.seeds_file else builtin_seed_file(benchmark.default_seeds)
    return sample_seeds(load_seeds(path), config.n_seeds, config.seed), path


def check_seed_overlap(seeds: list[Example], items: list[EvalItem], eval_vectors: np.ndarray) -> None:
    """Seeds must not be (near) copies of evaluation items: that would leak the test set into training."""
    texts = {normalise(item.prompt): item for item in items}
    vectors = embed([s.question for s in seeds])
    for seed, vector in zip(seeds, vectors):
        item = texts.get(normalise(seed.question))
        if item is None and len(eval_vectors):
            best = int(np.argmax(eval_vectors @ vector))
            if float(eval_vectors[best] @ vector) >= SEED_OVERLAP_SIMILARITY:
                item = items[best]
        if item is not None:
            raise HarnessError(f"seed question {seed.question[:60]!r} overlaps evaluation item {item.id}; "
                               "remove it from the seeds file")


def execute(config: RunConfig, out_dir: Path | None = None, backend: Any = None, artifact: Path | None = None,
            reuse_from: Path | None = None) -> dict[str, Any]:
    """Run one configuration; returns the metrics document. `backend` lets callers share a loaded model.

    `artifact`: evaluate this aligned-model artifact (`harness eval`; config.artifact holds its key) instead of
    aligning. `reuse_from`: a folder of artifacts; one with this run's content key whose decontamination covers
    the run's items replaces the alignment (`harness run`)."""
    started = time.perf_counter()
    source = open_artifact(artifact) if artifact is not None else None
    preset = get_preset(config.preset)
    aligner = registry.get("aligners", config.aligner)()
    options = config.options()  # typed and checked: a bad value fails here, before any work
    benchmark_class = registry.get("benchmarks", config.benchmark)
    # Before any work: a judge that cannot fill a role, or a bad endpoint, fails fast.
    judges = judges_for(benchmark_class, config.judge, config.judge_options)
    benchmark = benchmark_class()
    eval_options = config.eval_options()
    items, sources = benchmark.items(eval_options, config.limit, config.seed)
    if not items:
        raise HarnessError(f"benchmark {config.benchmark} has no evaluation items with these settings")
    if source is not None:
        if getattr(benchmark, "aligns_itself", False):
            raise HarnessError(f"benchmark {config.benchmark} aligns once per seed domain itself; evaluate it with "
                               "`harness run`, not on an artifact")
        source.check_covers(items, config.benchmark)
        seeds, seeds_name = source.seeds, "artifact"
    else:
        seeds, seeds_path = resolve_seeds(config, benchmark)
        config = replace(config, seeds_sha256=hash_file(seeds_path))
        seeds_name = seeds_path.name
    store = RunStore(out_dir or default_out_dir(config), config.to_dict())
    progress.say(f"run directory: {store.root}")
    items_hash = hash_json([[i.id, i.prompt] for i in items])
    if store.manifest.get("hashes", {}).get("eval_items", items_hash) != items_hash:
        raise HarnessError(f"output directory {store.root} holds a run over other evaluation items (the data "
                           "sources or the preset changed); pass a new --out directory")
    eval_vectors = embed([item.prompt for item in items])
    check_seed_overlap(seeds, items, eval_vectors)
    store.write_json("seeds.json", [s.to_dict() for s in seeds])

    if backend is None:
        with store.stage("load_model"):
            backend = load_model(config.backend, config.model, config.backend_options)
    if not store.replay:
        store.update_manifest(
            status="running", config=config.to_dict(), preset=preset.name, versions=package_versions(),
            hardware=hardware(), data_sources=sources, embedder=EMBEDDER_NAME,
            model={"name": config.model, "source": backend.spec.source, "sha256": backend.spec.sha256,
                   "prompt_format": backend.prompt_format.kind},
            backend=backend_settings(backend, config.backend),
            hashes={"seeds_file": config.seeds_sha256, "seeds": seeds_hash(seeds), "seeds_path": seeds_name,
                    "eval_items": items_hash},
            n_seeds=len(seeds), n_eval_items=len(items), plugins=registry.plugins(),
        )
    cache = Cache()
    ctx = AlignContext(backend=backend, seeds=seeds, options=options, seed=config.seed, store=store,
                       cache=cache, eval_prompts=[i.prompt for i in items], eval_vectors=eval_vectors)
    eval_ctx = EvalContext(store=store, cache=cache, judges=judges, options=eval_options, seed=config.seed,
                           batch_size=config.eval_batch_size)
    with outcome_recorded(store):
        if getattr(benchmark, "aligns_itself", False):
            # e.g. domain generalization: one alignment per seed domain, each evaluated by the benchmark itself
            aligned, result = benchmark.run(aligner, ctx, items, eval_ctx)
        else:
            source = source or reusable_artifact(store, config, seeds, items, reuse_from)
            if source is not None:
                aligned = source.load(backend)
                if not store.replay:
                    store.update_manifest(artifact=source.link())
            else:
                with store.stage("align"):
                    aligned = aligner.align(ctx)
            with store.stage("evaluate") as usage:
                result = benchmark.evaluate(aligned, items, eval_ctx)
                usage.update(eval_ctx.usage)
                # Every answer's tokens, including those written by an earlier, interrupted attempt.
                usage["tokens_generated"] = max(usage.get("tokens_generated", 0),
                                                sum(r.get("n_tokens", 0) for r in store.read_samples("eval")))
    document = {"run": str(store.root), "benchmark": config.benchmark, "aligner": config.aligner,
                "model": config.model, "preset": config.preset, "limit": config.limit, **result,
                "aligned": aligned.description}
    store.write_json("metrics.json", document)
    if not store.replay:
        stages = store.manifest["stages"]
        earlier_wall = sum(s.get("wall_s", 0) for k, s in store.earlier_stages.items() if "/" not in k)
        store.update_manifest(
            status="complete", wall_s=round(time.perf_counter() - started + earlier_wall, 3),
            cache_hits=cache.hits + store.manifest.get("cache_hits", 0),
            peak_memory_mb=round(peak_memory_mb(), 1), prompt_hash=hash_json(aligned.prompts(["<question>"])),
            judge_requests=judge_traffic(judges),
            tokens={"generated": sum(s.get("tokens_generated", 0) for k, s in stages.items()
                                     if "/" in k or k == "evaluate"),
                    "trained": sum(s.get("tokens_trained", 0) for k, s in stages.items() if "/" in k)})
    document["wall_s"] = store.manifest["wall_s"]
    return document


def reusable_artifact(store: RunStore, config: RunConfig, seeds: list[Example], items: list[EvalItem],
                      search: Path | None) -> Artifact | None:
    """The artifact a `harness run` uses instead of aligning: the one it used before (a resumed or replayed run),
    or, for a run that has not started aligning, a finished one under `search` with its content key whose
    decontamination covers its items."""
    linked = store.manifest.get("artifact")
    if isinstance(linked, dict) and linked.get("path"):
        if not Path(linked["path"]).is_dir():
            raise HarnessError(f"run {store.root} was evaluated on artifact {linked['path']}, which is gone; restore it "
                               "or pass a new --out")
        return open_artifact(Path(linked["path"]))
    if search is None or any(name.startswith("align") for name in store.manifest["stages"]):
        return None
    key = artifact_key(config.model, config.backend, config.aligner, config.aligner_options, seeds, config.seed)
    found = find_artifact(search, key, items)
    if found is not None:
        progress.say(f"reusing artifact {found.root} (same model, aligner, options, seeds and seed)")
    return found


@contextmanager
def outcome_recorded(store: RunStore) -> Iterator[None]:
    """A run that stops before it completes says so in its manifest: interrupted (rerun to resume) or failed,
    with the error; a finished run replayed from its files keeps its record."""
    try:
        yield
    except KeyboardInterrupt:
        if not store.replay:
            store.update_manifest(status="interrupted")
        raise
    except Exception as exc:
        if not store.replay:
            store.update_manifest(status="failed", error=f"{type(exc).__name__}: {exc}"[:1000])
        raise


def judge_traffic(judges: dict[str, Any]) -> dict[str, Any]:
    """Per role, what a judge that talks to a server sent in this attempt: requests, retries, failed items."""
    return {role: judge.stats() for role, judge in judges.items() if callable(getattr(judge, "stats", None))}


def backend_settings(backend: Any, name: str) -> dict[str, Any]:
    """What the manifest records about the inference backend (engine, versions, dtype, device)."""
    settings = getattr(backend, "settings", None)
    return settings() if callable(settings) else {"backend": name}


