"""Typed options of benchmarks and judges: presets, --eval-option, --judge-option, `harness list options`,
`harness upgrade` of configs written before benchmark options, and the pinned baselines' leaderboard."""
from __future__ import annotations

import dataclasses
import json
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from harness import registry
from harness.cli import main
from harness.config import PRESETS, RunConfig, benchmark_options
from harness.errors import HarnessError
from harness.eval.options import QuestionOptions, SafetyOptions
from harness.hashing import hash_json
from harness.judges.build import judge_option_values, make_judge
from harness.options import describe
from harness.store import RunStore
from reports.collect import find_runs
from reports.upgrade import upgrade
from report_helpers import exact_outcomes, safety_items, write_run

REPO = Path(__file__).resolve().parent.parent
BASELINES = REPO / "reports" / "leaderboards" / "baselines" / "gemma-3-270m"


def test_benchmark_options_come_from_the_preset_then_the_command_line():
    assert benchmark_options("safety", "tiny") == SafetyOptions(max_new_tokens=24, harmful=9, benign=4, borderline=4)
    assert benchmark_options("truthfulqa", "paper") == QuestionOptions(max_new_tokens=128, questions=None)
    assert benchmark_options("safety", "tiny", {"harmful": "3", "max_new_tokens": "16"}).harmful == 3
    config = RunConfig.from_preset("none", "truthfulqa", "tiny", eval_options={"questions": "5"})
    assert config.to_dict()["benchmark_options"] == {"max_new_tokens": 24, "questions": 5}
    assert config.eval_options() == QuestionOptions(max_new_tokens=24, questions=5)
    # Different sizes are different runs.
    assert hash_json(config.to_dict()) != hash_json(RunConfig.from_preset("none", "truthfulqa", "tiny").to_dict())


@pytest.mark.parametrize("given, message", [
    ({"harmfull": "3"}, "--eval-option harmfull: benchmark safety has no option 'harmfull'; its options: benign, "
                        "borderline, harmful, max_new_tokens"),
    ({"harmful": "0"}, "--eval-option harmful=0: must be at least 1"),
    ({"harmful": "abc"}, "--eval-option harmful='abc': expected an int or none"),
    ({"max_new_tokens": "none"}, "--eval-option max_new_tokens='none': expected an int"),
    ({"questions": "4"}, "benchmark safety has no option 'questions'"),
])
def test_bad_benchmark_options_are_one_line(given, message):
    with pytest.raises(HarnessError) as refused:
        benchmark_options("safety", "tiny", given)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_every_builtin_benchmark_and_judge_declares_documented_typed_options():
    for kind in ("benchmarks", "judges"):
        for name in sorted(ep.name for ep in entry_points(group=f"harness.{kind}")):  # the built-ins
            options_class = registry.get(kind, name).options_class
            assert dataclasses.is_dataclass(options_class), (kind, name)
            assert all(row["help"] for row in describe(options_class)), (kind, name)
    # Every key of every preset's eval section is an option of some benchmark (a typo would be ignored).
    known = {f.name for name in registry.names("benchmarks")
             for f in dataclasses.fields(registry.get("benchmarks", name).options_class)}
    for preset in PRESETS.values():
        assert set(preset.eval) <= known, preset.name


def test_judge_options_are_typed_and_checked_before_any_judge_is_built():
    assert judge_option_values("embedded-safety", {"threshold": "0.6"}) == {"threshold": 0.6}
    assert make_judge("embedded-safety", {"threshold": "0.6"}).threshold == 0.6
    assert make_judge("keyword-refusal", {"window": "64"}).window == 64
    assert judge_option_values("openai", {"model": "m", "concurrency": 2, "prompts": {"safety": "x"}}) == \
        {"model": "m", "concurrency": 2, "prompts": {"safety": "x"}}
    for name, given, message in [
        ("embedded-safety", {"threshold": "2"}, "--judge-option embedded-safety: threshold=2.0: must be at most 1.0"),
        ("embedded-truth", {"threshold": "2"}, "judge embedded-truth does not take --judge-option threshold; drop "
                                               "the option(s) or choose another --judge (its options: "
                                               "informative_threshold, margin)"),
        ("openai", {"concurrency": "0"}, "--judge-concurrency openai: concurrency=0: must be at least 1"),
        ("openai", {"prompts": "safety.yaml"}, "expected a mapping"),
    ]:
        with pytest.raises(HarnessError, match=re.escape(message)):
            judge_option_values(name, given)


@pytest.mark.parametrize("argv, message", [
    (["--judge-option", "threshold=abc"], "--judge-option embedded-safety: threshold='abc': expected a float"),
    (["--judge-option", "window"], "--judge-option 'window': expected KEY=VALUE"),
    (["--judge-option", "api_key_env=sk-live-123456"], "expects the NAME of an environment variable"),
    (["--eval-option", "harmful=-1"], "--eval-option harmful=-1: must be at least 1"),
    (["--eval-option", "harmful"], "--eval-option 'harmful': expected KEY=VALUE"),
])
def test_bad_judge_and_eval_options_on_the_command_line(argv, message, tmp_path, capsys):
    code = main(["run", "--aligner", "none", "--benchmark", "safety", "--preset", "tiny", "--out",
                 str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert "sk-live-123456" not in err and not (tmp_path / "run").exists()


def test_list_options_shows_aligners_benchmarks_and_judges(capsys):
    assert main(["list", "options"]) == 0
    out = capsys.readouterr().out
    for heading in ("aligners (--option KEY=VALUE):", "benchmarks (--eval-option KEY=VALUE):",
                    "judges (--judge-option KEY=VALUE):"):
        assert heading in out
    assert re.search(r"^  safety:\n    max_new_tokens +int +default 128", out, re.M)
    assert re.search(r"^    threshold +float +default 0.5 ", out, re.M)


def test_a_size_given_on_the_command_line_is_a_variant_of_its_own(tmp_path):
    items = safety_items()
    write_run(tmp_path / "preset", "none", exact_outcomes(items, 4, 20, 2))
    resized = write_run(tmp_path / "resized", "none", exact_outcomes(items, 4, 20, 2))
    config = json.loads((resized / "config.json").read_text())
    config["benchmark_options"]["harmful"] = 30
    (resized / "config.json").write_text(json.dumps(config))
    variants = {run.path.name: run.variant for run in find_runs([tmp_path])}
    assert variants == {"preset": "", "resized": "harmful=30"}


def test_upgrade_adds_the_benchmark_options_an_older_run_used_and_the_run_resumes(tmp_path):
    run = write_run(tmp_path / "old", "isara", exact_outcomes(safety_items(), 4, 20, 2), preset="tiny")
    current = json.loads((run / "config.json").read_text())
    older = {k: v for k, v in current.items() if k != "benchmark_options"}
    (run / "config.json").write_text(json.dumps(older))
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "config": older, "config_hash": hash_json(older)}))
    with pytest.raises(HarnessError, match="different config.*`harness upgrade` it"):
        RunStore(run, current)

    assert upgrade(run) == f"upgraded run {run}"
    assert json.loads((run / "config.json").read_text()) == current
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"] == current and manifest["config_hash"] == hash_json(current)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    upgrade(run)  # idempotent
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    RunStore(run, current).close()  # a rerun of the same command resumes it


def test_the_pinned_baselines_reproduce_the_committed_leaderboard(tmp_path):
    """Every row, value, interval and variant of reports/leaderboards/leaderboard.md comes back from the pinned
    baselines (wall times lose their '*' mark: a baseline keeps no cache record)."""
    committed = (REPO / "reports" / "leaderboards" / "leaderboard.md").read_text(encoding="utf-8")
    title = committed.splitlines()[0].removeprefix("# ")
    assert main(["report", *map(str, sorted(BASELINES.glob("*.json"))), "--out", str(tmp_path), "--title",
                 title]) == 0
    rebuilt = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")

    def rows(markdown: str) -> list[str]:
        return [line.replace("* |", " |") for line in markdown.splitlines() if line.startswith("|")]

    assert rows(rebuilt) == rows(committed) and len(rows(committed)) == 9


def test_upgrade_gives_older_rates_the_wilson_interval_from_their_records(tmp_path):
    from harness.stats import rate_interval

    run = write_run(tmp_path / "old", "none", exact_outcomes(safety_items(), 4, 20, 2))
    document = json.loads((run / "metrics.json").read_text())
    for name in ("harmful_rate", "refusal_rate"):
        document["metrics"][name].pop("interval")
        document["metrics"][name]["ci95"] = [0.1, 0.2]  # as a percentile bootstrap recorded it
    document["metrics"]["refusal_rate"]["value"] += 0.01  # records that do not reproduce the value
    (run / "metrics.json").write_text(json.dumps(document))
    upgrade(run)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    harmful = metrics["harmful_rate"]
    assert harmful["interval"] == "wilson" and harmful["value"] == document["metrics"]["harmful_rate"]["value"]
    assert harmful["ci95"] == list(rate_interval(round(harmful["value"] * harmful["n"]), harmful["n"]))
    assert metrics["refusal_rate"]["ci95"] == [0.1, 0.2] and "interval" not in metrics["refusal_rate"]
