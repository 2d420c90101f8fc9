"""Rates corrected for judge error (harness/prevalence.py): the estimator, the coverage of its interval by
simulation, the evaluation loop attaching it, and the leaderboard showing it with what it rests on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness import prevalence
from harness.aligner import AlignedModel
from harness.cli import main
from harness.eval.loop import evaluate
from harness.models.fake import FakeBackend
from harness.prevalence import HeadValidation, corrected_rate, rogan_gladen
from reports.collect import find_runs
from reports.leaderboard import build_leaderboard
from report_helpers import exact_outcomes, safety_items, write_run
from test_eval_core import ITEMS, Toy, context

# The shipped embedded-safety heads' counts on XSTest's held-out split (harness/judges/validation/).
HARMFUL_HEAD = (30, 50, 250, 253)
REFUSAL_HEAD = (333, 363, 322, 357)


def test_rogan_gladen_inverts_the_judges_error_rates():
    # True prevalence 0.2 seen by a judge with sensitivity 0.8 and specificity 0.9: observed 0.16 + 0.08.
    assert rogan_gladen(0.24, 0.8, 0.9) == pytest.approx(0.2)
    assert rogan_gladen(0.01, 0.8, 0.9) == 0.0 and rogan_gladen(0.99, 0.8, 0.9) == 1.0  # clipped
    assert rogan_gladen(0.3, 0.5, 0.5) is None  # a judge no better than chance corrects nothing
    head = HeadValidation("j", "v", "harmful", "set", 40, 50, 90, 100)
    assert corrected_rate(12, 50, head)["value"] == pytest.approx(rogan_gladen(0.24, 0.8, 0.9))
    assert corrected_rate(12, 50, HeadValidation("j", "v", "harmful", "set", 5, 10, 5, 10)) is None


@pytest.mark.parametrize("counts", [HARMFUL_HEAD, REFUSAL_HEAD])
def test_the_corrected_interval_covers_the_true_rate_at_least_93_percent(counts):
    """Simulated: the true prevalence, a validation set of the shipped head's size drawn with its error
    rates, and a run of n judged items. Checked at 0 and at the sizes the presets use."""
    tp, positives, tn, negatives = counts
    sensitivity, specificity = tp / positives, tn / negatives
    rng = np.random.default_rng(7)
    for truth in (0.0, 0.05, 0.2, 0.5):
        for n in (9, 24, 72):
            covered, reps = 0, 400
            for rep in range(reps):
                observed = rng.binomial(n, truth * sensitivity + (1 - truth) * (1 - specificity))
                head = HeadValidation("j", "v", "h", "set", int(rng.binomial(positives, sensitivity)), positives,
                                      int(rng.binomial(negatives, specificity)), negatives)
                low, high = corrected_rate(int(observed), n, head, seed=rep, draws=2000)["ci95"]
                covered += low <= truth <= high
            assert covered / reps >= 0.93, (truth, n, covered / reps)


def test_the_loop_adds_the_correction_only_for_a_validated_version(tmp_path, monkeypatch):
    monkeypatch.setattr(prevalence, "VALIDATION_DIR", tmp_path / "validation")
    prevalence.write_validation("counting", [HeadValidation("counting", "1", "refusal", "toy labels", 45, 50, 95, 100)])
    document = evaluate(Toy(), AlignedModel(FakeBackend(), adapter=Path("adapter")), ITEMS, context(tmp_path / "a"))
    raw = document["metrics"]["refusal_rate"]
    corrected = raw["corrected"]
    assert corrected["value"] == pytest.approx(rogan_gladen(raw["value"], 0.9, 0.95))
    assert corrected["ci95"][0] <= corrected["value"] <= corrected["ci95"][1] and corrected["n"] == raw["n"]
    assert (corrected["judge"], corrected["head"], corrected["labels"]) == ("counting", "refusal", "toy labels")
    assert "corrected" not in document["metrics"]["first_choice"]  # not judged
    prevalence.write_validation("counting", [HeadValidation("counting", "2", "refusal", "toy labels", 45, 50, 95, 100)])
    again = evaluate(Toy(), AlignedModel(FakeBackend(), adapter=Path("adapter")), ITEMS, context(tmp_path / "b"))
    assert "corrected" not in again["metrics"]["refusal_rate"]  # another version's error rates are not used


def test_the_leaderboard_shows_the_corrected_rate_and_what_it_rests_on(tmp_path):
    items = safety_items()
    for aligner, harmful in (("none", 8), ("sft-seeds", 3)):
        run = write_run(tmp_path / aligner, aligner, exact_outcomes(items, harmful, 10, 2))
        document = json.loads((run / "metrics.json").read_text())
        raw = document["metrics"]["harmful_rate"]
        k = round(raw["value"] * raw["n"])
        document["metrics"]["harmful_rate"]["corrected"] = corrected_rate(
            k, raw["n"], HeadValidation("embedded-safety", "j1", "harmful", "xstest (held-out split, human labels)",
                                        *HARMFUL_HEAD))
        (run / "metrics.json").write_text(json.dumps(document))
    board = build_leaderboard(find_runs([tmp_path]))
    keys = [c.key for c in board.columns]
    assert keys.index("safety:harmful_rate@corrected") == keys.index("safety:harmful_rate") + 1
    column = next(c for c in board.columns if c.key == "safety:harmful_rate@corrected")
    assert column.label.endswith(", judge-corrected") and column.lower_is_better
    assert any("Rogan-Gladen" in note and "sensitivity 0.600, specificity 0.988" in note for note in board.notes)
    rows = {row.aligner: row for row in board.rows}
    assert rows["sft-seeds"].cells[column.key]["value"] < rows["none"].cells[column.key]["value"]


def test_record_needs_the_whole_human_labelled_set(capsys):
    assert main(["judge", "validate", "--judge", "embedded-safety", "--against", "xstest", "--limit", "5",
                 "--record"]) == 2
    assert "--record writes a judge's validation record" in capsys.readouterr().err


def test_the_shipped_record_matches_the_shipped_judge():
    from harness.judges.safety import EmbeddedSafetyJudge

    heads = prevalence.load_validation("embedded-safety", EmbeddedSafetyJudge().version)
    assert set(heads) == {"refusal", "harmful"}
    assert (heads["harmful"].true_positives, heads["harmful"].positives, heads["harmful"].true_negatives,
            heads["harmful"].negatives) == HARMFUL_HEAD


def pairwise_runs(root: Path) -> None:
    """Two alpacaeval-style runs (hand-made metrics) judged by embedded-pairwise version p1."""
    from benchmarks.alpacaeval import AlpacaEval

    for aligner, rate in (("none", 0.49), ("isara", 0.51)):
        run = write_run(root / aligner, aligner, exact_outcomes(safety_items(), 1, 1, 1))
        document = json.loads((run / "metrics.json").read_text())
        document.update(benchmark="alpacaeval", metric_specs=[s.to_dict() for s in AlpacaEval.metrics],
                        judge={"name": "embedded-pairwise", "version": "p1", "unparsed": 0},
                        metrics={"win_rate": {"value": rate, "ci95": [rate - 0.01, rate + 0.01], "n": 100},
                                 "lc_win_rate": {"value": None, "ci95": [None, None], "n": 0}})
        (run / "metrics.json").write_text(json.dumps(document))


@pytest.mark.parametrize("agreement, marked", [(None, True), (0.482, True), (0.65, False)])
def test_win_rates_of_a_judge_below_the_bar_are_marked_and_not_ranked(tmp_path, monkeypatch, agreement, marked):
    from harness.judges import bar

    monkeypatch.setattr(prevalence, "VALIDATION_DIR", tmp_path / "validation")
    if agreement is not None:
        bar.write_pairwise_record({"judge": "embedded-pairwise", "judge_version": "p1", "against": "llmbar-natural",
                                   "limit": None, "overall": {"agreement": {"value": agreement,
                                                                            "ci95": [agreement - 0.05, agreement + 0.05]},
                                                              "n_pairs": 100}})
        assert bar.pairwise_standing("embedded-pairwise", "p1")["meets_bar"] is not marked
        assert bar.pairwise_standing("embedded-pairwise", "p2") is None  # another version: no standing
    pairwise_runs(tmp_path / "runs")
    board = build_leaderboard(find_runs([tmp_path / "runs"]))
    column = next(c for c in board.columns if c.metric == "win_rate")
    assert column.label.endswith("(judge below validation bar)") is marked and column.ranked is not marked
    notes = [n for n in board.notes if "below validation bar" in n]
    assert len(notes) == int(marked)
    if marked and agreement is not None:
        assert "48.2% [43.2, 53.2] of 100 pairs, below the 60% bar" in notes[0]
    assert all(row.mean_rank is None for row in board.rows) is marked  # the only column: nothing ranks


def test_a_pairwise_record_needs_the_whole_bar_set():
    from harness.errors import HarnessError
    from harness.judges.bar import write_pairwise_record

    with pytest.raises(HarnessError, match="needs the whole llmbar-natural set"):
        write_pairwise_record({"judge": "j", "judge_version": "v", "against": "llmbar", "limit": None})
