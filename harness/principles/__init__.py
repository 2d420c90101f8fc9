"""Hand-written principles and worked exemplars for `self-align`, loaded from one editable YAML file.

`principles.yaml` here is the default; any file with the same keys can replace it. The text a model sees
is rendered from the file, and the file's SHA-256 goes into the run's record.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any


from harness.errors import HarnessError
from harness.fileio import parse_yaml_text, read_text_file
from harness.hashing import hash_file

ANNOTATION_OPEN = "[Principles "  # opens the line that says which principles an exemplar applies


@dataclass(frozen=True)
class Exemplar:
    question: str
    principles: tuple[str, ...]
    note: str
    answer: str


@dataclass(frozen=True)
class Principles:
    path: Path
    sha256: str
    preamble: str
    principles: tuple[tuple[str, str], ...]  # (name, text)
    exemplars: tuple[Exemplar, ...]
    verbose: str

    def number(self, name: str) -> int:
        return [n for n, _ in self.principles].index(name) + 1

    def record(self) -> dict[str, Any]:
        return {"file": self.path.name, "sha256": self.sha256, "n_principles": len(self.principles),
                "n_exemplars": len(self.exemplars)}


def default_principles_file() -> Path:
    return Path(str(files("harness.principles").joinpath("principles.yaml")))


def _text(value: Any, where: str, path: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise HarnessError(f"principles file {path}: {where} must be a non-empty string")
    return " ".join(value.split())


def load_principles(path: Path | str | None = None) -> Principles:
    """Parse and check a principles file; any problem is one HarnessError naming the file and the field."""
    path = Path(path) if path else default_principles_file()
    if not path.is_file():
        raise HarnessError(f"principles file {path} does not exist")
    data = parse_yaml_text(read_text_file(path, "principles file"), f"principles file {path}")
    if not isinstance(data, dict):
        raise HarnessError(f"principles file {path}: expected a mapping with preamble, principles, exemplars, verbose")
    raw_principles, raw_exemplars = data.get("principles"), data.get("exemplars")
    if not isinstance(raw_principles, list) or not raw_principles:
        raise HarnessError(f"principles file {path}: 'principles' must be a non-empty list")
    if not isinstance(raw_exemplars, list) or not raw_exemplars:
        raise HarnessError(f"principles file {path}: 'exemplars' must be a non-empty list")
    principles = []
    for i, item in enumerate(raw_principles, start=1):
        if not isinstance(item, dict):
            raise HarnessError(f"principles file {path}: principle {i} must be a mapping with name and text")
        principles.append((_text(item.get("name"), f"principle {i} name", path),
                           _text(item.get("text"), f"principle {i} text", path)))
    names = {name for name, _ in principles}
    exemplars = []
    for i, item in enumerate(raw_exemplars, start=1):
        if not isinstance(item, dict):
            raise HarnessError(f"principles file {path}: exemplar {i} must be a mapping")
        used = item.get("principles") or []
        unknown = [u for u in used if u not in names]
        if not isinstance(used, list) or unknown:
            raise HarnessError(f"principles file {path}: exemplar {i} names unknown principle(s) {unknown}")
        exemplars.append(Exemplar(_text(item.get("question"), f"exemplar {i} question", path), tuple(used),
                                  _text(item.get("note"), f"exemplar {i} note", path),
                                  _text(item.get("answer"), f"exemplar {i} answer", path)))
    return Principles(path=path, sha256=hash_file(path), preamble=_text(data.get("preamble"), "preamble", path),
                      principles=tuple(principles), exemplars=tuple(exemplars),
                      verbose=_text(data.get("verbose"), "verbose", path))


def render_principles(principles: Principles) -> str:
    """The preamble, the numbered principles, and the exemplars with the principles each one applies.

    Exemplars are written in the same `Question: ...\\nAnswer: ...` shape the model then continues.
    """
    lines = [principles.preamble, ""]
    lines += [f"{i}. {name.capitalize()}: {text}" for i, (name, text) in enumerate(principles.principles, start=1)]
    lines += ["", "Examples of the assistant applying the principles:"]
    for exemplar in principles.exemplars:
        applied = ", ".join(f"{principles.number(n)} ({n})" for n in exemplar.principles)
        lines += ["", f"{ANNOTATION_OPEN}{applied}: {exemplar.note}]",
                  f"Question: {exemplar.question}", f"Answer: {exemplar.answer}"]
    return "\n".join(lines)
