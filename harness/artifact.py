"""Aligned-model artifacts: what `harness align` writes and `harness eval` / `harness run` / `harness sweep` read.

An artifact directory is a run directory of an alignment (config.json, manifest.json with its cost, seeds.json,
samples/, artifacts/ with the PEFT adapter of every iteration) plus two files:

- aligned.json: the content key (model, backend, aligner, options, seeds, seed), the final adapter and the
  per-iteration checkpoints (paths inside the directory), the in-context example picker's state, the
  aligner's description;
- decontamination.json: the evaluation items it was checked against (see harness/decontamination.py).

Its content hash covers aligned.json and every adapter's files; evaluations link the artifact by path and hash.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.aligner import AlignedModel, seeds_hash
from harness.decontamination import DecontaminationSet
from harness.errors import HarnessError
from harness.fileio import read_json_file, write_json_atomic
from harness.hashing import hash_dir, hash_json
from harness.pickers import picker_state, restore_picker
from harness.types import EvalItem, Example

ALIGNED_FILE = "aligned.json"
DECONTAMINATION_FILE = "decontamination.json"
FORMAT = 1


def artifact_key(model: str, backend: str, aligner: str, aligner_options: dict[str, Any],
                 seeds: Sequence[Example], seed: int) -> str:
    """What identifies an alignment's result: the same key means the same training, so it may be reused."""
    return hash_json({"model": model, "backend": backend, "aligner": aligner, "aligner_options": aligner_options,
                      "seeds": seeds_hash(seeds), "seed": seed})


def save_aligned(root: Path, aligned: AlignedModel, identity: dict[str, Any],
                 decontamination: DecontaminationSet) -> None:
    """Writes aligned.json and decontamination.json. `identity`: key, model, model_sha256, backend, aligner,
    aligner_options, seed, preset, n_seeds, seeds_sha256."""
    root = Path(root).resolve()

    def inside(path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return str(Path(path).resolve().relative_to(root))
        except ValueError:
            raise HarnessError(f"aligner {identity['aligner']} left its adapter outside the artifact ({path}); "
                               "adapters must be written under ctx.artifacts()") from None

    write_json_atomic(root / DECONTAMINATION_FILE, decontamination.to_dict())
    write_json_atomic(root / ALIGNED_FILE, {
        "format": FORMAT, **identity, "adapter": inside(aligned.adapter),
        "checkpoints": [[iteration, inside(adapter)] for iteration, adapter in aligned.checkpoints],
        "picker": picker_state(aligned.example_picker), "description": aligned.description})


@dataclass
class Artifact:
    root: Path
    document: dict[str, Any]
    seeds: list[Example]
    decontamination: DecontaminationSet

    @property
    def key(self) -> str:
        return self.document["key"]

    def __getitem__(self, name: str) -> Any:
        return self.document[name]

    def adapter_paths(self) -> list[Path]:
        named = [self.document["adapter"]] + [adapter for _, adapter in self.document["checkpoints"]]
        return sorted({self.root / name for name in named if name})

    def content_sha256(self) -> str:
        parts = {"aligned": hash_json(self.document)}
        for path in self.adapter_paths():
            if not path.is_dir():
                raise HarnessError(f"artifact {self.root}: adapter {path.relative_to(self.root)} is missing")
            parts[str(path.relative_to(self.root))] = hash_dir(path)
        return hash_json(parts)

    def check_covers(self, items: list[EvalItem], benchmark: str) -> None:
        missing = self.decontamination.missing(items)
        if missing:
            raise HarnessError(
                f"artifact {self.root} was not decontaminated against {len(missing)} of the {len(items)} {benchmark} "
                f"items to evaluate (e.g. {missing[0].id}); align again with --decontaminate {benchmark} and this "
                "preset, seed and limit (or --decontaminate-scope full)")

    def load(self, backend: Any) -> AlignedModel:
        """The aligned model on `backend`, which must hold the base model the artifact was trained from."""
        sha = getattr(getattr(backend, "spec", None), "sha256", None)
        if self.document.get("model_sha256") and sha and sha != self.document["model_sha256"]:
            raise HarnessError(f"artifact {self.root} was made for another base model ({self.document['model']}, "
                               f"sha256 {self.document['model_sha256'][:12]}); the loaded model has {sha[:12]}")
        checkpoints = [(int(t), self.root / a if a else None) for t, a in self.document["checkpoints"]]
        return AlignedModel(backend, adapter=self.root / self.document["adapter"] if self.document["adapter"] else None,
                            example_picker=restore_picker(self.document["picker"], self.seeds),
                            description=self.document["description"], checkpoints=checkpoints)

    def align_cost(self) -> dict[str, Any]:
        """The alignment's recorded cost, which an evaluation of the artifact reports beside its own."""
        manifest = read_json_file(self.root / "manifest.json", "artifact manifest")
        manifest = manifest if isinstance(manifest, dict) else {}
        tokens = manifest.get("tokens") if isinstance(manifest.get("tokens"), dict) else {}
        return {"wall_s": manifest.get("wall_s"), "tokens_generated": tokens.get("generated", 0),
                "tokens_trained": tokens.get("trained", 0)}

    def run_config(self, benchmark: str, preset: str | None = None, seed: int | None = None, **settings: Any) -> Any:
        """The RunConfig of evaluating this artifact on `benchmark` (preset and seed default to the artifact's);
        `settings`: limit, judge, judge_options, eval_options, eval_batch_size, and backend (default: the
        artifact's; its adapter is a standard PEFT directory, so any backend that takes LoRA adapters will do)
        with backend_options."""
        from harness.config import RunConfig

        settings.setdefault("backend", self["backend"])
        config = RunConfig.from_preset(
            self["aligner"], benchmark, preset or self["preset"], model=self["model"],
            seed=self["seed"] if seed is None else seed, n_seeds=self["n_seeds"], seeds_sha256=self["seeds_sha256"],
            artifact=self.key, **settings)
        config.aligner_options = dict(self["aligner_options"])
        return config

    def link(self) -> dict[str, Any]:
        seeds = {name: self.document.get(name) for name in ("seed_set", "seed_domain", "seeds_file")}
        return {"path": str(self.root.resolve()), "key": self.key, "content_sha256": self.content_sha256(),
                "aligner": self.document["aligner"], "seeds": seeds, "cost": self.align_cost()}


REQUIRED = ("key", "model", "backend", "aligner", "aligner_options", "seed", "preset", "adapter", "checkpoints",
            "picker", "description")


def is_artifact(path: Path) -> bool:
    return (Path(path) / ALIGNED_FILE).is_file()


def open_artifact(path: Path) -> Artifact:
    """A finished artifact directory, read and checked (one clear line for anything that is not one)."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise HarnessError(f"artifact {path} does not exist (make one with `harness align --out {path}`)")
    if not (root / ALIGNED_FILE).is_file():
        manifest = root / "manifest.json"
        kind = (read_json_file(manifest, "manifest") or {}).get("kind") if manifest.is_file() else None
        if kind == "alignment" or (manifest.is_file() and kind is None and not (root / "metrics.json").exists()):
            raise HarnessError(f"artifact {path} is not finished: rerun its `harness align` command to resume it")
        raise HarnessError(f"{path} is not an aligned-model artifact (no aligned.json; a run directory?); make "
                           "one with `harness align`")
    document = read_json_file(root / ALIGNED_FILE, "artifact file")
    if not isinstance(document, dict) or document.get("format") != FORMAT or any(k not in document for k in REQUIRED):
        raise HarnessError(f"artifact {path}: {ALIGNED_FILE} is malformed or of another format version")
    seeds_data = read_json_file(root / "seeds.json", "artifact seeds") if (root / "seeds.json").is_file() else None
    try:
        seeds = [Example(**record) for record in seeds_data]
    except TypeError:
        raise HarnessError(f"artifact {path}: seeds.json is missing or malformed") from None
    decontamination = DecontaminationSet.from_dict(
        read_json_file(root / DECONTAMINATION_FILE, "artifact file") if (root / DECONTAMINATION_FILE).is_file()
        else None, f"artifact {path}")
    artifact = Artifact(root, document, seeds, decontamination)
    if seeds_hash(seeds) != document.get("seeds_sha256"):
        raise HarnessError(f"artifact {path}: seeds.json does not match the seeds it was trained on")
    return artifact


def find_artifact(search: Path, key: str, items: list[EvalItem]) -> Artifact | None:
    """A finished artifact under `search` with this key whose decontamination covers `items` (None: none)."""
    if not Path(search).is_dir():
        return None
    for candidate in sorted(Path(search).rglob(ALIGNED_FILE)):
        try:
            artifact = open_artifact(candidate.parent)
        except HarnessError:
            continue
        if artifact.key == key and not artifact.decontamination.missing(items):
            return artifact
    return None
