"""Generation through the content-addressed cache: finished prompts are never generated twice."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from harness import progress
from harness.hashing import hash_json
from harness.models.backend import Backend
from harness.store import Cache
from harness.types import Sampling

CHUNK = 32  # prompts generated (or items answered and judged) between writes: a kill loses at most one chunk
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def generation_key(fingerprint: str, prompt: str, sampling: Sampling) -> str:
    return hash_json({"model": fingerprint, "prompt": prompt, "sampling": asdict(sampling)})


def cached_generate(backend: Backend, prompts: list[str], sampling: Sampling, cache: Cache,
                    adapter: Path | None = None, batch_size: int = 8,
                    desc: str = "generate") -> tuple[list[dict], int]:
    """Generations for every prompt as dicts (text, n_tokens, finish, cached) and their total new tokens.

    The token count includes generations served from the cache: it is what the method costs, and a
    rerun or a resumed run reports the same cost as a fresh one."""
    fingerprint = backend.fingerprint(adapter)
    keys = [generation_key(fingerprint, p, sampling) for p in prompts]
    results: list[dict | None] = [cache.get(k) for k in keys]
    for result in results:
        if result is not None:
            result["cached"] = True
    todo = [i for i, r in enumerate(results) if r is None]
    with progress.bar(len(todo), desc) as bar:
        for chunk in chunks(todo):
            generations = backend.generate([prompts[i] for i in chunk], sampling, adapter, batch_size=batch_size)
            for i, generation in zip(chunk, generations):
                record = {"text": generation.text, "n_tokens": generation.n_tokens, "finish": generation.finish}
                cache.put(keys[i], record)
                results[i] = {**record, "cached": False}
            bar.update(len(chunk))
    done = [r for r in results if r is not None]
    return done, sum(r["n_tokens"] for r in done)
