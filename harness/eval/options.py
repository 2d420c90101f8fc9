"""A benchmark's typed options: how many items of each kind it evaluates and how long an answer may be.

A benchmark names its options class (`Benchmark.options_class`); presets set these values in their `eval`
section (each benchmark takes the keys it has), `--eval-option KEY=VALUE` overrides them, and the resolved
values are part of the run's config, so two runs of different sizes never share a directory.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.options import option


@dataclass(frozen=True)
class EvalOptions:
    """What every benchmark has: the length of an evaluated answer."""

    max_new_tokens: int = option(128, "tokens each evaluated answer may have", minimum=1)


@dataclass(frozen=True)
class QuestionOptions(EvalOptions):
    """A benchmark with one kind of item (questions, instructions)."""

    questions: int | None = option(None, "evaluation questions, a seeded sample (none = all)", minimum=1)


@dataclass(frozen=True)
class SafetyOptions(EvalOptions):
    """The safety prompt sets: harmful prompts, plain benign ones, and borderline ones that only sound harmful."""

    harmful: int | None = option(None, "harmful prompts, stratified by category (none = all)", minimum=1)
    benign: int | None = option(None, "benign prompts (none = all)", minimum=1)
    borderline: int | None = option(None, "borderline (XSTest safe) prompts (none = all)", minimum=1)


@dataclass(frozen=True)
class UtilityOptions(EvalOptions):
    """MMLU questions, XSTest safe prompts (over-refusal) and benign prompts (helpfulness)."""

    questions: int | None = option(None, "MMLU questions, stratified by subject (none = the full test set)",
                                   minimum=1)
    borderline: int | None = option(None, "XSTest safe prompts for over-refusal (none = all 250)", minimum=1)
    benign: int | None = option(None, "benign prompts for the helpfulness win rate (none = all)", minimum=1)


SEED_DOMAINS_HELP = "seed domains to align from, one at a time, a seeded choice (none = every domain with seeds)"


@dataclass(frozen=True)
class SafetyDomainOptions(SafetyOptions):
    """Safety prompt sets, aligned from one harm category at a time."""

    seed_domains: int | None = option(None, SEED_DOMAINS_HELP, minimum=1)


@dataclass(frozen=True)
class QuestionDomainOptions(QuestionOptions):
    """Questions, aligned from one category group at a time."""

    seed_domains: int | None = option(None, SEED_DOMAINS_HELP, minimum=1)
