"""`harness judge validate --all`: every judge against every human-labelled set of its roles, as one page."""
from __future__ import annotations

import pytest

from harness.cli import main
from harness.judges.validate_all import HUMAN_SETS, agreements, builtin_judges, judges_page, validate_all
from mirror import DATA_DIR

needs_mirror = pytest.mark.skipif(not (DATA_DIR / "xstest").is_dir(), reason="no data mirror (HARNESS_DATA_DIR)")


def test_built_in_judges_and_the_sets_they_are_checked_on():
    assert builtin_judges() == ["embedded-pairwise", "embedded-pairwise-single", "embedded-safety",
                                "embedded-safety-ce", "embedded-truth", "embedded-truth-boosted", "keyword-refusal"]
    assert "refusal-direction-llamaguard" not in HUMAN_SETS["safety"]  # machine labels are not the bar
    assert "llmbar" not in HUMAN_SETS["pairwise"]  # natural + adversarial, reported apart


@needs_mirror
def test_every_judge_of_a_role_against_its_human_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    rows, skipped = validate_all(["keyword-refusal", "embedded-truth"], DATA_DIR, limit=30)
    cut = [f"{head}, cut to {chars} chars" for chars in (200, 100) for head in ("refusal", "harmful")]
    assert [(r.judge, r.labels, r.what) for r in rows] == [
        ("keyword-refusal", "xstest", "refusal"), ("keyword-refusal", "xstest", "harmful"),
        *[("keyword-refusal", "xstest", what) for what in cut],
        ("embedded-truth", "truthfulqa-truth", "truth"), ("embedded-truth", "truthfulqa-info", "info")]
    assert all(0 <= r.value <= 1 and r.ci95[0] <= r.value <= r.ci95[1] and r.n > 0 for r in rows)
    assert skipped == []
    page = judges_page(rows, ["x on y: missing"], 30)
    assert page.startswith("# Judge validation") and "--all --limit 30" in page
    assert "| keyword-refusal |" in page and "- x on y: missing" in page
    # A set whose data is missing is listed as not validated, not a crash.
    _, missing = validate_all(["keyword-refusal"], tmp_path / "no-mirror", limit=5)
    assert len(missing) == 1 and missing[0].startswith("keyword-refusal on xstest: ")


def test_pairwise_and_truth_results_become_rows():
    pairwise = {"judge": "p", "judge_version": "v", "against": "llmbar-natural",
                "overall": {"agreement": {"value": 0.5, "ci95": [0.43, 0.57]}, "kappa": 0.02, "n_pairs": 100,
                            "unparsed": 0}}
    [row] = agreements(pairwise)
    assert (row.what, row.value, row.n) == ("preference (both orders)", 0.5, 100)
    truth = {"judge": "t", "judge_version": "v", "against": "truthfulqa-info", "kind": "info",
             "accuracy": {"value": 0.8, "ci95": [0.7, 0.9]}, "kappa": None, "n": 40, "unparsed": 2}
    assert agreements(truth)[0].kappa is None and "| n/a |" in judges_page(agreements(truth), [], None)


@pytest.mark.parametrize("argv, message", [
    (["--all", "--record"], "--record writes one judge's record"),
    (["--out", "page.md"], "--out is for --all"),
])
def test_bad_combinations_are_one_line(argv, message, capsys):
    assert main(["judge", "validate", *argv]) == 2
    assert message in capsys.readouterr().err


@needs_mirror
def test_anchors_are_gpt4_on_the_same_sets(monkeypatch):
    from harness.judges.anchors import PUBLISHED_PAIRWISE
    from harness.judges.validate_all import anchors
    from harness.judges.validate_pairwise import load_pairwise_set

    rows, skipped = anchors(DATA_DIR)
    assert skipped == []
    refusal, harmful = [row for row, source in rows if row.labels == "xstest"]
    assert (refusal.what, harmful.what) == ("refusal", "harmful")
    assert refusal.n + refusal.unparsed == 720  # the whole held-out split; GPT-4 left a few unlabelled
    assert 0 < harmful.n < refusal.n and all(0 < r.value < 1 for r in (refusal, harmful))
    for labels, published in PUBLISHED_PAIRWISE.items():
        pairs = len(load_pairwise_set(labels, DATA_DIR))
        assert all(presentations == 2 * pairs for _, _, presentations in published), labels
    page = judges_page([], [], 30, rows)
    assert "## Anchors on the same sets" in page and "| GPT-4, plain prompt | llmbar-natural |" in page
    assert len([line for line in page.splitlines() if line.startswith("| GPT-4")]) == 2 + 2 * len(PUBLISHED_PAIRWISE)
