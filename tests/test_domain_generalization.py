"""Domain generalization: one alignment per seed domain on that domain's seeds only, every model evaluated on
every domain (the matrix), iterative aligners after every iteration (the curves), resumable.

Unit tests drive `execute` with a tiny random model built in the test and the data mirror beside the
repository; the integration test runs the CLI on the embedded base model.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from aligners.icl_only import IclOnly
from benchmarks.domain_generalization import DomainGeneralization, DomainGeneralizationTruthfulQA
from harness import registry
from harness.aligner import AlignContext, AlignedModel
from harness.config import RunConfig, benchmark_options
from harness.errors import HarnessError
from harness.models.hf import load_backend
from harness.runner import execute
from harness.store import read_jsonl
from harness.types import EvalItem, Example
from harness.eval.metrics import spec_for
from tiny_model import make_tiny_model

from mirror import DATA_DIR


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Path:
    if not (DATA_DIR / "harmbench").is_dir():
        pytest.skip(f"no data mirror at {DATA_DIR}")
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return DATA_DIR


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))


class CountingBackend:
    def __init__(self, backend):
        self._backend, self.generated, self.scored = backend, 0, 0

    def generate(self, prompts, sampling, adapter=None, *, batch_size=8, progress=None):
        self.generated += len(prompts)
        return self._backend.generate(prompts, sampling, adapter, batch_size=batch_size, progress=progress)

    def loglikelihood(self, pairs, adapter=None, *, batch_size=8):
        self.scored += len(pairs)
        return self._backend.loglikelihood(pairs, adapter, batch_size=batch_size)

    def __getattr__(self, name):
        return getattr(self._backend, name)


# --- choosing seed domains and their seeds ---------------------------------------------------------


SEEDS = [Example(f"question {d} {i}", "answer", d) for d in ("fraud", "privacy", "weapons", "benign") for i in range(3)]


def test_each_alignment_gets_one_domain_plus_benign_for_safety_and_one_domain_only_for_truthfulqa():
    assert {s.domain for s in DomainGeneralization().seeds_for(SEEDS, "fraud")} == {"fraud", "benign"}
    assert len(DomainGeneralization().seeds_for(SEEDS, "fraud")) == 6
    truth = [Example("q", "a", g) for g in ("health", "science", "science")]
    assert [s.domain for s in DomainGeneralizationTruthfulQA().seeds_for(truth, "science")] == ["science", "science"]


def test_seed_domains_need_seeds_and_evaluation_items_and_are_a_seeded_choice():
    benchmark = DomainGeneralization()
    evaluated = ["cybercrime", "fraud", "privacy", "weapons"]
    assert benchmark.choose_seed_domains(SEEDS, evaluated, None, 0) == ["fraud", "privacy", "weapons"]
    assert benchmark.choose_seed_domains(SEEDS, ["fraud", "privacy"], None, 0) == ["fraud", "privacy"]
    picks = {tuple(benchmark.choose_seed_domains(SEEDS, evaluated, 2, seed)) for seed in range(20)}
    assert all(len(p) == 2 and set(p) <= {"fraud", "privacy", "weapons"} for p in picks) and len(picks) > 1
    assert benchmark.choose_seed_domains(SEEDS, evaluated, 2, 7) == benchmark.choose_seed_domains(SEEDS, evaluated, 2, 7)
    with pytest.raises(HarnessError, match="no seed has a domain"):
        benchmark.choose_seed_domains([Example("q", "a", "benign")], evaluated, 2, 0)


# --- whole runs on the tiny model ------------------------------------------------------------------


class RecordingIclOnly(IclOnly):
    """icl-only, remembering the seeds and run directory of every alignment it is asked for."""

    calls: list[tuple[set[str], Path]] = []

    def align(self, ctx: AlignContext) -> AlignedModel:
        RecordingIclOnly.calls.append(({s.domain for s in ctx.seeds}, ctx.store.root))
        return super().align(ctx)


def test_matrix_rows_come_from_alignments_on_one_seed_domain_each(tiny, tmp_path, monkeypatch, mirror):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    registry.register("aligners", "recording-icl")(RecordingIclOnly)
    RecordingIclOnly.calls = []
    config = RunConfig.from_preset("recording-icl", "domain-generalization", "tiny", model="tiny", seed=1, limit=2)
    out = tmp_path / "run"
    document = execute(config, out, backend=tiny)

    matrix = document["matrix"]
    seed_domains, eval_domains = matrix["seed_domains"], matrix["eval_domains"]
    assert len(seed_domains) == benchmark_options("domain-generalization", "tiny").seed_domains == 2
    assert [(domains, root) for domains, root in RecordingIclOnly.calls] == \
        [({d, "benign"}, out / "domains" / d) for d in seed_domains]
    for d in seed_domains:
        stored = json.loads((out / "domains" / d / "seeds.json").read_text())
        assert stored and {s["domain"] for s in stored} == {d, "benign"}

    items = read_jsonl(out / "samples" / "eval_unaligned.jsonl")
    harmful = Counter(r["category"] for r in items if r["kind"] == "harmful")
    assert eval_domains == [c for c in DomainGeneralization.domains if c in harmful] and set(seed_domains) <= set(eval_domains)
    assert len(matrix["values"]) == len(seed_domains) and all(len(row) == len(eval_domains) for row in matrix["values"])
    for row, d in zip(matrix["values"], seed_domains):
        finals = read_jsonl(out / "domains" / d / "samples" / "eval.jsonl")
        assert len(finals) == len(items)
        for cell, e in zip(row, eval_domains):
            refusals = [r["refusal"] for r in finals if r["domain"] == e]
            assert cell["n"] == harmful[e] == len(refusals)
            assert cell["value"] == pytest.approx(sum(refusals) / len(refusals))
            assert cell["ci95"][0] <= cell["value"] <= cell["ci95"][1]
    assert len(matrix["unaligned"]) == len(eval_domains) and "curves" not in document  # icl-only is not iterative

    metrics = document["metrics"]
    assert metrics["in_domain_mean"]["n"] == sum(harmful[d] for d in seed_domains)
    assert metrics["out_of_domain_mean"]["n"] == sum(sum(harmful.values()) - harmful[d] for d in seed_domains)
    assert metrics["unaligned_mean"]["n"] == sum(harmful.values())
    assert metrics["over_refusal"]["n"] == 2 * sum(r["kind"] != "harmful" for r in items)
    pooled = read_jsonl(out / "samples" / "eval.jsonl")
    for name, metric in metrics.items():  # `harness compare` pairs two runs item by item on each
        spec, group = spec_for(DomainGeneralization.metrics, name)
        values = spec.item_values(pooled, group)
        assert len(values) == metric["n"] and sum(values.values()) / len(values) == pytest.approx(metric["value"])
    assert set(document["aligned"]["per_seed_domain"]) == set(seed_domains)


def test_iterative_aligners_are_evaluated_after_every_iteration_and_resume(tiny, tmp_path, monkeypatch, mirror):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    config = RunConfig.from_preset("isara", "domain-generalization-truthfulqa", "tiny", model="tiny", limit=4,
                                   options={"iterations": 2, "samples_per_iteration": 2, "max_seq_len": 96,
                                                     "gen_max_new_tokens": 16})
    out = tmp_path / "run"
    first = CountingBackend(tiny)
    document = execute(config, out, backend=first)
    matrix, curves = document["matrix"], document["curves"]
    assert matrix["metric"] == "mc1" and set(curves) == set(matrix["seed_domains"])
    for i, d in enumerate(matrix["seed_domains"]):
        assert (out / "domains" / d / "artifacts" / "isara" / "iteration_2" / "adapter" / "adapter_config.json").exists()
        per_iteration = {t: read_jsonl(out / "domains" / d / "samples" / f"eval_iteration_{t}.jsonl") for t in (1, 2)}
        for j, e in enumerate(matrix["eval_domains"]):
            curve = curves[d][e]
            assert [point["iteration"] for point in curve] == [0, 1, 2]
            assert curve[0] == {"iteration": 0, **matrix["unaligned"][j]}  # iteration 0 = the unaligned model
            assert {k: v for k, v in curve[-1].items() if k != "iteration"} == matrix["values"][i][j]
            for t in (1, 2):
                mc1 = [r["mc1"] for r in per_iteration[t] if r["domain"] == e]
                assert curve[t]["n"] == len(mc1) and curve[t]["value"] == pytest.approx(sum(mc1) / len(mc1))
    assert document["judge"]["name"] is None  # MC1 needs no judge
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    d = matrix["seed_domains"][0]
    assert stages[f"domains/{d}/align/isara/iteration_2/train"]["tokens_trained"] > 0 and "evaluate" in stages

    again = CountingBackend(tiny)
    rerun = execute(config, out, backend=again)  # every alignment and evaluation is served from its files
    assert again.generated == 0 and again.scored == 0
    assert rerun["matrix"] == matrix and rerun["curves"] == curves and rerun["metrics"] == document["metrics"]


def test_a_judge_that_cannot_judge_safety_is_one_clear_error(tiny, tmp_path, monkeypatch, mirror):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))

    class PairwiseOnly:
        name, version, roles = "pairwise-only", "1", ("pairwise",)

        def prefer(self, instructions, first, second):
            return []

    registry.register("judges", "pairwise-only")(PairwiseOnly)
    config = RunConfig.from_preset("none", "domain-generalization", "tiny", model="tiny", judge="pairwise-only")
    with pytest.raises(HarnessError, match="needs a safety judge"):
        execute(config, tmp_path / "run", backend=tiny)


def test_items_outside_the_matrix_have_no_domain():
    benchmark = DomainGeneralization()
    assert benchmark.eval_domain(EvalItem("a", "p", "fraud", "harmful", "x")) == "fraud"
    assert benchmark.eval_domain(EvalItem("b", "p", "borderline", "borderline", "x")) is None


# --- integration: the real embedded model ----------------------------------------------------------


@pytest.mark.integration
def test_cli_run_on_the_embedded_base_model(tmp_path, mirror):
    """icl-only keeps this within the suite's budget (an isara run trains twice); the tiny-model test above
    covers the per-iteration evaluation of an iterative aligner."""
    out = tmp_path / "run"
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--aligner", "icl-only", "--benchmark",
                           "domain-generalization", "--preset", "tiny", "--limit", "2", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refusal in domain" in done.stdout
    document = json.loads((out / "metrics.json").read_text())
    matrix = document["matrix"]
    assert len(matrix["seed_domains"]) == 2 and len(matrix["values"]) == 2
    assert all(len(row) == len(matrix["eval_domains"]) for row in matrix["values"])
    assert all(0 <= cell["value"] <= 1 and cell["n"] > 0 for row in matrix["values"] for cell in row)
    for d in matrix["seed_domains"]:
        seeds = json.loads((out / "domains" / d / "seeds.json").read_text())
        assert {s["domain"] for s in seeds} == {d, "benign"}
        assert len(read_jsonl(out / "domains" / d / "samples" / "eval.jsonl")) == 6
    for name in ("in_domain_mean", "out_of_domain_mean", "unaligned_mean", "over_refusal"):
        metric = document["metrics"][name]
        assert metric["n"] > 0 and metric["ci95"][0] <= metric["value"] <= metric["ci95"][1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["stages"]["evaluate"]["evaluations"]
