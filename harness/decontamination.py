"""The evaluation items an alignment is checked against, declared before it starts.

Aligners drop generated questions that copy or nearly copy an evaluation item (harness/loop/filters.py), and
seeds that do are refused. An alignment made for one run checks against that run's items; an artifact made by
`harness align` checks against the items of every registered benchmark (or those named), so it can be evaluated
anywhere those items are used. The set is stored with the artifact as normalised-prompt hashes; evaluating the
artifact on an item outside it is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from harness import progress, registry
from harness.config import benchmark_options
from harness.errors import HarnessError
from harness.hashing import hash_bytes
from harness.loop.filters import normalise
from harness.options import as_dict
from harness.types import EvalItem

SCOPES = ("preset", "full")  # the preset's evaluation sizes (and seed), or every item each benchmark has


def prompt_key(prompt: str) -> str:
    return hash_bytes(normalise(prompt).encode("utf-8"))[:20]


@dataclass
class DecontaminationSet:
    """Which benchmarks' items (under which options, limit and seed) an alignment was checked against."""

    sources: list[dict[str, Any]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    def missing(self, items: Iterable[EvalItem]) -> list[EvalItem]:
        return [item for item in items if prompt_key(item.prompt) not in self.keys]

    def to_dict(self) -> dict[str, Any]:
        return {"sources": self.sources, "prompt_keys": sorted(self.keys)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "DecontaminationSet":
        if (not isinstance(data, dict) or not isinstance(data.get("sources"), list)
                or not isinstance(data.get("prompt_keys"), list)
                or not all(isinstance(k, str) for k in data["prompt_keys"])):
            raise HarnessError(f"{where}: malformed decontamination set (expected sources and prompt_keys lists)")
        return cls(list(data["sources"]), set(data["prompt_keys"]))

    def summary(self) -> dict[str, Any]:
        return {"n_prompts": len(self.keys),
                "benchmarks": [{k: s[k] for k in ("benchmark", "n_items", "unavailable") if k in s}
                               for s in self.sources]}


def collect_items(benchmarks: list[str] | None, preset: str, seed: int, limit: int | None,
                  scope: str = "preset") -> tuple[list[EvalItem], DecontaminationSet]:
    """The evaluation items of `benchmarks` (None: every registered benchmark; one whose data cannot be found is
    recorded as unavailable rather than stopping the alignment) and the set they make."""
    if scope not in SCOPES:
        raise HarnessError(f"decontamination scope {scope!r}: expected one of {', '.join(SCOPES)}")
    names = benchmarks if benchmarks is not None else registry.names("benchmarks")
    for name in names:
        registry.get("benchmarks", name)  # an unknown name fails before any work
    items: dict[str, EvalItem] = {}
    decontamination = DecontaminationSet()
    for name in names:
        benchmark_class = registry.get("benchmarks", name)
        if scope == "full":
            options, size_limit = benchmark_class.options_class(), None  # defaults: every item (none = all)
        else:
            options, size_limit = benchmark_options(name, preset), limit
        source: dict[str, Any] = {"benchmark": name, "scope": scope, "options": as_dict(options),
                                  "limit": size_limit, "seed": seed}
        try:
            found, _ = benchmark_class().items(options, size_limit, seed)
        except HarnessError as exc:
            if benchmarks is not None:
                raise
            progress.say(f"decontamination: {name} skipped, its data is not available ({exc})")
            decontamination.sources.append({**source, "unavailable": str(exc)[:300]})
            continue
        for item in found:
            items.setdefault(prompt_key(item.prompt), item)
        decontamination.sources.append({**source, "n_items": len(found)})
    decontamination.keys = set(items)
    return list(items.values()), decontamination
