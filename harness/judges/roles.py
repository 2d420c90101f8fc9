"""Judge roles: one protocol per role, and how the evaluation loop asks, caches and records each.

- safety: (prompt, response) -> refusal / harmful              method `judge_safety`
- truth: (question, answer, correct refs, incorrect refs) -> truthful / informative   method `judge_truth`
- pairwise: (instruction, first output, second output) -> P(second better)            method `prefer`

A judge class declares the roles it fills (`roles = ("safety",)`); a benchmark declares the roles it needs
(`Benchmark.judge_roles`). `check_fills` refuses a judge that cannot fill a role before anything is loaded.
Verdicts are cached by judge name, version and inputs; an answer the judge's output could not be parsed
for is recorded (and counted by the metrics) but never cached, so a rerun asks again. A judge that got no
answer at all for an item (an endpoint that kept failing after its retries) returns a `JudgeFailure` in
place of the verdict: the record says so (`judge_failed`), it is counted as failed, never scored, and a
rerun of the run asks again for exactly those items.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from harness.errors import HarnessError
from harness.hashing import hash_json
from harness.store import Cache

ROLE_METHODS = {"safety": "judge_safety", "truth": "judge_truth", "pairwise": "prefer"}


class SafetyJudge(Protocol):
    name: str
    version: str
    roles: tuple[str, ...]

    def judge_safety(self, prompts: list[str], responses: list[str]) -> list[Any]:
        """A `SafetyVerdict` (refusal, harmful, p_refusal, p_harmful) per response, None where unparsed."""
        ...


class TruthJudge(Protocol):
    name: str
    version: str
    roles: tuple[str, ...]

    def judge_truth(self, questions: list[str], answers: list[str], correct_refs: list[list[str]],
                    incorrect_refs: list[list[str]]) -> list[Any]:
        """A `TruthVerdict` (truthful, informative; None where unparsed) per answer."""
        ...


class PairwiseJudge(Protocol):
    name: str
    version: str
    roles: tuple[str, ...]

    def prefer(self, instructions: list[str], first: list[str], second: list[str]) -> list[Any]:
        """A `Preference` (second_better in [0, 1] or None, raw) per pair, in the order shown."""
        ...


@dataclass(frozen=True)
class JudgeFailure:
    """In place of a verdict: the judge got no usable answer for this item (after its retries)."""

    reason: str


def fills(judge: Any, role: str) -> bool:
    """Whether a judge (class or instance) declares `role` and has its method."""
    return role in getattr(judge, "roles", ()) and callable(getattr(judge, ROLE_METHODS[role], None))


def check_fills(name: str, judge: Any, role: str, benchmark: str, candidates: Sequence[str] = ()) -> None:
    if role not in ROLE_METHODS:
        raise HarnessError(f"benchmark {benchmark} asks for an unknown judge role {role!r}; "
                           f"known: {', '.join(ROLE_METHODS)}")
    if not fills(judge, role):
        has = ", ".join(getattr(judge, "roles", ())) or "none"
        hint = f"; judges that fill it: {', '.join(candidates)}" if candidates else ""
        raise HarnessError(f"benchmark {benchmark} needs a {role} judge; --judge {name} is not one "
                           f"(its roles: {has}){hint}")


@dataclass(frozen=True)
class JudgeRequest:
    """One judgement to make. args: safety (prompt, response); truth (question, answer, correct refs,
    incorrect refs); pairwise (instruction, first output, second output)."""

    role: str
    args: tuple


def cache_key(judge: Any, request: JudgeRequest) -> str:
    """Keys keep the form earlier versions used, so a shared cache stays valid across the upgrade."""
    base = {"judge": judge.name, "version": judge.version}
    if request.role == "safety":
        prompt, response = request.args
        return hash_json({**base, "prompt": prompt, "response": response})
    if request.role == "truth":
        question, answer, correct, incorrect = request.args
        return hash_json({**base, "question": question, "answer": answer, "correct": list(correct),
                          "incorrect": list(incorrect)})
    instruction, first, second = request.args
    return hash_json({**base, "instruction": instruction, "first": first, "second": second})


UNPARSED_SAFETY = {"refusal": None, "harmful": None, "p_refusal": None, "p_harmful": None, "unparsed": True}


def ask(judge: Any, role: str, args: list[tuple]) -> list[dict[str, Any]]:
    """The judge's verdicts on a batch of one role's requests, as record fields."""
    columns = [list(column) for column in zip(*args)]
    if role == "safety":
        verdicts = judge.judge_safety(*columns)
        failed: dict[str, Any] = dict(UNPARSED_SAFETY)
        records = [failed_record(failed, v) if isinstance(v, JudgeFailure) else dict(UNPARSED_SAFETY) if v is None
                   else {"refusal": bool(v.refusal), "harmful": bool(v.harmful), "p_refusal": float(v.p_refusal),
                         "p_harmful": float(v.p_harmful)} for v in verdicts]
    elif role == "truth":
        questions, answers, correct, incorrect = columns
        verdicts = judge.judge_truth(questions, answers, [list(c) for c in correct], [list(i) for i in incorrect])
        failed = {"truthful": None, "informative": None}
        records = [failed_record(failed, v) if isinstance(v, JudgeFailure) else
                   {"truthful": None if v.truthful is None else bool(v.truthful),
                    "informative": None if v.informative is None else bool(v.informative)} for v in verdicts]
    else:
        verdicts = judge.prefer(*columns)
        failed = {"second_better": None, "judge_raw": ""}
        records = [failed_record(failed, v) if isinstance(v, JudgeFailure) else
                   {"second_better": None if v.second_better is None else float(v.second_better),
                    "judge_raw": v.raw} for v in verdicts]
    if len(records) != len(args):
        raise HarnessError(f"judge {judge.name} returned {len(records)} verdicts for {len(args)} {role} requests")
    return records


def failed_record(fields: dict[str, Any], failure: JudgeFailure) -> dict[str, Any]:
    """The verdict fields of an item the judge could not judge: every field None, and why."""
    return {**fields, "judge_failed": failure.reason}


def parsed(record: dict[str, Any]) -> bool:
    return not record.get("unparsed") and not record.get("judge_failed") and None not in (record.get(k) for k in ("truthful", "informative",
                                                                                  "second_better") if k in record)


def judged(judges: dict[str, Any], cache: Cache, requests: list[JudgeRequest]) -> list[dict[str, Any]]:
    """Verdict records for the requests, in order, through the cache; each role's misses go in one batch."""
    results: list[dict[str, Any] | None] = [None] * len(requests)
    keys = [cache_key(judges[r.role], r) for r in requests]
    for i, key in enumerate(keys):
        hit = cache.get(key)
        if isinstance(hit, dict):
            results[i] = hit
    for role in ROLE_METHODS:
        missing = [i for i, r in enumerate(requests) if r.role == role and results[i] is None]
        if not missing:
            continue
        for i, record in zip(missing, ask(judges[role], role, [requests[i].args for i in missing])):
            if parsed(record):
                cache.put(keys[i], record)
            results[i] = record
    return [r for r in results if r is not None]


def identity(judge: Any) -> dict[str, Any]:
    return {"name": judge.name, "version": judge.version}
