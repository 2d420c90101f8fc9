"""The evaluation core on the fake backend: one sample loop, MetricSpecs, judge roles, adapters per call."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.aligner import AlignedModel
from harness.benchmark import Benchmark
from harness.eval.options import SafetyOptions
from harness.errors import HarnessError
from harness.eval.loop import EvalContext, evaluate, run_samples
from harness.eval.metrics import MetricSpec, compute_metrics, spec_for
from harness.eval.requests import Choices, Requests
from harness.judges.build import judge_names
from harness.judges.roles import JudgeFailure, JudgeRequest, check_fills
from harness.judges.safety import SafetyVerdict
from harness.models.backend import Backend
from harness.models.fake import FakeBackend
from harness.store import Cache, RunStore
from harness.types import EvalItem

ITEMS = [EvalItem(f"q{i}", f"Question number {i}?", "even" if i % 2 == 0 else "odd", "plain", "test")
         for i in range(6)]
SIZE = SafetyOptions(max_new_tokens=8)


class CountingJudge:
    """Refuses when the response mentions the adapter; unparsed for q5 (its output cannot be read)."""

    name, version, roles = "counting", "1", ("safety",)

    def __init__(self) -> None:
        self.calls = 0

    def judge_safety(self, prompts, responses):
        self.calls += len(prompts)
        return [None if "number 5" in p else SafetyVerdict("adapter" in r, False, float("adapter" in r), 0.0)
                for p, r in zip(prompts, responses)]


class Toy(Benchmark):
    name = "toy"
    judge_roles = {"safety": "counting"}
    metrics = (MetricSpec("refusal_rate", "refusal", "refusal", judge_role="safety", group_by="category"),
               MetricSpec("first_choice", "first", "picks A", higher_is_better=False))

    def requests(self, item):
        return Requests(answer=item.prompt, choices=Choices(lambda shots: item.prompt, (" A", " B"), "toy"))

    def judge_requests(self, item, outputs, seed):
        return [JudgeRequest("safety", (item.prompt, outputs.answer["text"]))]

    def record(self, item, outputs, verdicts, seed):
        first = outputs.loglikelihoods[0] >= outputs.loglikelihoods[1]
        return {"id": item.id, "category": item.category, "response": outputs.answer["text"],
                "scores": {"refusal": verdicts[0]["refusal"], "first": first}}


def context(tmp_path: Path, judge=None) -> EvalContext:
    return EvalContext(store=RunStore(tmp_path / "run", {"toy": 1}), cache=Cache(tmp_path / "cache"),
                       judges={"safety": judge or CountingJudge()}, options=SIZE, seed=0)


def test_the_fake_backend_fills_the_inference_contract():
    backend = FakeBackend()
    assert isinstance(backend, Backend)
    assert backend.fingerprint() != backend.fingerprint(Path("adapter"))
    assert backend.loglikelihood([("a", "b")]) == backend.loglikelihood([("a", "b")])


def test_one_loop_scores_every_sample_computes_specs_and_counts_unparsed(tmp_path):
    judge = CountingJudge()
    ctx = context(tmp_path, judge)
    document = evaluate(Toy(), AlignedModel(FakeBackend(), adapter=Path("adapter")), ITEMS, ctx)
    metrics = document["metrics"]
    assert metrics["refusal_rate"]["n"] == 5 and metrics["refusal_rate"]["unparsed"] == 1
    assert metrics["refusal_rate"]["value"] == 1.0  # the adapter reached every generation
    assert metrics["refusal_rate/even"]["n"] == 3 and metrics["refusal_rate/odd"]["n"] == 2
    assert metrics["first_choice"]["n"] == 6 and "unparsed" not in metrics["first_choice"]
    assert [s["name"] for s in document["metric_specs"]] == ["refusal_rate", "first_choice"]
    assert document["judge"] == {"name": "counting", "version": "1", "unparsed": 1, "failed": 0}
    records = ctx.store.read_samples("eval")
    assert [r["id"] for r in records] == [i.id for i in ITEMS] and all("scores" in r for r in records)


def test_a_rerun_resumes_and_unparsed_verdicts_are_asked_again(tmp_path):
    backend, judge = FakeBackend(), CountingJudge()
    ctx = context(tmp_path, judge)
    run_samples(Toy(), AlignedModel(backend), ITEMS[:3], ctx)  # an interrupted run: half the items
    assert backend.calls["generate"] == 3 and judge.calls == 3
    records = run_samples(Toy(), AlignedModel(backend), ITEMS, ctx)
    assert backend.calls["generate"] == 6 and judge.calls == 6 and len(records) == 6
    assert len(ctx.store.read_samples("eval")) == 6  # nothing written twice
    # A fresh run directory on the same cache: answers and parsed verdicts are served, the unparsed one is not.
    again = context(tmp_path / "again", judge)
    again.cache = ctx.cache
    run_samples(Toy(), AlignedModel(backend), ITEMS, again)
    assert backend.calls["generate"] == 6 and judge.calls == 7


def test_the_adapter_is_part_of_every_cache_key(tmp_path):
    backend = FakeBackend()
    ctx = context(tmp_path)
    base = run_samples(Toy(), AlignedModel(backend), ITEMS[:2], ctx, name="base")
    tuned = run_samples(Toy(), AlignedModel(backend, adapter=Path("adapter")), ITEMS[:2], ctx, name="tuned")
    assert backend.calls["generate"] == 4 and backend.calls["loglikelihood"] == 8
    assert base[0]["response"] != tuned[0]["response"]


def test_metric_specs_round_trip_and_name_their_groups():
    spec = MetricSpec("harm", "harmful", where={"kind": ("harmful",)}, group_by="category", groups=("b", "a"))
    assert MetricSpec.from_dict(spec.to_dict()) == spec
    records = [{"id": "1", "kind": "harmful", "category": "a", "scores": {"harmful": True}},
               {"id": "2", "kind": "harmful", "category": "b", "scores": {"harmful": False}},
               {"id": "3", "kind": "benign", "category": "a", "scores": {"harmful": True}}]
    metrics = compute_metrics([spec], records, 0)
    assert list(metrics) == ["harm", "harm/b", "harm/a"] and metrics["harm"]["n"] == 2
    assert spec_for([spec], "harm/a") == (spec, "a") and spec_for([spec], "other") is None
    assert spec.item_values(records, "a") == {"1": 1.0}
    with pytest.raises(HarnessError, match="reserved"):
        MetricSpec("a/b", "x")


def test_a_judge_that_cannot_fill_a_role_is_refused_before_loading():
    class Safety(Benchmark):
        name, judge_roles = "needs-safety", {"safety": "embedded-safety"}

    with pytest.raises(HarnessError, match="needs a safety judge; --judge embedded-pairwise is not one"):
        judge_names(Safety, "embedded-pairwise")
    assert judge_names(Safety, "keyword-refusal") == {"safety": "keyword-refusal"}
    with pytest.raises(HarnessError, match="unknown judge role"):
        check_fills("x", CountingJudge, "style", "toy")


def test_a_record_without_scores_is_refused(tmp_path):
    class NoScores(Toy):
        def record(self, item, outputs, verdicts, seed):
            return {"id": item.id}

    with pytest.raises(HarnessError, match="scores"):
        run_samples(NoScores(), AlignedModel(FakeBackend()), ITEMS[:1], context(tmp_path))


class FlakyJudge(CountingJudge):
    """Gets no answer for q1 and q2 until `healthy` (an endpoint fault after its retries)."""

    healthy = False

    def judge_safety(self, prompts, responses):
        verdicts = super().judge_safety(prompts, responses)
        return [JudgeFailure("[no answer: HTTP 503]") if not self.healthy and ("number 1" in p or "number 2" in p)
                else v for p, v in zip(prompts, verdicts)]


def test_items_the_judge_failed_are_counted_never_scored_and_only_they_are_judged_again(tmp_path):
    judge = FlakyJudge()
    ctx = context(tmp_path, judge)
    document = evaluate(Toy(), AlignedModel(FakeBackend(), adapter=Path("adapter")), ITEMS, ctx)
    assert document["judge"] == {"name": "counting", "version": "1", "unparsed": 1, "failed": 2}
    assert document["metrics"]["refusal_rate"]["n"] == 3  # q0, q3, q4: neither failed nor unparsed
    records = {r["id"]: r for r in ctx.store.read_samples("eval")}
    assert records["q1"]["judge_failed"] == "[no answer: HTTP 503]" and records["q1"]["scores"]["refusal"] is None
    assert "judge_failed" not in records["q0"]

    judge.healthy, judge.calls = True, 0  # the endpoint recovers; the same run again
    again = evaluate(Toy(), AlignedModel(FakeBackend(), adapter=Path("adapter")), ITEMS, context(tmp_path, judge))
    assert judge.calls == 2  # only q1 and q2 (the unparsed q5 is a verdict, kept as it is)
    assert again["judge"]["failed"] == 0 and again["metrics"]["refusal_rate"]["n"] == 5
    samples = ctx.store.read_samples("eval")
    assert [r["id"] for r in samples] == [item.id for item in ITEMS]  # one record per item, in order
    assert not any(r.get("judge_failed") for r in samples)
