"""An in-memory backend for unit tests and contributors' examples: no model, no torch, fully deterministic.

Answers come from `respond(prompt, adapter)` (by default a canned text that names the adapter), log-likelihoods
from `score(context, continuation, adapter)` (by default a stable pseudo-random number per pair). Calls are
counted, so tests can check that cached work is not redone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness.hashing import hash_json
from harness.models.backend import Generation, Progress
from harness.models.embedded import ModelSpec
from harness.models.prompt_format import PromptFormat
from harness.types import Sampling

Responder = Callable[[str, Path | None], str]
Scorer = Callable[[str, str, Path | None], float]


def default_response(prompt: str, adapter: Path | None) -> str:
    return f"I am {'the base model' if adapter is None else Path(adapter).name}. " + prompt[-24:].strip()


def default_score(context: str, continuation: str, adapter: Path | None) -> float:
    return -int(hash_json([context, continuation, str(adapter)])[:6], 16) / 0xFFFFFF * 10.0


class FakeBackend:
    description = "in-memory deterministic backend for tests (no model)"

    def __init__(self, respond: Responder = default_response, score: Scorer = default_score, name: str = "fake"):
        self.spec = ModelSpec(name=name, path=Path("."), prompt_format="qa", source=f"fake:{name}", sha256=None)
        self.prompt_format = PromptFormat("qa")
        self.respond, self.score = respond, score
        self.calls = {"generate": 0, "loglikelihood": 0}

    def generate(self, prompts: list[str], sampling: Sampling, adapter: Path | None = None, *,
                 batch_size: int = 8, progress: Progress | None = None) -> list[Generation]:
        self.calls["generate"] += len(prompts)
        results = []
        for prompt in prompts:
            words = self.respond(prompt, adapter).split(" ")[:sampling.max_new_tokens]
            text = " ".join(words)
            stops = [text.find(s) for s in sampling.stop if s and s in text]
            finish = "stop" if stops or len(words) < sampling.max_new_tokens else "length"
            results.append(Generation(text[:min(stops)] if stops else text, len(words), finish))
        if progress:
            progress(len(prompts))
        return results

    def loglikelihood(self, pairs: list[tuple[str, str]], adapter: Path | None = None, *,
                      batch_size: int = 8) -> list[float]:
        self.calls["loglikelihood"] += len(pairs)
        return [self.score(context, continuation, adapter) for context, continuation in pairs]

    def fingerprint(self, adapter: Path | None = None) -> str:
        return hash_json({"engine": "fake", "model": self.spec.name, "adapter": str(adapter) if adapter else None})
