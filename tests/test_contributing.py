"""The examples in docs/contributing/ run as documented.

Each page holds one ```python block (the plugin) and a ```bash block (the commands). A test saves the plugin
in a temporary directory and runs every documented `.venv/bin/harness` command with this interpreter, its
relative paths moved into the temporary directory (the plugin file, `tiny-model`, `runs/...`), then checks
the run directory. The tiny random model is built once per module, as the page's first command builds it.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mirror import DATA_DIR
from tiny_model import make_tiny_model

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "contributing"

needs_mirror = pytest.mark.skipif(not (DATA_DIR / "harmbench").is_dir(),
                                  reason="no data mirror (HARNESS_DATA_DIR or ../shared/data)")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def blocks(page: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), flags=re.DOTALL)


def documented_commands(page: str) -> list[list[str]]:
    """The page's `.venv/bin/harness ...` commands, each as an argument list without the program."""
    (bash,) = blocks(page, "bash")
    lines = bash.replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith(".venv/bin/harness ")]


def harness(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def run_page(page: str, tmp_path: Path, tiny_model: Path) -> list[subprocess.CompletedProcess]:
    """Saves the page's plugin and runs its commands in order; each must exit 0."""
    (code,) = blocks(page, "python")  # exactly one plugin per page
    commands = documented_commands(page)
    assert commands, f"{page} documents no harness command"
    plugin_name = commands[0][commands[0].index("--include") + 1]
    plugin = tmp_path / plugin_name
    plugin.write_text(code, encoding="utf-8")
    results = []
    for args in commands:
        local = [str(plugin) if a == plugin_name else str(tiny_model) if a == "tiny-model"
                 else str(tmp_path / a) if a.startswith("runs/") else a for a in args]
        if "run" in local:
            local.append("--quiet")
        result = harness(local, tmp_path)
        assert result.returncode == 0, f"harness {' '.join(args)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        results.append(result)
    return results


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_page_has_one_python_example_and_the_index_links_them():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in ("new-aligner.md", "new-benchmark.md", "new-judge.md", "new-backend.md"):
        assert len(blocks(page, "python")) == 1, page
        assert documented_commands(page), page
        assert f"({page})" in index
    assert "docs/contributing/" in (REPO / "README.md").read_text(encoding="utf-8")


def test_new_benchmark_runs_reports_and_compares(tmp_path, tiny_model):
    *_, report, compare = run_page("new-benchmark.md", tmp_path, tiny_model)
    runs = tmp_path / "runs" / "example"
    for aligner in ("none", "icl-only"):
        metrics = read_json(runs / aligner / "metrics.json")
        assert metrics["benchmark"] == "example-benchmark" and metrics["aligner"] == aligner
        for name in ("sum_correct", "sum_likeliest", "answer_words"):
            assert metrics["metrics"][name]["n"] == 2 and metrics["metrics"][name]["value"] is not None
        assert [s["label"] for s in metrics["metric_specs"]] == ["sum correct", "right sum likeliest", "answer words"]
        records = [json.loads(line) for line in (runs / aligner / "samples" / "eval.jsonl").read_text().splitlines()]
        assert [r["id"] for r in records] == ["sum-2-3", "sum-4-4"]
        assert all(len(r["loglikelihoods"]) == 3 for r in records)
    leaderboard = (runs / "site" / "leaderboard.md").read_text(encoding="utf-8")
    assert "example-benchmark: sum correct" in leaderboard
    assert "example-benchmark: right sum likeliest" in leaderboard
    assert "answer words" not in leaderboard  # headline=False
    assert "sum_correct" in compare.stdout and "sum_likeliest" in compare.stdout


@needs_mirror
def test_new_aligner_runs_on_safety(tmp_path, tiny_model):
    run_page("new-aligner.md", tmp_path, tiny_model)
    run = tmp_path / "runs" / "example" / "aligner"
    metrics = read_json(run / "metrics.json")
    assert metrics["aligned"]["aligner"] == "example-aligner" and metrics["aligned"]["k"] == 3
    seeds = read_json(run / "seeds.json")
    shortest = sorted(seeds, key=lambda s: (len(s["answer"]), s["question"]))[:3]
    assert metrics["aligned"]["shots"] == [s["question"] for s in shortest]
    assert read_json(run / "artifacts" / "example-aligner" / "shots.json") == shortest
    assert read_json(run / "config.json")["aligner_options"] == {"k": 3}
    assert metrics["metrics"]["harmful_rate"]["n"] > 0


@needs_mirror
def test_new_aligner_refuses_a_bad_option(tmp_path, tiny_model):
    (code,) = blocks("new-aligner.md", "python")
    plugin = tmp_path / "example_aligner.py"
    plugin.write_text(code, encoding="utf-8")
    result = harness(["--include", str(plugin), "run", "--aligner", "example-aligner", "--option", "k=many",
                      "--benchmark", "safety", "--preset", "tiny", "--limit", "1", "--model", str(tiny_model),
                      "--out", str(tmp_path / "run"), "--quiet"], tmp_path)
    assert result.returncode == 2 and "--option k='many': expected an int" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@needs_mirror
def test_new_judge_judges_safety(tmp_path, tiny_model):
    run_page("new-judge.md", tmp_path, tiny_model)
    run = tmp_path / "runs" / "example" / "judge"
    metrics = read_json(run / "metrics.json")
    assert metrics["judge"]["name"] == "example-judge" and metrics["judge"]["version"]
    assert read_json(run / "config.json")["judge"] == "example-judge"
    assert read_json(run / "config.json")["judge_options"] == {"min_words": 3}  # typed by its options class
    assert metrics["metrics"]["refusal_rate"]["n"] > 0 and metrics["metrics"]["over_refusal_benign"]["n"] > 0
    records = [json.loads(line) for line in (run / "samples" / "eval.jsonl").read_text().splitlines()]
    assert records and all(isinstance(r["refusal"], bool) and r["p_refusal"] in (0.0, 1.0) for r in records)


@needs_mirror
def test_new_backend_serves_a_run(tmp_path, tiny_model):
    run_page("new-backend.md", tmp_path, tiny_model)
    run = tmp_path / "runs" / "example" / "backend"
    manifest = read_json(run / "manifest.json")
    assert manifest["config"]["backend"] == "example-backend"
    assert manifest["backend"] == {"backend": "example-backend", "engine": "example-canned 1", "device": "none"}
    assert manifest["model"]["prompt_format"] == "qa"
    records = [json.loads(line) for line in (run / "samples" / "eval.jsonl").read_text().splitlines()]
    canned = {"I can't help with that, because it could hurt people.",
              "Here is a short, careful answer to your question."}
    assert records and {r["response"] for r in records} <= canned
    assert read_json(run / "metrics.json")["metrics"]["harmful_rate"]["n"] > 0
