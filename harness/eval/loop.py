"""The one resumable sample loop every benchmark runs through.

Per chunk of samples not yet in the run's sample file: the benchmark's requests are served (generation and
log-likelihood, through the content-addressed cache, with the model's adapter on every call), its judge
requests are judged (through the cache, one batch per role), and each sample's record, with its named
scores, is appended to `samples/<name>.jsonl`. A rerun keeps the finished records and does the rest.
Metrics come from the benchmark's MetricSpecs over the records, each with n and a 95% interval.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness import progress
from harness.aligner import AlignedModel
from harness.errors import HarnessError
from harness.eval.metrics import compute_metrics
from harness.eval.requests import Outputs, Requests
from harness.generation import cached_generate, chunks
from harness.hashing import hash_json
from harness.judges.roles import JudgeRequest, identity, judged
from harness.prevalence import corrected_rate, load_validation
from harness.store import Cache, RunStore
from harness.types import EvalItem, Sampling

SAMPLE_FORMAT = 2  # per-sample records carry their scores under "scores"


@dataclass
class EvalContext:
    store: RunStore
    cache: Cache
    judges: dict[str, Any]  # role -> judge
    options: Any  # the benchmark's typed options (its options_class)
    seed: int
    batch_size: int = 32  # generation / scoring batch
    usage: dict[str, Any] = field(default_factory=dict)

    def answer(self, model: AlignedModel, questions: Sequence[str], desc: str) -> list[dict]:
        """The model's answers (text, n_tokens, finish, cached) through the cache, sampled with the run seed;
        their tokens (cached ones included) are added to usage["tokens_generated"]."""
        sampling = model.answer_sampling(Sampling(max_new_tokens=self.options.max_new_tokens, seed=self.seed))
        generations, spent = cached_generate(model.backend, model.prompts(list(questions)), sampling, self.cache,
                                             model.adapter, batch_size=self.batch_size, desc=desc)
        self.usage["tokens_generated"] = self.usage.get("tokens_generated", 0) + spent
        return generations

    def loglikelihoods(self, model: AlignedModel, contexts: list[str], continuations: list[tuple[str, ...]],
                       kinds: list[str]) -> list[list[float]]:
        return cached_loglikelihoods(model, contexts, continuations, kinds, self.cache, self.batch_size)


def cached_loglikelihoods(model: AlignedModel, contexts: list[str], continuations: list[tuple[str, ...]],
                          kinds: list[str], cache: Cache, batch_size: int = 8) -> list[list[float]]:
    """Per context, the log-likelihood of each of its continuations under the model's adapter, through the cache."""
    backend = model.backend
    fingerprint = backend.fingerprint(model.adapter)
    keys = [hash_json({"model": fingerprint, "context": c, "continuations": list(options), "kind": kind})
            for c, options, kind in zip(contexts, continuations, kinds)]
    results: list[list[float] | None] = [cache.get(k) for k in keys]
    todo = [i for i, r in enumerate(results) if not isinstance(r, list)]
    if todo:
        pairs = [(contexts[i], option) for i in todo for option in continuations[i]]
        scores = iter(backend.loglikelihood(pairs, model.adapter, batch_size=batch_size))
        for i in todo:
            results[i] = [next(scores) for _ in continuations[i]]
            cache.put(keys[i], results[i])
    return [r for r in results if r is not None]


def serve(benchmark: Any, model: AlignedModel, items: list[EvalItem], ctx: EvalContext) -> list[Outputs]:
    """Every request of a chunk of samples, batched by kind."""
    requests: list[Requests] = [benchmark.requests(item) for item in items]
    answers: dict[int, dict] = {}
    unaligned: dict[int, dict] = {}
    loglikelihoods: dict[int, list[float]] = {}
    asked = [i for i, r in enumerate(requests) if r.answer is not None]
    if asked:
        generated = ctx.answer(model, [requests[i].answer for i in asked], f"{benchmark.name}: answer")
        answers = dict(zip(asked, generated))
    base = [i for i in asked if requests[i].answer_unaligned]
    if base:
        generated = ctx.answer(AlignedModel(model.backend), [requests[i].answer for i in base],
                               f"{benchmark.name}: unaligned answers")
        unaligned = dict(zip(base, generated))
    scored = [i for i, r in enumerate(requests) if r.choices is not None]
    if scored:
        shots = model.shots([items[i].prompt for i in scored])
        contexts = [requests[i].choices.context(s) for i, s in zip(scored, shots)]
        results = ctx.loglikelihoods(model, contexts, [requests[i].choices.continuations for i in scored],
                                     [requests[i].choices.kind for i in scored])
        loglikelihoods = dict(zip(scored, results))
    return [Outputs(answers.get(i), unaligned.get(i), loglikelihoods.get(i)) for i in range(len(items))]


def judge_all(benchmark: Any, items: list[EvalItem], outputs: list[Outputs], ctx: EvalContext) -> list[list[dict]]:
    """Each sample's verdicts, in the order its judge requests were made."""
    per_item: list[list[JudgeRequest]] = [benchmark.judge_requests(item, out, ctx.seed)
                                          for item, out in zip(items, outputs)]
    flat = [request for requests in per_item for request in requests]
    missing = sorted({r.role for r in flat} - set(ctx.judges))
    if missing:
        raise HarnessError(f"benchmark {benchmark.name} asked for a {', '.join(missing)} judge it did not declare "
                           "in judge_roles")
    verdicts = iter(judged(ctx.judges, ctx.cache, flat))
    return [[next(verdicts) for _ in requests] for requests in per_item]


def run_samples(benchmark: Any, model: AlignedModel, items: list[EvalItem], ctx: EvalContext,
                store: RunStore | None = None, name: str = "eval") -> list[dict]:
    """Every item's record, computing (and appending to samples/<name>.jsonl) only those not there yet."""
    store = store or ctx.store
    written = store.read_samples(name)
    done = {r["id"]: r for r in written}  # a later record of an item supersedes an earlier one
    # Items whose judge got no answer last time (an endpoint fault) are judged again; their answers are cached.
    todo = [item for item in items if item.id not in done or done[item.id].get("judge_failed")]
    with progress.bar(len(todo), f"{benchmark.name}: evaluate") as bar, store.samples(name) as writer:
        for chunk in chunks(todo):
            chunk = list(chunk)
            outputs = serve(benchmark, model, chunk, ctx)
            verdicts = judge_all(benchmark, chunk, outputs, ctx)
            for item, out, item_verdicts in zip(chunk, outputs, verdicts):
                record = benchmark.record(item, out, item_verdicts, ctx.seed)
                if record.get("id") != item.id or not isinstance(record.get("scores"), dict):
                    raise HarnessError(f"benchmark {benchmark.name}: record() must return the item's id and a "
                                       "dict of scores under 'scores'")
                failures = [v["judge_failed"] for v in item_verdicts if v.get("judge_failed")]
                if failures:
                    record["judge_failed"] = failures[0]
                writer.write(record)
                done[item.id] = record
            bar.update(len(chunk))
    if len(written) > len({r["id"] for r in written}) or any(r.get("judge_failed") for r in written):
        store.replace_samples(name, list(done.values()))  # one record per item, the latest
    return [done[item.id] for item in items]


def judges_used(benchmark: Any, ctx: EvalContext, records: list[dict]) -> dict[str, Any]:
    """Per role: the judge and how many records hold an unparsed score it produced."""
    used = {}
    for role, judge in ctx.judges.items():
        scores = {spec.score for spec in benchmark.metrics if spec.judge_role == role}
        judged_none = [r for r in records if any(r["scores"].get(s, 0) is None for s in scores)]
        failed = sum(1 for r in judged_none if r.get("judge_failed"))
        used[role] = {**identity(judge), "unparsed": len(judged_none) - failed, "failed": failed}
    return used


def evaluate(benchmark: Any, model: AlignedModel, items: list[EvalItem], ctx: EvalContext) -> dict[str, Any]:
    """Run every sample, then compute the metrics: the result document's benchmark part."""
    records = run_samples(benchmark, model, items, ctx)
    return results_document(benchmark, records, ctx)


def add_corrected_rates(specs: Sequence[Any], metrics: dict[str, Any], records: list[dict],
                        judges: dict[str, dict[str, Any]], seed: int) -> None:
    """Next to each rate judged by a head with a shipped validation record (harness/prevalence.py), the rate
    corrected for that head's errors, with an interval that includes the validation set's uncertainty.
    `judges`: role -> the identity ({"name", "version"}) of the judge that filled it."""
    for role, judge in judges.items():
        heads = load_validation(str(judge.get("name") or ""), judge.get("version"))
        for spec in specs:
            if spec.judge_role != role or spec.score not in heads or spec.aggregation != "mean" \
                    or not isinstance(metrics.get(spec.name), dict):
                continue
            present = [v for v in spec.values(records) if v is not None]
            if present and all(v in (0, 1, True, False) for v in present):
                corrected = corrected_rate(sum(bool(v) for v in present), len(present), heads[spec.score], seed)
                if corrected is not None:
                    metrics[spec.name]["corrected"] = corrected


def results_document(benchmark: Any, records: list[dict], ctx: EvalContext) -> dict[str, Any]:
    summary = benchmark.summary(records, ctx.seed)
    metrics = {**compute_metrics(benchmark.metrics, records, ctx.seed), **summary.pop("metrics", {})}
    add_corrected_rates(benchmark.metrics, metrics, records,
                        {role: identity(judge) for role, judge in ctx.judges.items()}, ctx.seed)
    judges = judges_used(benchmark, ctx, records)
    primary = next(iter(benchmark.judge_roles), None)
    document: dict[str, Any] = {"metrics": metrics, "metric_specs": [s.to_dict() for s in benchmark.metrics],
                                "sample_format": SAMPLE_FORMAT}
    document["judge"] = judges[primary] if primary in judges else {"name": None, "unparsed": 0}
    if len(judges) > 1:
        document["judges"] = judges
    return {**document, **summary}
