"""`harness report`: leaderboard rows, comparability flags, rankings, output files, plots, pinned baselines."""
import csv
import io
import json
import re

import pytest

from benchmarks.alpacaeval import AlpacaEval
from harness.cli import main
from reports.collect import find_runs, load_run
from reports.compare import SAME, compare_runs
from reports.leaderboard import CACHE_NOTE, build_leaderboard
from reports.plots import rows_with_values
from reports.render import to_markdown
from reports.report import write_report
from report_helpers import exact_outcomes, real_safety_runs, safety_items, write_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def runs(tmp_path):
    """Three comparable aligners where isara is best on every headline metric, plus a run made with --limit."""
    items = safety_items()
    root = tmp_path / "runs"
    write_run(root / "none", "none", exact_outcomes(items, harmful=20, refused=2, over_refused=4), wall_s=5)
    write_run(root / "sft", "sft-seeds", exact_outcomes(items, harmful=10, refused=12, over_refused=3),
              wall_s=50, tokens_trained=4000)
    write_run(root / "isara", "isara", exact_outcomes(items, harmful=2, refused=25, over_refused=1), wall_s=200,
              tokens_generated=6000, tokens_trained=9000, iterations=2)
    write_run(root / "isara-limited", "isara", exact_outcomes(safety_items(5, 5, 5), harmful=0, refused=5,
                                                                over_refused=0), limit=5, iterations=2)
    return root


def rows_by_name(board):
    return {(row.name, row.setting): row for row in board.rows}


def test_a_wall_time_that_left_out_cached_work_is_marked(tmp_path):
    items = safety_items()
    write_run(tmp_path / "none", "none", exact_outcomes(items, harmful=20, refused=2, over_refused=4), wall_s=5)
    write_run(tmp_path / "isara", "isara", exact_outcomes(items, harmful=2, refused=25, over_refused=1), wall_s=80,
              cache_hits=32)
    board = build_leaderboard(find_runs([tmp_path]))
    markdown = to_markdown(board)
    assert "| 80* |" in markdown and "| 5 |" in markdown and CACHE_NOTE in board.notes


def test_rows_ranks_and_a_limited_run_kept_apart(runs):
    board = build_leaderboard(find_runs([runs]))
    assert [(row.name, row.comparable) for row in board.rows] == [
        ("isara", True), ("sft-seeds", True), ("none", True), ("isara", False)]
    isara, sft, none = board.rows[:3]
    # Best on three headline metrics, tied with everyone on over-refusal (benign): no aligner refused those.
    assert isara.mean_rank == pytest.approx((1 + 1 + 1 + 2) / 4)
    assert isara.mean_win_rate == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert none.mean_win_rate == pytest.approx(0.5 / 4) and sft.mean_win_rate == pytest.approx(0.5)
    limited = board.rows[3]
    assert "--limit 5" in limited.setting and limited.mean_rank is None
    # Never mixed: the comparable isara row holds only the full run's number.
    assert isara.cells["safety:harmful_rate"]["value"] == pytest.approx(2 / 30)
    assert limited.cells["safety:harmful_rate"]["value"] == 0
    assert isara.cost == {"wall_s": 200, "tokens_generated": 6000, "tokens_trained": 9000, "runs": 1, "alignments": 1,
                          "cache_hits": 0}
    assert [c.lower_is_better for c in board.columns] == [True, False, True, True]


def test_seeds_are_averaged_and_other_data_or_budgets_get_their_own_rows(tmp_path):
    items = safety_items()
    root = tmp_path / "runs"
    write_run(root / "s0", "isara", exact_outcomes(items, 4, 20, 2), seed=0)
    write_run(root / "s1", "isara", exact_outcomes(items, 8, 20, 2), seed=1)
    write_run(root / "it1", "isara", exact_outcomes(items, 12, 10, 2), budget={"iterations": 1})
    write_run(root / "newdata", "isara", exact_outcomes(items, 0, 30, 0), data_sha="data-v2")
    board = build_leaderboard(find_runs([root]))
    rows = rows_by_name(board)
    averaged = rows[("isara", "")].cells["safety:harmful_rate"]
    assert averaged["value"] == pytest.approx(6 / 30) and averaged["n"] == 60 and averaged["n_seeds"] == 2
    assert averaged["ci95"][0] < 6 / 30 < averaged["ci95"][1]
    assert ("isara (iterations=1)", "") in rows
    flagged = [row for row in board.rows if not row.comparable]
    assert len(flagged) == 1 and "data version" in flagged[0].setting


def test_a_new_benchmark_shows_the_headline_metrics_it_declared(tmp_path):
    from harness.eval.metrics import MetricSpec

    run = write_run(tmp_path / "run", "none", exact_outcomes(safety_items(), 5, 5, 1))
    document = json.loads((run / "metrics.json").read_text())
    document["benchmark"] = "brand-new"
    document["metrics"] = {"accuracy": {"value": 0.7, "ci95": [0.6, 0.8], "n": 50},
                           "accuracy/math": {"value": 0.5, "ci95": [0.3, 0.7], "n": 20},
                           "calls": {"value": 3.0, "ci95": [2.0, 4.0], "n": 50}}
    document["metric_specs"] = [MetricSpec("accuracy", "correct", group_by="subject").to_dict(),
                                MetricSpec("calls", "calls", higher_is_better=False, headline=False).to_dict()]
    (run / "metrics.json").write_text(json.dumps(document))
    board = build_leaderboard([load_run(run)])
    assert [(c.key, c.lower_is_better) for c in board.columns] == [("brand-new:accuracy", False)]


def test_report_writes_every_output(runs, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["report", str(runs), "--out", str(out), "--pin-baselines"]) == 0
    assert "| gemma-3-270m | isara | yes |" in capsys.readouterr().out
    table = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert [r["aligner"] for r in table] == ["isara", "sft-seeds", "none", "isara"]
    assert float(table[0]["safety:harmful_rate"]) == pytest.approx(2 / 30) and table[3]["comparable"] == "False"
    document = json.loads((out / "leaderboard.json").read_text())
    provenance = document["rows"][0]["runs"][0]
    assert provenance["config"]["aligner"] == "isara" and provenance["hashes"]["eval_items"]
    assert provenance["samples"].endswith("samples/eval.jsonl")
    markdown = (out / "leaderboard.md").read_text()
    assert "6.7% [" in markdown and "**no**: --limit 5" in markdown
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.name.split("-")[0] for p in pngs} == {"iterations", "tradeoff", "score"}
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in pngs)
    page = (out / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # self-contained: nothing fetched from anywhere
    assert 'href="../runs/isara/samples/eval.jsonl"' in page
    assert "win rates: no benchmark with a win_rate metric" in page


def test_pinned_baseline_keeps_outcomes_but_no_prompts(runs, tmp_path):
    report = write_report([runs], tmp_path / "site", pin_baselines=True)
    pinned = [p for p in report.baselines if p.name == "safety-isara-demo-seed0.json"][0]
    text = pinned.read_text()
    assert "prompt h0" not in text and '"response"' not in text and "location" not in text
    comparison = compare_runs(load_run(pinned), load_run(runs / "isara"))
    assert comparison.shared_items == 50 and comparison.metrics
    assert all(m.difference == 0 and m.verdict == SAME for m in comparison.metrics)


def test_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for target in ("missing", "empty"):
        assert main(["report", str(tmp_path / target), "--out", str(tmp_path / "site")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("harness: error:") and len(err.splitlines()) == 1
    broken = write_run(tmp_path / "broken", "none", exact_outcomes(safety_items(), 1, 1, 1))
    (broken / "metrics.json").write_text('{"aligner": "none"}')
    assert main(["report", str(broken), "--out", str(tmp_path / "site")]) == 2
    assert "malformed run results (missing benchmark, model, metrics)" in capsys.readouterr().err
    (tmp_path / "notes.json").write_text("{}")
    assert main(["compare", str(tmp_path / "notes.json"), str(tmp_path / "notes.json")]) == 2
    assert "neither a run directory nor a pinned baseline" in capsys.readouterr().err


@pytest.mark.integration
def test_report_on_real_runs(tmp_path_factory, tmp_path):
    runs = real_safety_runs(tmp_path_factory.getbasetemp() / "real-safety-runs")
    report = write_report(list(runs.values()), tmp_path / "site")
    rows = {row.aligner: row for row in report.board.rows}
    assert set(rows) == {"none", "icl-only"} and all(row.comparable for row in rows.values())
    assert rows["icl-only"].name == "icl-only (seeds_file=refuse_all.jsonl)"
    for row in rows.values():
        metrics = json.loads((row.runs[0].path / "metrics.json").read_text())["metrics"]
        assert row.cells["safety:harmful_rate"] == {**metrics["harmful_rate"], "n_seeds": 1}  # one seed: its run's
        assert row.cost["wall_s"] > 0 and row.mean_win_rate is not None
    assert {p.path.name for p in report.plots} == {"tradeoff-safety.png", "score-vs-compute.png"}
    assert all(p.path.read_bytes().startswith(PNG_SIGNATURE) for p in report.plots)


def test_unfinished_runs_are_skipped_with_a_note(runs, capsys):
    unfinished = runs / "crashed"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")
    (unfinished / "manifest.json").write_text('{"status": "running"}')
    assert len(find_runs([runs])) == 4
    assert f"skipping unfinished run {unfinished}" in capsys.readouterr().err


def test_reports_and_compare_read_directions_and_outcomes_from_the_runs_metric_specs(tmp_path):
    """No benchmark class is needed: a run's recorded MetricSpecs say what each metric aggregates."""
    from harness.eval.metrics import MetricSpec, compute_metrics

    specs = [MetricSpec("error_rate", "wrong", "error rate", higher_is_better=False, where={"split": ("test",)}),
             MetricSpec("hard_error_rate", "wrong", "hard errors", higher_is_better=False,
                        where={"split": ("test",), "level": ("hard",)})]

    def toy_run(name, wrong):
        records = [{"id": f"q{i}", "split": "test", "level": "hard" if i < 4 else "easy", "scores": {"wrong": w}}
                   for i, w in enumerate(wrong)] + [{"id": "dev0", "split": "dev", "scores": {"wrong": True}}]
        run = write_run(tmp_path / name, "none", exact_outcomes(safety_items(), 1, 1, 1))
        document = json.loads((run / "metrics.json").read_text())
        document["benchmark"] = "toy-report-bench"
        document["metrics"] = compute_metrics(specs, records, 0)
        document["metric_specs"] = [spec.to_dict() for spec in specs]
        (run / "metrics.json").write_text(json.dumps(document))
        (run / "samples" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        return load_run(run)

    baseline = toy_run("a", [False] * 12)
    candidate = toy_run("b", [True] * 8 + [False] * 4)
    board = build_leaderboard([baseline, candidate])
    assert [(c.metric, c.lower_is_better) for c in board.columns] == [("error_rate", True), ("hard_error_rate", True)]
    comparison = compare_runs(baseline, candidate)
    by_name = {m.metric: m for m in comparison.metrics}
    assert by_name["error_rate"].n_paired == 12 and by_name["error_rate"].verdict == "worse"
    assert by_name["hard_error_rate"].n_paired == 4 and by_name["hard_error_rate"].difference == 1.0


def test_win_rate_and_generalization_plots_appear_with_their_runs(tmp_path):
    items = safety_items()
    root = tmp_path / "runs"
    for domain, harmful in (("violence", 4), ("fraud", 9)):
        write_run(root / f"dg-{domain}", "sft-seeds", exact_outcomes(items, harmful, 10, 2),
                  seed_domains=[domain, "benign"])
    for aligner, rate in (("none", 0.2), ("isara", 0.35)):
        run = write_run(root / f"ae-{aligner}", aligner, exact_outcomes(items, 1, 1, 1))
        document = json.loads((run / "metrics.json").read_text())
        document["benchmark"] = "alpacaeval"
        document["metric_specs"] = [spec.to_dict() for spec in AlpacaEval.metrics]
        document["metrics"] = {"win_rate": {"value": rate, "ci95": [rate - 0.1, rate + 0.1], "n": 100},
                               "lc_win_rate": {"value": None, "ci95": [None, None], "n": 0}}
        (run / "metrics.json").write_text(json.dumps(document))
    report = write_report([root], tmp_path / "site")
    names = {p.path.name for p in report.plots}
    assert {"winrate-alpacaeval.png", "generalization-safety-sft_seeds-gemma_3_270m.png"} <= names
    rows = rows_by_name(report.board)
    assert ("sft-seeds (seeds_file=violence-benign.jsonl)", "") in rows  # each seed domain is its own row
    assert [c.key for c in report.board.columns if c.benchmark == "alpacaeval"] == ["alpacaeval:win_rate"]
    # The win-rate figure has a bar row only for the runs that have a win rate, not the safety-only ones.
    win_rate_columns = [c for c in report.board.columns if c.benchmark == "alpacaeval"]
    assert sorted(row.name for row in rows_with_values(report.board, win_rate_columns)) == ["isara", "none"]


def test_limited_runs_never_set_the_reference_unless_all_are_limited(tmp_path):
    small = safety_items(5, 5, 5)
    root = tmp_path / "runs"
    write_run(root / "a", "none", exact_outcomes(small, 3, 1, 1), limit=5)
    write_run(root / "b", "isara", exact_outcomes(small, 1, 3, 1), limit=5)
    board = build_leaderboard(find_runs([root]))
    assert all(row.comparable for row in board.rows) and board.rows[0].name == "isara"
    assert any("every safety run was made with --limit 5" in note for note in board.notes)
    write_run(root / "full", "sft-seeds", exact_outcomes(safety_items(), 3, 1, 1))
    board = build_leaderboard(find_runs([root]))
    assert [row.name for row in board.rows if row.comparable] == ["sft-seeds"]


def test_a_runs_own_matrix_and_curves_are_plotted(tmp_path):
    """The domain-generalization benchmarks record a seed x evaluation domain matrix and per-iteration curves."""
    run = write_run(tmp_path / "runs" / "dg", "isara", exact_outcomes(safety_items(), 1, 1, 1), iterations=2)
    document = json.loads((run / "metrics.json").read_text())

    def cell(v):
        return {"value": v, "ci95": [max(0, v - 0.2), min(1, v + 0.2)], "n": 10}

    domains = ["fraud", "violence"]
    document["benchmark"] = "domain-generalization"
    document["matrix"] = {"seed_domains": domains, "eval_domains": domains, "metric": "refusal_rate",
                          "values": [[cell(0.8), cell(0.3)], [cell(0.2), cell(0.9)]],
                          "unaligned": [cell(0.1), cell(0.1)]}
    document["curves"] = {s: {e: [{"iteration": t, **cell(0.1 + 0.3 * t * (s == e))} for t in range(3)]
                              for e in domains} for s in domains}
    (run / "metrics.json").write_text(json.dumps(document))
    report = write_report([tmp_path / "runs"], tmp_path / "site")
    names = {p.path.name for p in report.plots}
    assert {"generalization-domain_generalization-isara-gemma_3_270m-seed0.png",
            "iterations-domain_generalization-isara-gemma_3_270m-seed0.png"} <= names
