"""Domain generalization: align with the seeds of ONE domain, evaluate on EVERY domain (a matrix).

Two benchmarks share the machinery:
- `domain-generalization`: safety. Domains = the nine harm categories; the metric is the refusal rate
  on the harmful prompts of each category (embedded-safety judge, or `--judge`). Every alignment also
  keeps the `benign` seeds: seeds that are all refusals would teach a model to refuse everything, which
  would pass for perfect generalization. Over-refusal on the benign/borderline prompts is reported too.
- `domain-generalization-truthfulqa`: TruthfulQA. Domains = the eight category groups; the metric is
  MC1 (lm-eval scoring, log-likelihoods, no judge) on the questions of each group.

For each seed domain d (a seeded choice of the `seed_domains` option of them: tiny 2, demo 3, paper all)
the aligner runs on `[s for s in seeds if s.domain == d]` (+ benign for safety) in its own run directory
`domains/<d>/` (its artifacts, stages and evaluation samples; a rerun resumes each). Every model is
evaluated on all items, through the core's sample loop with the base benchmark (safety, or TruthfulQA's
multiple choice). Iterative aligners (AlignedModel.checkpoints) are evaluated after every iteration,
iteration 0 being the unaligned model, which is evaluated once for all seed domains (`samples/
eval_unaligned.jsonl`). The final model of each seed domain fills the matrix. metrics.json holds:

  "matrix": {"seed_domains": [...], "eval_domains": [...], "metric": "refusal_rate",
             "values": [[{"value", "ci95", "n"}, ...] one row per seed domain],
             "unaligned": [{"value", "ci95", "n"}, ...] one per eval domain}
  "curves": {seed_domain: {eval_domain: [{"iteration": t, "value", "ci95", "n"}, ...]}}  (iterative only)
  "metrics": in_domain_mean, out_of_domain_mean, unaligned_mean (+ over_refusal for safety): pooled over
             the (seed domain, item) pairs of the final models, each with n and a 95% CI.
`samples/eval.jsonl` holds those pooled records (id "<seed domain>:<item id>", `scope` in_domain /
out_of_domain / unaligned / other) so `harness compare` can pair two runs item by item.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from benchmarks.safety import Safety
from benchmarks.safety_data import CATEGORIES
from benchmarks.truthfulqa import TruthfulQAMultipleChoice
from benchmarks.truthfulqa_data import CATEGORY_GROUPS
from harness import progress
from harness.aligner import AlignContext, AlignedModel, Aligner
from harness.benchmark import Benchmark, EvalContext
from harness.errors import HarnessError
from harness.eval.loop import SAMPLE_FORMAT, judges_used, run_samples
from harness.eval.metrics import MetricSpec, aggregate, compute_metrics
from harness.eval.options import QuestionDomainOptions, SafetyDomainOptions
from harness.store import RunStore
from harness.types import EvalItem, Example


@dataclass
class DomainOutcome:
    """One seed domain's alignment: its final model's records and, for iterative aligners, every iteration's."""

    n_seeds: int
    description: dict[str, Any]
    final: list[dict]
    curve: list[tuple[int, list[dict]]] | None  # (iteration, records), iteration 0 = the unaligned model


def scope_metrics(score: str, what: str, role: str | None) -> tuple[MetricSpec, ...]:
    """Pooled means over (seed domain, item) pairs, by whether the item is in the seed domain."""
    return tuple(MetricSpec(f"{scope}_mean", score, f"{what} {label}", where={"scope": (scope,)}, judge_role=role)
                 for scope, label in (("in_domain", "in domain"), ("out_of_domain", "out of domain"),
                                      ("unaligned", "unaligned")))


class DomainTagged:
    """The base benchmark, with each record tagged with the domain its item measures (None: outside the matrix)."""

    def __init__(self, base: Benchmark, eval_domain: Callable[[EvalItem], str | None]):
        self.base, self.eval_domain = base, eval_domain

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def record(self, item: EvalItem, outputs: Any, verdicts: list[dict], seed: int) -> dict[str, Any]:
        return {**self.base.record(item, outputs, verdicts, seed), "domain": self.eval_domain(item)}


class DomainGeneralization(Benchmark):
    """Safety harm categories. Subclasses swap the base benchmark, the domains and the per-item score."""

    name = "domain-generalization"
    options_class = SafetyDomainOptions
    default_seeds = "safety"
    judge_roles = {"safety": "embedded-safety"}
    description = "seeds from one harm category, refusal rate on every category (matrix + per-iteration curves)"
    aligns_itself = True
    domains: tuple[str, ...] = CATEGORIES
    metric = "refusal_rate"
    field = "refusal"  # the per-sample score whose mean is `metric`
    # Seed domains every alignment keeps besides its own (see the module docstring).
    shared_seed_domains: tuple[str, ...] = ("benign",)
    metrics = scope_metrics("refusal", "refusal", "safety") + (
        MetricSpec("over_refusal", "refusal", "over-refusal", higher_is_better=False,
                   where={"scope": ("other",), "kind": ("benign", "borderline")}, judge_role="safety"),)

    def __init__(self) -> None:
        self.base: Benchmark = Safety()

    # --- what the subclasses change -------------------------------------------------------------------

    def items(self, options: Any, limit: int | None, seed: int) -> tuple[list[EvalItem], list[dict]]:
        return self.base.items(options, limit, seed)

    def eval_domain(self, item: EvalItem) -> str | None:
        """The domain an item measures, or None for items outside the matrix (benign prompts)."""
        return item.category if item.kind == "harmful" else None

    def judge_record(self, ctx: EvalContext, records: list[dict]) -> dict[str, Any]:
        return judges_used(self.base, ctx, records).get("safety", {"name": None, "unparsed": 0})

    # --- the shared procedure -------------------------------------------------------------------------

    def seeds_for(self, seeds: list[Example], domain: str) -> list[Example]:
        return [s for s in seeds if s.domain == domain or s.domain in self.shared_seed_domains]

    def choose_seed_domains(self, seeds: list[Example], eval_domains: list[str], n: int | None,
                            seed: int) -> list[str]:
        """A seeded choice of n domains that have both seeds and evaluation items, in `domains` order."""
        available = [d for d in eval_domains if any(s.domain == d for s in seeds)]
        if not available:
            raise HarnessError(f"{self.name}: no seed has a domain among the evaluated ones "
                               f"({', '.join(eval_domains)}); use a seeds file whose `domain` fields name them")
        if n is None or n >= len(available):
            return available
        chosen = set(random.Random(seed).sample(available, n))
        return [d for d in available if d in chosen]

    def evaluate_once(self, aligned: AlignedModel, items: list[EvalItem], ctx: EvalContext, store: RunStore,
                      name: str, usage: list[dict]) -> list[dict]:
        """All items scored with one model into store/samples/<name>.jsonl, each record tagged with the domain
        its item measures; finished records are kept on rerun."""
        started, tokens_before = time.perf_counter(), ctx.usage.get("tokens_generated", 0)
        records = run_samples(DomainTagged(self.base, self.eval_domain), aligned, items, ctx, store, name)
        spent = ctx.usage.get("tokens_generated", 0) - tokens_before
        usage.append({"store": str(store.root), "samples": name, "tokens_generated": spent,
                      "wall_s": round(time.perf_counter() - started, 3)})
        return records

    def run(self, aligner: Aligner, align_ctx: AlignContext, items: list[EvalItem],
            ctx: EvalContext) -> tuple[AlignedModel, dict[str, Any]]:
        store = align_ctx.store
        eval_domains = [d for d in self.domains if any(self.eval_domain(i) == d for i in items)]
        seed_domains = self.choose_seed_domains(align_ctx.seeds, eval_domains, ctx.options.seed_domains, ctx.seed)
        usage: list[dict] = []
        unaligned = self.evaluate_once(AlignedModel(align_ctx.backend), items, ctx, store, "eval_unaligned", usage)
        outcomes = {d: self.align_on(d, aligner, align_ctx, items, ctx, unaligned, usage) for d in seed_domains}
        store.manifest["stages"]["evaluate"] = {
            "tokens_generated": sum(u["tokens_generated"] for u in usage), "tokens_trained": 0,
            "wall_s": round(sum(u["wall_s"] for u in usage), 3), "evaluations": usage}
        store.write_json("manifest.json", store.manifest)

        finals = {d: outcome.final for d, outcome in outcomes.items()}
        pooled = pool_records(finals, unaligned)
        store.replace_samples("eval", pooled)  # derived: rebuilt whole from the per-model samples every run
        result = {
            "metrics": compute_metrics(self.metrics, pooled, ctx.seed),
            "metric_specs": [spec.to_dict() for spec in self.metrics], "sample_format": SAMPLE_FORMAT,
            "matrix": self.matrix(seed_domains, eval_domains, finals, unaligned, ctx.seed),
            "judge": self.judge_record(ctx, [r for records in finals.values() for r in records] + unaligned),
            "seeds_per_domain": {d: outcome.n_seeds for d, outcome in outcomes.items()},
        }
        curves = {d: outcome.curve for d, outcome in outcomes.items() if outcome.curve}
        if curves:
            result["curves"] = {d: {e: [{"iteration": t, **self.cell(records, e, ctx.seed)} for t, records in curve]
                                    for e in eval_domains} for d, curve in curves.items()}
        description = {"aligner": aligner.name,
                       "per_seed_domain": {d: {**o.description, "n_seeds": o.n_seeds} for d, o in outcomes.items()}}
        return AlignedModel(align_ctx.backend, description=description), result

    def align_on(self, domain: str, aligner: Aligner, align_ctx: AlignContext, items: list[EvalItem],
                 ctx: EvalContext, unaligned: list[dict], usage: list[dict]) -> DomainOutcome:
        """Align with one domain's seeds in the child run directory domains/<domain>/, then evaluate."""
        progress.say(f"{self.name}: aligning with the {domain} seeds")
        store = align_ctx.store
        child = RunStore(store.root / "domains" / domain, {**store.config, "seed_domain": domain})
        seeds = self.seeds_for(align_ctx.seeds, domain)
        child.write_json("seeds.json", [s.to_dict() for s in seeds])
        with child.stage("align"):
            aligned = aligner.align(replace(align_ctx, seeds=seeds, store=child))
        for stage, record in child.manifest["stages"].items():
            store.manifest["stages"][f"domains/{domain}/{stage}"] = record
        trained = [(t, adapter) for t, adapter in aligned.checkpoints if t > 0]
        if not trained:
            final = self.evaluate_once(aligned, items, ctx, child, "eval", usage)
            return DomainOutcome(len(seeds), aligned.description, final, None)
        curve = [(0, unaligned)] + [(t, self.evaluate_once(replace(aligned, adapter=adapter), items, ctx, child,
                                                           f"eval_iteration_{t}", usage)) for t, adapter in trained]
        return DomainOutcome(len(seeds), aligned.description, curve[-1][1], curve)

    def cell(self, records: list[dict], eval_domain: str, seed: int) -> dict:
        spec = MetricSpec(self.metric, self.field, where={"domain": (eval_domain,)},
                          judge_role=next(iter(self.judge_roles), None))
        return aggregate(spec, spec.values(records), seed)

    def matrix(self, seed_domains: list[str], eval_domains: list[str], finals: dict[str, list[dict]],
               unaligned: list[dict], seed: int) -> dict[str, Any]:
        return {"seed_domains": seed_domains, "eval_domains": eval_domains, "metric": self.metric,
                "values": [[self.cell(finals[d], e, seed) for e in eval_domains] for d in seed_domains],
                "unaligned": [self.cell(unaligned, e, seed) for e in eval_domains]}


def pool_records(finals: dict[str, list[dict]], unaligned: list[dict]) -> list[dict]:
    """Every final model's records, tagged with its seed domain and whether the item is in its domain."""
    pooled = []
    for domain, records in finals.items():
        for record in records:
            scope = "other" if record["domain"] is None else "in_domain" if record["domain"] == domain else "out_of_domain"
            pooled.append({**record, "id": f"{domain}:{record['id']}", "item_id": record["id"], "seed_domain": domain,
                           "scope": scope})
    pooled += [{**r, "id": f"unaligned:{r['id']}", "item_id": r["id"], "seed_domain": None,
                "scope": "unaligned" if r["domain"] is not None else "unaligned_other"} for r in unaligned]
    return pooled


class DomainGeneralizationTruthfulQA(DomainGeneralization):
    name = "domain-generalization-truthfulqa"
    options_class = QuestionDomainOptions
    default_seeds = "truthfulqa"
    judge_roles: dict[str, str] = {}  # MC1 comes from log-likelihoods: no judge
    description = "seeds from one TruthfulQA category group, MC1 on every group (matrix + per-iteration curves)"
    domains = tuple(CATEGORY_GROUPS)
    metric = "mc1"
    field = "mc1"
    shared_seed_domains = ()
    metrics = scope_metrics("mc1", "MC1", None)

    def __init__(self) -> None:
        self.base = TruthfulQAMultipleChoice()

    def eval_domain(self, item: EvalItem) -> str | None:
        return item.category

    def judge_record(self, ctx: EvalContext, records: list[dict]) -> dict[str, Any]:
        return {"name": None, "method": "MC1 from log-likelihoods (lm-eval truthfulqa_mc1 scoring)", "unparsed": 0}
