"""Pairwise judges: the protocol, the embedded judge (tiny random model; the real one in integration
tests), and agreement / position-bias statistics against human-labelled pairs."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.judges.pairwise import EmbeddedPairwiseJudge, Preference, SingleOrderPairwiseJudge, clip
from harness.judges.validate import format_report
from harness.judges.validate_pairwise import PAIRWISE_SETS, load_pairwise_set, pairwise_agreement, validate_pairwise
from harness.models.hf import load_backend
from harness.store import Cache
from tiny_model import make_tiny_model

from mirror import DATA_DIR

needs_mirror = pytest.mark.skipif(not (DATA_DIR / "llmbar").is_dir(), reason="no data mirror (HARNESS_DATA_DIR or ../shared/data)")

INSTRUCTIONS = ["Name a primary colour.", "What is 2 + 2?", "Write a greeting."]
GOOD = ["Red is a primary colour.", "2 + 2 = 4.", "Hello, and welcome!"]
BAD = ["Bananas are yellow and grow in bunches on tall plants.", "Five.", "Goodbye."]


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("judge_chat"), chat=True)))


@pytest.fixture(scope="module")
def tiny_qa(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("judge_qa"))))


def test_preference_is_a_frozen_record_with_an_optional_raw_answer():
    preference = Preference(0.25)
    assert preference.raw == "" and Preference(None).second_better is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        preference.second_better = 1.0  # type: ignore[misc]


def test_averaging_both_orders_makes_the_verdict_independent_of_position(tiny_chat, tmp_path):
    judge = EmbeddedPairwiseJudge(backend=tiny_chat, cache=Cache(tmp_path))
    forward = judge.prefer(INSTRUCTIONS, GOOD, BAD)
    backward = judge.prefer(INSTRUCTIONS, BAD, GOOD)
    assert len(forward) == 3 and all(0.0 <= p.second_better <= 1.0 for p in forward)
    for f, b in zip(forward, backward):
        assert f.second_better == pytest.approx(1.0 - b.second_better, abs=1e-9)
        assert "swapped" in f.raw and "logp(A)" in f.raw


def test_single_order_judge_reads_only_the_order_given(tiny_chat, tmp_path):
    single = SingleOrderPairwiseJudge(backend=tiny_chat, cache=Cache(tmp_path))
    both = EmbeddedPairwiseJudge(backend=tiny_chat, cache=Cache(tmp_path))
    one = single.prefer(INSTRUCTIONS, GOOD, BAD)
    prompts = [single.comparison_prompt(i, g, b) for i, g, b in zip(INSTRUCTIONS, GOOD, BAD)]
    assert [p.second_better for p in one] == pytest.approx([single._scores[p].p_b for p in prompts])
    # A random model has a position preference, so one order alone is not symmetric.
    other = single.prefer(INSTRUCTIONS, BAD, GOOD)
    assert any(abs(a.second_better + b.second_better - 1.0) > 1e-6 for a, b in zip(one, other))
    assert single.version != both.version


def test_letter_scores_are_cached_on_disk_and_shared_by_both_variants(tiny_chat, tmp_path, monkeypatch):
    first = EmbeddedPairwiseJudge(backend=tiny_chat, cache=Cache(tmp_path)).prefer(INSTRUCTIONS, GOOD, BAD)

    def no_forward(*args, **kwargs):
        raise AssertionError("the model ran although every prompt was cached")

    monkeypatch.setattr(tiny_chat, "model", no_forward)
    again = EmbeddedPairwiseJudge(backend=tiny_chat, cache=Cache(tmp_path)).prefer(INSTRUCTIONS, GOOD, BAD)
    single = SingleOrderPairwiseJudge(backend=tiny_chat, cache=Cache(tmp_path)).prefer(INSTRUCTIONS, GOOD, BAD)
    assert [p.second_better for p in again] == [p.second_better for p in first] and len(single) == 3


def test_a_plain_language_model_judges_too(tiny_qa, tmp_path):
    judge = EmbeddedPairwiseJudge(backend=tiny_qa, cache=Cache(tmp_path))
    assert judge.comparison_prompt("Say hi.", "hi", "bye").endswith("\nAnswer:")
    assert len(judge.prefer(INSTRUCTIONS[:1], GOOD[:1], BAD[:1])) == 1


def test_mismatched_inputs_and_long_texts(tiny_chat, tmp_path):
    judge = EmbeddedPairwiseJudge(backend=tiny_chat, cache=Cache(tmp_path), max_output_chars=40)
    with pytest.raises(HarnessError, match="one of each"):
        judge.prefer(INSTRUCTIONS, GOOD, BAD[:2])
    assert clip("x" * 100, 40) == "x" * 40 + " [...]" and clip(" short ", 40) == "short"
    assert "x" * 41 not in judge.comparison_prompt("q", "x" * 500, "y")


def test_agreement_kappa_and_position_bias_of_a_judge_that_always_picks_the_first_output():
    labels = np.array([1, 2, 1, 2])
    first = [Preference(0.0)] * 4
    stats = pairwise_agreement(first, first, labels)
    # Each pair is right in exactly one of its two orders; every verdict flips with the order.
    assert stats["agreement"]["value"] == pytest.approx(0.5) and stats["agreement"]["n"] == 8
    assert stats["kappa"] == pytest.approx(0.0)
    assert stats["position_bias_rate"]["value"] == 1.0 and stats["first_position_rate"] == 1.0


def test_agreement_of_a_consistent_judge_and_the_counting_of_unparsed_and_ties():
    labels = np.array([2, 1, 2, 1])
    forward = [Preference(0.9), Preference(0.2), Preference(None, "garbage"), Preference(0.5)]
    swapped = [Preference(0.1), Preference(0.7), Preference(0.3), Preference(0.5)]
    stats = pairwise_agreement(forward, swapped, labels)
    # Judged presentations: pair 0 right twice, pair 1 right twice, pair 2 right once (swapped), ties 0.5 twice.
    assert stats["agreement"]["value"] == pytest.approx(6 / 7) and stats["agreement"]["n"] == 7
    assert stats["unparsed"] == 1 and stats["ties"] == 2
    assert stats["position_bias_rate"]["value"] == 0.0 and stats["position_bias_rate"]["n"] == 2
    assert stats["kappa"] == pytest.approx(1.0)


@needs_mirror
def test_pairwise_sets_load_with_binary_human_labels(monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    sizes = {name: len(load_pairwise_set(name)) for name in PAIRWISE_SETS}
    assert sizes["llmbar"] == 419 and sizes["llmbar-natural"] == 100 and sizes["llmbar-adversarial"] == 319
    assert sizes["mtbench-human"] > 0 and set(load_pairwise_set("llmbar")["label"]) == {1, 2}


@needs_mirror
def test_validation_of_a_tiny_judge_on_a_seeded_subset(tiny_chat, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    judge = EmbeddedPairwiseJudge(backend=tiny_chat, cache=Cache(tmp_path), max_output_chars=200, max_instruction_chars=200)
    result = validate_pairwise("embedded-pairwise", "llmbar", limit=10, judge=judge)
    again = validate_pairwise("embedded-pairwise", "llmbar", limit=10, judge=judge)
    assert result["overall"]["n_pairs"] == 10 and result["overall"] == again["overall"]
    assert result["overall"]["position_bias_rate"]["value"] == 0.0  # both orders averaged: by construction
    assert sum(s["n_pairs"] for s in result["by_subset"].values()) == 10
    assert "agreement" in format_report(result) and "position-bias" in format_report(result)


def test_validating_a_judge_that_is_not_pairwise_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    if not (DATA_DIR / "llmbar").is_dir():
        pytest.skip("no data mirror")
    assert main(["judge", "validate", "--judge", "keyword-refusal", "--against", "llmbar", "--limit", "2"]) == 2
    assert "not a pairwise judge" in capsys.readouterr().err


@pytest.mark.integration
@needs_mirror
def test_embedded_judge_on_human_labelled_pairs(monkeypatch, capsys):
    """The real judge on a seeded 20-pair LLMBar subset through the CLI; the full numbers are in the docs."""
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    assert main(["judge", "validate", "--judge", "embedded-pairwise", "--against", "llmbar-natural",
                 "--limit", "20", "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    overall = result["overall"]
    assert overall["n_pairs"] == 20 and overall["unparsed"] == 0 and overall["agreement"]["n"] == 40
    assert overall["position_bias_rate"]["value"] == 0.0
    assert 0.0 <= overall["agreement"]["value"] <= 1.0
