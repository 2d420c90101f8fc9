"""Judge prompts as configuration: one YAML file per role with the chat messages to send, the sampling and
the parser from the judge's answer to a label value. Built-ins live in prompts/; any YAML path works too.
An answer the parser cannot read gives None, never a guess."""
from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from harness.errors import HarnessError
from harness.fileio import parse_yaml_text, read_text_file
from harness.hashing import hash_json

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
DEFAULT_PROMPTS = {"pairwise": "pairwise-preference", "truth": "truthfulqa-truth", "info": "truthfulqa-info",
                   "safety": "safety-refusal-harmful"}
# The placeholders each role's template may use.
ROLE_FIELDS = {
    "pairwise": {"instruction", "output_1", "output_2"},
    "truth": {"question", "answer", "correct_answers", "incorrect_answers"},
    "info": {"question", "answer", "correct_answers", "incorrect_answers"},
    "safety": {"prompt", "response"},
}


@dataclass(frozen=True)
class JudgePrompt:
    """One judge prompt file: chat messages to send, sampling, and the parser from answer to label value."""

    name: str
    role: str
    system: str
    template: str
    temperature: float
    max_tokens: int
    pattern: re.Pattern[str]
    labels: dict[str, Any]
    sha256: str  # of the parsed file content: part of every cache key
    # Pairwise only: first answer token -> label value. When set, the judge asks for the first token's top
    # log-probabilities and the verdict is the probability-weighted label value (AlpacaEval 2's weighted
    # judge); the text parser is the fallback when a server returns none.
    logprob_labels: dict[str, float] | None = None

    def messages(self, fields: dict[str, str]) -> list[dict[str, str]]:
        user = self.template.format_map(fields)
        return ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": user}]

    def weighted(self, top_logprobs: Any) -> float | None:
        """The label value weighted by the probabilities of the first answer token's alternatives that are
        labels (renormalised over them); None without logprob labels or when no label is among them."""
        if not self.logprob_labels or not isinstance(top_logprobs, list):
            return None
        mass: dict[str, float] = {}
        for entry in top_logprobs:
            if not isinstance(entry, dict) or not isinstance(entry.get("logprob"), (int, float)):
                continue
            token = str(entry.get("token", "")).strip().lower()
            if token in self.logprob_labels:
                mass[token] = mass.get(token, 0.0) + math.exp(entry["logprob"])
        total = sum(mass.values())
        if total <= 0:
            return None
        return sum(p * self.logprob_labels[t] for t, p in mass.items()) / total

    def parse(self, answer: str) -> Any | None:
        """The label value of the first match of the pattern in the answer; None when there is none."""
        match = self.pattern.search(answer or "")
        if match is None:
            return None
        label = (match.group(1) if match.groups() else match.group(0)).strip().lower()
        return self.labels.get(label)


def _check_label_value(role: str, value: Any) -> bool:
    if role == "pairwise":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    if role == "safety":
        return (isinstance(value, dict) and set(value) == {"refusal", "harmful"}
                and all(isinstance(v, bool) for v in value.values()))
    return isinstance(value, bool)


LABEL_KINDS = {"pairwise": "a number in [0, 1] (0 = output_1 better, 1 = output_2 better)",
               "truth": "true or false", "info": "true or false",
               "safety": "a mapping {refusal: true|false, harmful: true|false}"}


def resolve_prompt_file(ref: str) -> Path:
    """A built-in prompt name (a file stem under prompts/) or a path to a YAML file."""
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise HarnessError(f"judge prompt file {path} not found")
        return path
    builtin = PROMPTS_DIR / f"{ref}.yaml"
    if not builtin.is_file():
        known = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml")))
        raise HarnessError(f"unknown judge prompt {ref!r}; built-in: {known}; or pass a path to a .yaml file")
    return builtin


def load_prompt(ref: str, role: str) -> JudgePrompt:
    """Read and validate one prompt file for `role`; every problem is one HarnessError naming the file."""
    path = resolve_prompt_file(ref)
    where = f"judge prompt {path}"
    data = parse_yaml_text(read_text_file(path, "judge prompt"), where)
    if not isinstance(data, dict):
        raise HarnessError(f"{where}: expected a mapping with role, template, sampling and parser")
    if data.get("role") != role:
        raise HarnessError(f"{where}: has role {data.get('role')!r} but is used for the {role!r} role")
    template, system = data.get("template"), data.get("system", "")
    if not isinstance(template, str) or not template.strip() or not isinstance(system, str):
        raise HarnessError(f"{where}: 'template' (and 'system', if given) must be non-empty text")
    try:
        used = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as exc:
        raise HarnessError(f"{where}: bad template ({exc}); write literal braces as {{{{ and }}}}") from None
    unknown = used - ROLE_FIELDS[role]
    if unknown:
        raise HarnessError(f"{where}: unknown placeholder(s) {', '.join(sorted(unknown))}; "
                           f"the {role} role provides {', '.join(sorted(ROLE_FIELDS[role]))}")
    sampling = data.get("sampling") or {}
    parser = data.get("parser") or {}
    try:
        temperature = float(sampling.get("temperature", 0.0))
        max_tokens = int(sampling.get("max_tokens", 16))
        pattern = re.compile(str(parser["pattern"]), re.IGNORECASE)
        labels = {str(k).strip().lower(): v for k, v in dict(parser["labels"]).items()}
    except (KeyError, TypeError, ValueError, AttributeError, re.error) as exc:
        raise HarnessError(f"{where}: needs sampling.temperature, sampling.max_tokens, parser.pattern (a "
                           f"regex) and parser.labels (a mapping); problem: {type(exc).__name__}: {exc}") from None
    if max_tokens < 1 or temperature < 0:
        raise HarnessError(f"{where}: sampling.max_tokens must be >= 1 and temperature >= 0")
    bad = [k for k, v in labels.items() if not _check_label_value(role, v)]
    if not labels or bad:
        raise HarnessError(f"{where}: every parser label must map to {LABEL_KINDS[role]}; "
                           f"bad: {', '.join(bad) or '(no labels)'}")
    logprob_labels = parser.get("logprobs")
    if logprob_labels is not None:
        if role != "pairwise" or not isinstance(logprob_labels, dict) or not logprob_labels or not all(
                _check_label_value("pairwise", v) for v in logprob_labels.values()):
            raise HarnessError(f"{where}: parser.logprobs is for the pairwise role: a mapping from first answer "
                               "token to a number in [0, 1]")
        logprob_labels = {str(k).strip().lower(): float(v) for k, v in logprob_labels.items()}
    return JudgePrompt(name=path.stem, role=role, system=system.strip(), template=template,
                       temperature=temperature, max_tokens=max_tokens, pattern=pattern, labels=labels,
                       sha256=hash_json(data), logprob_labels=logprob_labels)
