"""`harness align`: one alignment written as a reusable artifact (see harness/artifact.py)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from harness import progress, registry
from harness.aligner import AlignContext, seeds_hash
from harness.artifact import Artifact, artifact_key, open_artifact, save_aligned
from harness.config import DEFAULT_MODEL, aligner_options, get_preset
from harness.decontamination import SCOPES, collect_items
from harness.embedding import EMBEDDER_NAME, embed
from harness.errors import HarnessError
from harness.fileio import path_component
from harness.hashing import hash_file, hash_json
from harness.models.loading import load_model
from harness.options import Layer, as_dict, resolve
from harness.seeds import builtin_seed_file, load_seeds, sample_seeds
from harness.store import Cache, RunStore
from harness.types import Example

DEFAULT_SEED_SET = "safety"
GENERIC_DOMAINS = frozenset({"benign", "general"})  # kept beside any one target domain


@dataclass
class AlignConfig:
    """Everything that determines an alignment artifact. Its hash identifies the artifact directory."""

    aligner: str
    model: str = DEFAULT_MODEL
    backend: str = "hf"
    backend_options: dict[str, Any] = field(default_factory=dict)  # see RunConfig.backend_options
    preset: str = "demo"
    seed: int = 0
    n_seeds: int | None = None
    seed_set: str = DEFAULT_SEED_SET  # a built-in seed set (harness/seeds/<name>.jsonl) unless seeds_file is given
    seeds_file: str | None = None
    seeds_sha256: str | None = None
    # Align on one target domain's seeds only (plus the generic ones, `benign`/`general`): domain generalization.
    seed_domain: str | None = None
    aligner_options: dict[str, Any] = field(default_factory=dict)
    # Benchmarks whose evaluation items the alignment is checked against (None: every registered benchmark).
    decontaminate: list[str] | None = None
    decontamination_scope: str = "preset"
    limit: int | None = None  # with scope preset: at most N items of each kind, as `harness eval --limit N`

    def to_dict(self) -> dict[str, Any]:
        config = {"kind": "alignment", **asdict(self)}
        if not config["backend_options"]:
            del config["backend_options"]  # artifacts made before backends had options keep their hash
        return config

    def options(self) -> Any:
        """The aligner's options as its typed dataclass."""
        options_class = registry.get("aligners", self.aligner).options_class
        return resolve(options_class, [Layer("config", self.aligner_options, strict=True)], f"aligner {self.aligner}")

    @classmethod
    def from_preset(cls, aligner: str, preset: str, *, options: Mapping[str, Any] | None = None,
                    **overrides: Any) -> "AlignConfig":
        config = cls(aligner=aligner, preset=preset, **overrides)
        if config.n_seeds is None:
            config.n_seeds = get_preset(preset).n_seeds
        if config.decontamination_scope not in SCOPES:
            raise HarnessError(f"--decontaminate-scope {config.decontamination_scope!r}: expected one of "
                               f"{', '.join(SCOPES)}")
        config.aligner_options = as_dict(aligner_options(aligner, preset, options))
        return config


def align_seeds(config: AlignConfig) -> tuple[list[Example], Path]:
    path = Path(config.seeds_file) if config.seeds_file else builtin_seed_file(config.seed_set)
    examples = load_seeds(path)
    if config.seed_domain is not None:
        examples = of_domain(examples, config.seed_domain, path)
    return sample_seeds(examples, config.n_seeds, config.seed), path


def seed_domains(examples: list[Example]) -> list[str]:
    """The target domains of a seed set (the generic ones, kept with every domain, left out)."""
    return sorted({e.domain for e in examples} - GENERIC_DOMAINS)


def of_domain(examples: list[Example], domain: str, path: Path) -> list[Example]:
    """The seeds of one target domain, with the generic ones: seeds that are all refusals would teach a model to
    refuse everything, which would pass for perfect generalization."""
    if domain not in seed_domains(examples):
        raise HarnessError(f"seed domain {domain!r} is not in {path.name}; its domains: "
                           f"{', '.join(seed_domains(examples))}")
    return [e for e in examples if e.domain == domain or e.domain in GENERIC_DOMAINS]


def default_artifact_dir(config: AlignConfig, key: str) -> Path:
    domain = f"-{config.seed_domain}" if config.seed_domain else ""
    name = f"{config.aligner}{domain}-{config.preset}-seed{config.seed}-{key[:8]}"
    return Path("runs") / "artifacts" / path_component(config.model) / path_component(name)


def execute_align(config: AlignConfig, out_dir: Path | None = None, backend: Any = None) -> Artifact:
    """Aligns (or resumes an interrupted alignment) into an artifact directory; a finished one is returned as is."""
    from harness.runner import (backend_settings, check_seed_overlap, hardware, outcome_recorded, package_versions,
                                peak_memory_mb)

    started = time.perf_counter()
    aligner = registry.get("aligners", config.aligner)()
    options = config.options()
    seeds, seeds_path = align_seeds(config)
    config = replace(config, seeds_sha256=hash_file(seeds_path))
    key = artifact_key(config.model, config.backend, config.aligner, config.aligner_options, seeds, config.seed)
    root = Path(out_dir) if out_dir else default_artifact_dir(config, key)
    if (root / "manifest.json").is_file() and (root / "aligned.json").is_file():
        with RunStore(root, config.to_dict()):  # the same config, or a clear refusal
            pass
        progress.say(f"artifact {root} is finished; reusing it")
        return open_artifact(root)
    items, decontamination = collect_items(config.decontaminate, config.preset, config.seed, config.limit,
                                           config.decontamination_scope)
    vectors = embed([item.prompt for item in items])
    check_seed_overlap(seeds, items, vectors)
    with RunStore(root, config.to_dict()) as store:
        progress.say(f"artifact directory: {store.root} (decontaminated against {len(items)} evaluation items)")
        store.write_json("seeds.json", [s.to_dict() for s in seeds])
        if backend is None:
            with store.stage("load_model"):
                backend = load_model(config.backend, config.model, config.backend_options)
        store.update_manifest(
            kind="alignment", status="running", config=config.to_dict(), preset=config.preset,
            versions=package_versions(), hardware=hardware(), embedder=EMBEDDER_NAME,
            model={"name": config.model, "source": backend.spec.source, "sha256": backend.spec.sha256,
                   "prompt_format": backend.prompt_format.kind},
            backend=backend_settings(backend, config.backend), key=key,
            hashes={"seeds_file": config.seeds_sha256, "seeds": seeds_hash(seeds), "seeds_path": seeds_path.name},
            n_seeds=len(seeds), decontamination=decontamination.summary(), plugins=registry.plugins())
        cache = Cache()
        ctx = AlignContext(backend=backend, seeds=seeds, options=options, seed=config.seed, store=store, cache=cache,
                           eval_prompts=[item.prompt for item in items], eval_vectors=vectors)
        with outcome_recorded(store):
            with store.stage("align"):
                aligned = aligner.align(ctx)
            save_aligned(store.root, aligned, {
                "key": key, "model": config.model, "model_sha256": backend.spec.sha256, "backend": config.backend,
                "aligner": config.aligner, "aligner_options": config.aligner_options, "seed": config.seed,
                "preset": config.preset, "n_seeds": len(seeds), "seeds_sha256": seeds_hash(seeds),
                "seed_set": None if config.seeds_file else config.seed_set, "seed_domain": config.seed_domain,
                "seeds_file": seeds_path.name if config.seeds_file else None,
                "prompt_hash": hash_json(aligned.prompts(["<question>"]))}, decontamination)
        artifact = open_artifact(store.root)
        earlier_wall = sum(s.get("wall_s", 0) for k, s in store.earlier_stages.items() if "/" not in k)
        stages = store.manifest["stages"]
        store.update_manifest(
            status="complete", wall_s=round(time.perf_counter() - started + earlier_wall, 3),
            cache_hits=cache.hits + store.manifest.get("cache_hits", 0), peak_memory_mb=round(peak_memory_mb(), 1),
            content_sha256=artifact.content_sha256(),
            tokens={"generated": sum(s.get("tokens_generated", 0) for k, s in stages.items() if "/" in k),
                    "trained": sum(s.get("tokens_trained", 0) for k, s in stages.items() if "/" in k)})
    return artifact
