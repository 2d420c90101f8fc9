"""AlpacaEval: win-rate maths, parity with the published leaderboards, the benchmark on a tiny model, seeds.

Parity: from the GPT-4 judge annotations shipped in the data mirror, the win rates (and standard errors)
of every annotated leaderboard model are recomputed and must match the published CSVs within 0.5 points.
Length-controlled win rates can only be approximated: AlpacaEval fits them with an instruction-difficulty
table and length-gamed baseline annotations that live on the Hugging Face hub only (see docs/alpacaeval.md).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks.alpacaeval import AlpacaEval, AlpacaEval1, alpacaeval_metrics, is_swapped, lc_metric
from harness.eval.metrics import compute_metrics
from benchmarks.alpacaeval_data import (build_panel, load_annotations, load_eval_set, load_leaderboard,
                                        load_model_outputs)
from harness.aligner import AlignedModel
from harness.benchmark import EvalContext
from harness.eval.options import QuestionOptions
from harness.errors import HarnessError
from harness.judges.pairwise import EmbeddedPairwiseJudge, Preference
from harness.models.hf import load_backend
from harness.seeds import builtin_seed_file, load_seeds
from harness.store import Cache, RunStore
from harness.winrate import (fit_instruction_difficulty, length_controlled_from_features, length_controlled_win_rate,
                             length_feature, score_from_preference, win_rate)
from tiny_model import make_tiny_model

from mirror import DATA_DIR

needs_mirror = pytest.mark.skipif(not (DATA_DIR / "alpacaeval").is_dir(), reason="no data mirror (HARNESS_DATA_DIR or ../shared/data)")


# --- win-rate maths ---------------------------------------------------------------------------------


def test_alpacaeval_preferences_convert_to_scores():
    assert [score_from_preference(p) for p in (1, 2, 1.5, 0, 1.25)] == [0.0, 1.0, 0.5, 0.5, 0.25]
    assert score_from_preference(None) is None and score_from_preference(float("nan")) is None
    assert score_from_preference(3.0) is None


def test_win_rate_counts_and_standard_error():
    result = win_rate([1.0, 0.0, 0.5, 1.0])
    assert result.win_rate == pytest.approx(0.625) and (result.n_wins, result.n_losses, result.n_draws) == (2, 1, 1)
    assert result.standard_error == pytest.approx(np.std([1, 0, 0.5, 1], ddof=1) / 2)
    assert result.discrete_win_rate == pytest.approx(0.625)
    assert win_rate([0.9, 0.6]).discrete_win_rate == 1.0 and np.isnan(win_rate([1.0]).standard_error)


def test_without_length_differences_lc_equals_the_raw_win_rate():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 200) ** 2
    difficulty = rng.normal(size=200)
    lengths = np.full(200, 500.0)
    lc = length_controlled_win_rate(scores, lengths, lengths, difficulty, n_boot=20)
    # A logistic fit with a constant term reproduces the mean of its targets.
    assert lc.win_rate == pytest.approx(scores.mean(), abs=1e-3) and lc.weights["length"] == 0.0
    assert lc.ci95[0] < lc.win_rate < lc.ci95[1]


def test_lc_removes_a_win_rate_that_only_comes_from_longer_outputs():
    rng = np.random.default_rng(1)
    baseline = np.full(400, 1000.0)
    model = baseline + rng.normal(400, 400, 400)  # usually longer, sometimes shorter
    feature = length_feature(model, baseline)
    scores = 1 / (1 + np.exp(2.5 * feature))  # the judge only rewards length; quality is equal
    raw = win_rate(scores).win_rate
    lc = length_controlled_win_rate(scores, model, baseline, np.zeros(400), n_boot=20)
    assert raw > 0.75 and lc.win_rate == pytest.approx(0.5, abs=0.02) and lc.weights["length"] < -2


def test_instruction_difficulty_is_recovered_from_a_simulated_panel():
    rng = np.random.default_rng(2)
    n_items, strengths = 300, [-2.0, -1.0, 0.0, 0.5, 1.5, 2.5]
    truth = rng.normal(size=n_items)
    models, items, scores, lengths = [], [], [], []
    for k, strength in enumerate(strengths):
        feature = np.tanh(rng.normal(size=n_items))
        p = 1 / (1 + np.exp(-(strength - 1.2 * feature + 1.0 * truth)))
        models += [f"m{k}"] * n_items
        items.append(np.arange(n_items))
        scores.append(rng.binomial(1, p).astype(float))
        lengths.append(feature)
    difficulty = fit_instruction_difficulty(models, np.concatenate(items), np.concatenate(scores),
                                            np.concatenate(lengths), n_items)
    assert abs(np.corrcoef(difficulty, truth)[0, 1]) > 0.6  # six binary votes per item: a noisy but real signal


def test_metrics_count_unparsed_verdicts_and_report_every_subset():
    records = [{"id": f"alpacaeval:{i}", "category": "koala" if i % 2 else "vicuna", "score": s,
                "output": "x" * (10 + i), "reference": "y" * 20, "scores": {"score": s}}
               for i, s in enumerate([1.0, 0.0, None, 0.75])]
    metrics = compute_metrics(alpacaeval_metrics(), records, seed=0)
    metrics["lc_win_rate"] = lc_metric(records, [0.0, 0.5, 1.0, -1.0], 0, unparsed=1)
    assert metrics["win_rate"]["n"] == 3 and metrics["win_rate"]["unparsed"] == 1
    assert metrics["win_rate"]["value"] == pytest.approx(1.75 / 3)
    assert metrics["win_rate/koala"]["n"] == 2 and metrics["win_rate/vicuna"]["unparsed"] == 1
    assert metrics["lc_win_rate"]["n"] == 3 and set(metrics["lc_win_rate"]) >= {"value", "ci95", "n"}
    assert lc_metric(records, None, 0, unparsed=1)["value"] is None


# --- parity with the published leaderboards --------------------------------------------------------


def recomputed_win_rates(reference: str) -> dict[str, tuple[float, float]]:
    annotations = load_annotations(reference)
    rates = {}
    for model, group in annotations.groupby("generator_2"):
        scores = group["score"].dropna().to_numpy(float)
        result = win_rate(scores)
        rates[model] = (100 * result.win_rate, 100 * result.standard_error)
    return rates


@pytest.mark.parametrize("reference", ["ae2", "ae1"])
@needs_mirror
def test_win_rates_match_the_published_leaderboard(reference, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    leaderboard = load_leaderboard(reference)
    rates = recomputed_win_rates(reference)
    compared = [m for m in rates if m in leaderboard.index and leaderboard.loc[m, "n_total"] > 1
                and m != load_eval_set(reference)[0].reference_generator]
    assert len(compared) >= 5
    for model in compared:
        value, error = rates[model]
        assert value == pytest.approx(leaderboard.loc[model, "win_rate"], abs=0.5), model
        assert error == pytest.approx(leaderboard.loc[model, "standard_error"], abs=0.05), model


@needs_mirror
def test_length_controlled_win_rates_approximate_the_published_ones(monkeypatch):
    """Each model's LC win rate, with instruction difficulty fitted on the *other* annotated models."""
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    rows = load_eval_set("ae2")
    panel = build_panel(load_annotations("ae2"), load_model_outputs(), rows)
    leaderboard = load_leaderboard("ae2")
    gaps, ours, published = {}, [], []
    for model in sorted(set(panel.models) & set(leaderboard.index)):
        rows_of_model = np.array([m == model for m in panel.models])
        difficulty = panel.without(model).difficulty()
        lc = length_controlled_from_features(panel.scores[rows_of_model], panel.length[rows_of_model],
                                             difficulty[panel.instructions[rows_of_model]], n_boot=0)
        gaps[model] = 100 * lc.win_rate - leaderboard.loc[model, "length_controlled_winrate"]
        ours.append(lc.win_rate)
        published.append(leaderboard.loc[model, "length_controlled_winrate"])
    close = sorted(m for m, gap in gaps.items() if abs(gap) <= 0.5)
    # Measured: 10 of 25 within 0.5 points, median absolute gap 1.0; the largest gaps are length-driven models
    # (gpt4_gamed +17.7), which AlpacaEval's hub-only gamed-baseline regularisation is there to tame.
    assert len(gaps) == 25 and len(close) >= 8, gaps
    assert np.median(np.abs(list(gaps.values()))) <= 1.5
    rank = lambda values: np.argsort(np.argsort(values))
    assert np.corrcoef(rank(ours), rank(published))[0, 1] >= 0.93  # measured: Spearman 0.951


# --- the benchmark ----------------------------------------------------------------------------------


class LongerIsBetter:
    """A stand-in judge for testing the position swap: prefers the longer output, whichever side it is on."""

    name = "longer-is-better"
    version = "1"
    roles = ("pairwise",)

    def __init__(self):
        self.calls = 0

    def prefer(self, instructions, first, second):
        self.calls += len(instructions)
        return [Preference(1.0 if len(b) > len(a) else 0.0 if len(b) < len(a) else 0.5, "len")
                for a, b in zip(first, second)]


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("ae_chat"), chat=True)))


def run_benchmark(benchmark, backend, judge, root: Path, questions: int = 6):
    size = QuestionOptions(max_new_tokens=8, questions=questions)
    items, sources = benchmark.items(size, None, seed=3)
    store = RunStore(root / "run", {"test": "alpacaeval", "benchmark": benchmark.name})
    ctx = EvalContext(store=store, cache=Cache(root / "cache"), judges={"pairwise": judge}, options=size, seed=3,
                      batch_size=4)
    return items, sources, store, benchmark.evaluate(AlignedModel(backend), items, ctx)


@needs_mirror
def test_benchmark_unswaps_verdicts_writes_samples_and_resumes(tiny_chat, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    judge = LongerIsBetter()
    items, sources, store, result = run_benchmark(AlpacaEval(), tiny_chat, judge, tmp_path)
    assert len(items) == 6 and all(i.id.startswith("alpacaeval:") for i in items)
    assert {s["dataset"] for s in sources} >= {"alpacaeval-ae2", "alpacaeval-instruction-difficulty-ae2"}
    samples = store.read_samples("eval")
    assert len(samples) == 6 and {s["swapped"] for s in samples} == {True, False}
    for sample in samples:  # the model's score follows its length, whichever side it was shown on
        expected = 1.0 if len(sample["output"]) > len(sample["reference"]) else 0.0
        assert sample["score"] == expected and sample["reference_generator"] == "gpt4_1106_preview"
        assert sample["swapped"] == is_swapped(3, sample["id"])
    metrics = result["metrics"]
    assert metrics["win_rate"]["n"] == 6 and metrics["lc_win_rate"]["value"] is not None
    assert result["judge"] == {"name": "longer-is-better", "version": "1", "unparsed": 0, "failed": 0}
    # Resume: a rerun in the same directory judges nothing and reproduces the metrics.
    calls = judge.calls
    _, _, _, again = run_benchmark(AlpacaEval(), tiny_chat, judge, tmp_path)
    assert judge.calls == calls and again["metrics"] == metrics


@needs_mirror
def test_ae1_uses_the_text_davinci_003_reference_with_the_embedded_judge_on_a_tiny_model(tiny_chat, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    judge = EmbeddedPairwiseJudge(backend=tiny_chat, max_output_chars=200, max_instruction_chars=200,
                                  cache=Cache(tmp_path / "judge-cache"))
    _, _, store, result = run_benchmark(AlpacaEval1(), tiny_chat, judge, tmp_path, questions=3)
    samples = store.read_samples("eval")
    assert {s["reference_generator"] for s in samples} == {"text_davinci_003"} and len(samples) == 3
    assert all(0.0 <= s["score"] <= 1.0 and "logp(A)" in s["judge_raw"] for s in samples)
    assert result["metrics"]["win_rate"]["n"] == 3 and result["reference"]["name"] == "ae1"


def test_without_mirror_or_hub_the_eval_set_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HarnessError) as error:
        load_eval_set("ae2")
    message = str(error.value)
    assert "\n" not in message and "mirror" in message and "huggingface" in message
    with pytest.raises(HarnessError, match="unknown AlpacaEval reference"):
        load_eval_set("ae3")


# --- seeds ------------------------------------------------------------------------------------------


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_seed_set_is_small_diverse_and_well_formed():
    seeds = load_seeds(builtin_seed_file("alpacaeval"))
    domains = {s.domain for s in seeds}
    assert 32 <= len(seeds) <= 100 and len(domains) >= 6
    assert len({s.question for s in seeds}) == len(seeds) and all(len(s.answer) >= 20 for s in seeds)


@needs_mirror
def test_seed_questions_are_disjoint_from_all_805_instructions(monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    instructions = [words(r.instruction) for r in load_eval_set("ae2")]
    for seed in load_seeds(builtin_seed_file("alpacaeval")):
        mine = words(seed.question)
        overlap = max(len(mine & other) / len(mine | other) for other in instructions)
        assert overlap < 0.7, seed.question


@pytest.mark.integration
@needs_mirror
def test_seed_questions_are_not_near_duplicates_by_embedding(monkeypatch):
    from harness.embedding import embed
    from harness.runner import SEED_OVERLAP_SIMILARITY

    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    seeds = load_seeds(builtin_seed_file("alpacaeval"))
    similarity = embed([s.question for s in seeds]) @ embed([r.instruction for r in load_eval_set("ae2")]).T
    assert similarity.max() < SEED_OVERLAP_SIMILARITY


@pytest.mark.integration
@needs_mirror
def test_tiny_alpacaeval_run_on_the_embedded_chat_model(tmp_path, monkeypatch):
    from harness.cli import main

    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    out = tmp_path / "run"
    assert main(["run", "--aligner", "none", "--benchmark", "alpacaeval", "--preset", "tiny", "--limit", "4",
                 "--model", "smollm2-135m-instruct", "--out", str(out), "--quiet"]) == 0
    document = json.loads((out / "metrics.json").read_text())
    assert document["judge"]["name"] == "embedded-pairwise" and document["judge"]["unparsed"] == 0
    for key in ("win_rate", "lc_win_rate", "discrete_win_rate"):
        metric = document["metrics"][key]
        assert metric["n"] == 4 and 0.0 <= metric["value"] <= 1.0 and len(metric["ci95"]) == 2
    assert len((out / "samples" / "eval.jsonl").read_text().splitlines()) == 4
