"""Seed sets: a few human-written question/answer pairs of the target behaviour (see README.md here)."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from importlib.resources import files
from pathlib import Path

from harness.errors import HarnessError
from harness.fileio import read_text_file
from harness.types import Example

REQUIRED_KEYS = ("question", "answer", "domain")


def builtin_seed_file(name: str) -> Path:
    path = Path(str(files("harness.seeds").joinpath(f"{name}.jsonl")))
    if not path.exists():
        raise HarnessError(f"no built-in seed set {name!r}")
    return path


def load_seeds(path: Path) -> list[Example]:
    """Parse a seeds JSONL file; any malformed line is an error that names the line."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"seeds file {path} does not exist")
    examples = []
    for number, line in enumerate(read_text_file(path, "seeds file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"seeds file {path} line {number}: not valid JSON ({exc.msg})") from None
        except (RecursionError, ValueError):
            raise HarnessError(f"seeds file {path} line {number}: not valid JSON (nested too deep)") from None
        if not isinstance(record, dict):
            raise HarnessError(f"seeds file {path} line {number}: expected a JSON object")
        missing = [key for key in REQUIRED_KEYS if not isinstance(record.get(key), str) or not record[key].strip()]
        if missing:
            raise HarnessError(f"seeds file {path} line {number}: missing or empty string field(s) {', '.join(missing)}")
        examples.append(Example(record["question"].strip(), record["answer"].strip(), record["domain"].strip()))
    if not examples:
        raise HarnessError(f"seeds file {path} holds no seed examples")
    return examples


def sample_seeds(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """N examples drawn with the run seed, spread over domains in proportion to their size."""
    if n is None or n >= len(examples):
        return list(examples)
    if n <= 0:
        raise HarnessError(f"--seeds must be positive, got {n}")
    rng = random.Random(seed)
    by_domain: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_domain[example.domain].append(example)
    # Systematic stratified draw: item i of a shuffled domain of size m gets key (i + u) / m, so taking the
    # n smallest keys gives each domain a share proportional to its size.
    keyed = []
    for domain in sorted(by_domain):
        group = by_domain[domain]
        rng.shuffle(group)
        offset = rng.random()
        keyed.extend(((i + offset) / len(group), domain, example) for i, example in enumerate(group))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [example for _, _, example in keyed[:n]]
