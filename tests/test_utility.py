"""`utility`: MMLU data and scoring (against lm-eval's template and a hand computation), XSTest over-refusal,
helpfulness against the unaligned model, whole runs.

Unit tests use tiny random models built in the test and the data mirror beside the repository; the
integration test runs the CLI on the embedded models.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import torch
import yaml

from aligners.icl_only import SeedRetriever
from benchmarks import mmlu_data
from benchmarks.mmlu_data import GROUP_OF, SUBJECT_GROUPS, draw_subset, load_mmlu, rows_from_csv, with_ids
from benchmarks.utility import (Utility, mmlu_context, mmlu_loglikelihoods, mmlu_prompt, predicted_letter,
                                stratified_sample, utility_metrics)
from harness.aligner import AlignedModel
from harness.benchmark import EvalContext
from harness.config import benchmark_options
from harness.datasources import Resolver
from harness.errors import HarnessError
from harness.judges.pairwise import EmbeddedPairwiseJudge
from harness.models.hf import load_backend
from harness.runner import check_seed_overlap
from harness.embedding import embed
from harness.seeds import builtin_seed_file, load_seeds
from harness.store import Cache, RunStore, read_jsonl
from harness.types import Example
from harness.eval.metrics import compute_metrics, spec_for
from harness.judges.build import judge_names, make_judge
from tiny_model import make_tiny_model

from mirror import DATA_DIR

TINY = benchmark_options("utility", "tiny")


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Path:
    if not (DATA_DIR / "mmlu").is_dir():
        pytest.skip(f"no data mirror at {DATA_DIR}")
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return DATA_DIR


@pytest.fixture(scope="module")
def subset():
    if not (DATA_DIR / "mmlu").is_dir():
        pytest.skip(f"no data mirror at {DATA_DIR}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
        return load_mmlu("subset", Resolver())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("tiny_chat"), chat=True)))


# --- MMLU data --------------------------------------------------------------------------------------


def test_subset_has_20_questions_in_each_of_57_subjects_in_four_groups(subset):
    assert len(subset) == 1140 and len({q.id for q in subset}) == 1140
    counts = {s: sum(q.subject == s for q in subset) for s in GROUP_OF}
    assert len(counts) == 57 and set(counts.values()) == {20}
    assert sum(len(s) for s in SUBJECT_GROUPS.values()) == 57
    assert all(len(q.choices) == 4 and 0 <= q.answer <= 3 for q in subset)


def test_the_hub_path_draws_the_same_subset_as_the_mirror_file(subset):
    """From the hub the subset is drawn from the full test set; the draw must equal the mirror's file."""
    full = with_ids(rows_from_csv({"f": (DATA_DIR / mmlu_data.FULL_FILE).read_bytes()}))
    assert len(full) == 14042
    drawn = draw_subset(full)
    assert [(q.subject, q.question, q.choices, q.answer) for q in drawn] == \
        [(q.subject, q.question, q.choices, q.answer) for q in subset]
    assert {q.id for q in drawn} <= {q.id for q in full}


def test_hub_rows_parse_like_the_mirror_and_get_the_same_ids(subset):
    rows = [{"subject": q.subject, "question": q.question, "choices": list(q.choices), "answer": q.answer}
            for q in subset[:30]]
    payload = "".join(json.dumps(r) + "\n" for r in rows).encode()
    assert with_ids(mmlu_data.rows_from_hf({"rows.jsonl": payload})) == subset[:30]


def test_paper_size_reads_the_full_test_set(mirror):
    resolver = Resolver()
    assert len(load_mmlu("full", resolver)) == 14042
    assert resolver.manifest()[0]["location"].endswith(mmlu_data.FULL_FILE)


def test_no_source_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HarnessError) as error:
        load_mmlu("subset", Resolver())
    message = str(error.value)
    assert "\n" not in message and "mmlu" in message and "mirror" in message and "huggingface" in message


def test_stratified_sample_spreads_over_subjects_and_is_seeded(subset):
    chosen = stratified_sample(subset, 100, seed=3)
    assert len(chosen) == 100 and chosen == stratified_sample(subset, 100, seed=3)
    per_subject = [sum(q.subject == s for q in chosen) for s in GROUP_OF]
    assert max(per_subject) - min(per_subject) <= 1
    assert chosen != stratified_sample(subset, 100, seed=4)
    order = [q.id for q in subset]
    assert [order.index(q.id) for q in chosen] == sorted(order.index(q.id) for q in chosen)


# --- MMLU scoring -----------------------------------------------------------------------------------


def lm_eval_context(question) -> str:
    """The context lm-eval 0.4's `mmlu_<subject>` task builds, rendered from its own YAML files."""
    lm_eval = pytest.importorskip("lm_eval")
    task_dir = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    template = yaml.safe_load((task_dir / "_default_template_yaml").read_text())
    task = yaml.safe_load((task_dir / f"mmlu_{question.subject}.yaml").read_text())
    assert template["doc_to_choice"] == ["A", "B", "C", "D"] and template["output_type"] == "multiple_choice"
    text = jinja2.Template(template["doc_to_text"]).render(question=question.question, choices=list(question.choices))
    return task["description"] + text


def test_prompt_is_lm_evals_zero_shot_mmlu_context_character_for_character(subset):
    for question in subset[::97]:
        assert mmlu_prompt(question) == lm_eval_context(question)
    assert mmlu_context(subset[0]) == mmlu_prompt(subset[0])
    shot = Example("What is 2+2?", "4.", "math")
    assert mmlu_context(subset[0], [shot]) == "Question: What is 2+2?\nAnswer: 4.\n\n" + mmlu_prompt(subset[0])


def hand_loglikelihood(backend, context: str, continuation: str) -> float:
    """Sum of log P(continuation token | prefix), from one plain forward pass of the whole string."""
    tokenizer, model = backend.tokenizer, backend.model
    context_ids = tokenizer(context)["input_ids"]
    whole = tokenizer(context + continuation)["input_ids"]
    assert whole[:len(context_ids)] == context_ids  # " A" does not merge with "Answer:"
    with torch.no_grad():
        logits = model(torch.tensor([whole])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(float(logprobs[t - 1, whole[t]]) for t in range(len(context_ids), len(whole)))


def test_scores_are_the_argmax_of_hand_computed_loglikelihoods(tiny, subset, tmp_path):
    questions = subset[::190]
    scores = mmlu_loglikelihoods(AlignedModel(tiny), questions, Cache(tmp_path), batch_size=3)
    for question, lls in zip(questions, scores):
        by_hand = [hand_loglikelihood(tiny, mmlu_prompt(question), f" {letter}") for letter in "ABCD"]
        assert lls == pytest.approx(by_hand, abs=1e-4)
        assert predicted_letter(lls) == max(range(4), key=lambda i: (by_hand[i], -i))
    assert predicted_letter([-1.0, -0.5, -0.5, -2.0]) == 1  # a tie goes to the earlier letter


def test_scores_come_from_the_cache_on_a_second_call(tiny, subset, tmp_path):
    questions = subset[:3]
    first = mmlu_loglikelihoods(AlignedModel(tiny), questions, Cache(tmp_path), batch_size=4)

    class Refusing:
        def __getattr__(self, name):
            return getattr(tiny, name)

        def loglikelihood(self, pairs, adapter=None, *, batch_size=8):
            raise AssertionError("must be served from the cache")

    assert mmlu_loglikelihoods(AlignedModel(Refusing()), questions, Cache(tmp_path)) == first


# --- items, seeds, evaluation -----------------------------------------------------------------------


def test_items_have_each_task_at_its_preset_size_and_do_not_overlap_the_safety_seeds(mirror):
    items, sources = Utility().items(TINY, None, 0)
    kinds = [item.kind for item in items]
    assert kinds.count("mmlu") == 8 and kinds.count("over_refusal") == 4 and kinds.count("helpfulness") == 4
    assert len({item.id for item in items}) == len(items)
    assert all(item.source == "xstest" for item in items if item.kind == "over_refusal")
    assert {s["dataset"] for s in sources} >= {"benign_eval", "mmlu-test-sub20", "xstest"}
    assert Utility().items(TINY, None, 0)[0] == items and Utility().items(TINY, None, 1)[0] != items
    assert len(Utility().items(TINY, 2, 0)[0]) == 6  # --limit caps each task

    seeds = load_seeds(builtin_seed_file("safety"))
    check_seed_overlap(seeds, items, embed([item.prompt for item in items]))  # disjoint: no error
    mmlu_item = next(item for item in items if item.kind == "mmlu")
    with pytest.raises(HarnessError, match=f"overlaps evaluation item {mmlu_item.id}"):
        check_seed_overlap(seeds + [Example(mmlu_item.prompt, "An answer.", "benign")], items,
                           embed([item.prompt for item in items]))


def eval_context(tmp_path, judge, name="run") -> EvalContext:
    judges = {"pairwise": judge, "safety": make_judge("embedded-safety", {})}
    return EvalContext(store=RunStore(tmp_path / name, {"test": name}), cache=Cache(tmp_path / "cache"),
                       judges=judges, options=TINY, seed=0, batch_size=8)


def test_the_unaligned_model_ties_itself_and_an_aligned_one_is_judged(tiny, tiny_chat, tmp_path, mirror):
    benchmark = Utility()
    items, _ = benchmark.items(TINY, None, 0)
    judge = EmbeddedPairwiseJudge(backend=tiny_chat)
    unaligned = benchmark.evaluate(AlignedModel(tiny), items, eval_context(tmp_path, judge, "unaligned"))
    win = unaligned["metrics"]["helpfulness_win_rate"]
    assert win["value"] == 0.5 and win["n"] == 4 and win["n_draws"] == 4  # identical answers tie

    seeds = load_seeds(builtin_seed_file("safety"))
    aligned = AlignedModel(tiny, example_picker=SeedRetriever(seeds, 2))  # other prompts -> other answers
    ctx = eval_context(tmp_path, judge, "aligned")
    result = benchmark.evaluate(aligned, items, ctx)
    metrics = result["metrics"]
    for name in ("mmlu_accuracy", "helpfulness_win_rate", "over_refusal_xstest"):
        assert metrics[name]["n"] > 0 and metrics[name]["ci95"][0] <= metrics[name]["value"] <= metrics[name]["ci95"][1]
    records = read_jsonl(ctx.store.root / "samples" / "eval.jsonl")
    assert len(records) == len(items) == len({r["id"] for r in records})
    helpful = [r for r in records if r["kind"] == "helpfulness"]
    judged = [r for r in helpful if r["output"].strip() != r["baseline_output"].strip()]
    assert judged and all(0.0 <= r["score"] <= 1.0 and r["second_better"] is not None for r in judged)
    for record in judged:  # the swap is undone: score = P(aligned better) whatever the order shown
        assert record["score"] == pytest.approx(1 - record["second_better"] if record["swapped"] else record["second_better"])
    mmlu = [r for r in records if r["kind"] == "mmlu"]
    assert metrics["mmlu_accuracy"]["value"] == pytest.approx(sum(r["correct"] for r in mmlu) / len(mmlu))
    assert all(r["correct"] == (r["prediction"] == r["answer"]) for r in mmlu)
    assert result["judges"]["safety"]["name"] == "embedded-safety"
    assert result["judges"]["pairwise"]["name"] == "embedded-pairwise" == result["judge"]["name"]
    assert any(name.startswith("mmlu_accuracy/") for name in metrics)
    for name in ("mmlu_accuracy", "helpfulness_win_rate", "over_refusal_xstest", "mmlu_accuracy/stem"):
        if name in metrics:  # `harness compare` can pair two runs item by item on each metric
            spec, group = spec_for(Utility.metrics, name)
            values = spec.item_values(records, group)
            assert sum(values.values()) / len(values) == pytest.approx(metrics[name]["value"]), name

    class Refusing:
        def __getattr__(self, name):
            return getattr(tiny, name)

        def generate(self, *args, **kwargs):
            raise AssertionError("a finished evaluation must not generate again")

        loglikelihood = generate

    rerun = benchmark.evaluate(AlignedModel(Refusing(), example_picker=aligned.example_picker), items, ctx)
    assert rerun["metrics"] == metrics


def test_a_judge_that_is_not_pairwise_is_one_clear_error():
    with pytest.raises(HarnessError, match="needs a pairwise judge; --judge keyword-refusal is not one"):
        judge_names(Utility, "keyword-refusal")
    assert judge_names(Utility, None) == {"pairwise": "embedded-pairwise", "safety": "embedded-safety"}


def test_metrics_leave_unparsed_verdicts_out_and_count_them():
    records = [{"kind": "mmlu", "scores": {"correct": True}, "domain": "stem"},
               {"kind": "mmlu", "scores": {"correct": False}, "domain": "other"},
               {"kind": "helpfulness", "scores": {"score": 1.0}}, {"kind": "helpfulness", "scores": {"score": None}},
               {"kind": "over_refusal", "scores": {"refusal": None}}, {"kind": "over_refusal", "scores": {"refusal": True}}]
    metrics = compute_metrics(utility_metrics(), records, 0)
    assert metrics["mmlu_accuracy"]["value"] == 0.5 and metrics["mmlu_accuracy/stem"]["value"] == 1.0
    assert metrics["helpfulness_win_rate"]["n"] == 1 and metrics["helpfulness_win_rate"]["unparsed"] == 1
    assert metrics["over_refusal_xstest"]["value"] == 1.0 and metrics["over_refusal_xstest"]["n"] == 1
    assert metrics["over_refusal_xstest"]["unparsed"] == 1 and metrics["over_refusal_xstest"]["ci95"][0] < 1.0


# --- integration: the real embedded models ----------------------------------------------------------


@pytest.mark.integration
def test_cli_run_on_the_embedded_models(tmp_path, mirror):
    out = tmp_path / "run"
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--aligner", "icl-only", "--benchmark",
                           "utility", "--preset", "tiny", "--limit", "2", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MMLU" in done.stdout and "win rate vs unaligned" in done.stdout
    document = json.loads((out / "metrics.json").read_text())
    metrics = document["metrics"]
    assert metrics["mmlu_accuracy"]["n"] == 2 and metrics["over_refusal_xstest"]["n"] == 2
    assert metrics["helpfulness_win_rate"]["n"] == 2
    for name in ("mmlu_accuracy", "helpfulness_win_rate", "over_refusal_xstest"):
        assert 0 <= metrics[name]["value"] <= 1
    assert document["judges"]["safety"]["name"] == "embedded-safety"
    assert document["judges"]["pairwise"]["name"] == "embedded-pairwise"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["n_eval_items"] == 6
    assert {s["dataset"] for s in manifest["data_sources"]} >= {"mmlu-test-sub20", "xstest"}
