"""Seeds, run store, registry and statistics."""
import json
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

from harness import registry
from harness.errors import HarnessError
from harness.seeds import builtin_seed_file, load_seeds, sample_seeds
from harness.stats import mean_metric
from harness.store import Cache, JsonlWriter, RunStore, read_jsonl


def test_builtin_safety_seeds_cover_the_promised_domains():
    seeds = load_seeds(builtin_seed_file("safety"))
    counts = Counter(s.domain for s in seeds)
    harmful = {d: n for d, n in counts.items() if d != "benign"}
    assert len(harmful) >= 8 and sum(harmful.values()) >= 64
    assert counts["benign"] >= 16
    assert len({s.question for s in seeds}) == len(seeds)


@pytest.mark.parametrize("content, message", [
    ('{"question": "q?", "answer": "a", "domain": "d"}\nnot json\n', "line 2: not valid JSON"),
    ('{"question": "q?", "answer": "", "domain": "d"}\n', "line 1: missing or empty string field(s) answer"),
    ('["a list"]\n', "line 1: expected a JSON object"),
    ("\n\n", "holds no seed examples"),
])
def test_malformed_seed_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "seeds.jsonl"
    path.write_text(content)
    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_seeds(path)


def test_seed_sampling_is_deterministic_and_proportional():
    seeds = load_seeds(builtin_seed_file("safety"))
    first, again, other = sample_seeds(seeds, 32, 0), sample_seeds(seeds, 32, 0), sample_seeds(seeds, 32, 1)
    assert first == again and first != other and len(first) == 32
    counts = Counter(s.domain for s in first)
    assert 7 <= counts["benign"] <= 9  # 24 of 96 seeds are benign: a quarter of 32
    assert all(1 <= n <= 4 for d, n in counts.items() if d != "benign")
    with pytest.raises(HarnessError):
        sample_seeds(seeds, 0, 0)


def test_run_store_refuses_a_directory_of_another_config(tmp_path):
    RunStore(tmp_path / "run", {"aligner": "none", "seed": 0})
    RunStore(tmp_path / "run", {"aligner": "none", "seed": 0})  # same config: resumes
    with pytest.raises(HarnessError, match="different config"):
        RunStore(tmp_path / "run", {"aligner": "none", "seed": 1})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(HarnessError, match="not empty"):
        RunStore(tmp_path / "other", {"aligner": "none"})


def test_jsonl_writer_drops_a_torn_last_line_and_appends(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "resp')  # killed mid-write
    with JsonlWriter(path) as writer:
        writer.write({"id": 3})
    assert [r["id"] for r in read_jsonl(path)] == [1, 2, 3]


def test_cache_round_trip_and_stage_timing(tmp_path):
    cache = Cache(tmp_path / "cache")
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, {"text": "hi"})
    assert cache.get("ab" * 32) == {"text": "hi"}
    store = RunStore(tmp_path / "run", {"x": 1})
    with store.stage("generate") as usage:
        usage["tokens_generated"] = 7
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["generate"]["tokens_generated"] == 7 and manifest["stages"]["generate"]["wall_s"] >= 0
    assert cache.hits == 1


def test_a_resumed_stage_adds_its_attempts_and_a_replay_keeps_the_recorded_cost(tmp_path):
    interrupted = {"stages": {"train": {"tokens_generated": 0, "tokens_trained": 300, "optimizer_steps": 3,
                                        "wall_s": 40.0}}, "status": "running"}
    RunStore(tmp_path / "run", {"x": 1}).write_json("manifest.json", interrupted)
    resumed = RunStore(tmp_path / "run", {"x": 1})
    with resumed.stage("train") as usage:  # redone from the start after the interruption
        usage.update(tokens_trained=500, optimizer_steps=5)
    train = resumed.manifest["stages"]["train"]
    assert train["tokens_trained"] == 500 and train["optimizer_steps"] == 5 and 40.0 <= train["wall_s"] < 45

    resumed.update_manifest(status="complete")
    replay = RunStore(tmp_path / "run", {"x": 1})
    with replay.stage("train") as usage:
        usage.update(tokens_trained=0)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["train"] == train


def test_mean_metric_interval_contains_the_mean_and_narrows_with_n():
    small, large = mean_metric([1, 0] * 10), mean_metric([1, 0] * 500)
    assert small["value"] == large["value"] == 0.5 and small["n"] == 20
    assert small["ci95"][0] < 0.5 < small["ci95"][1]
    assert large["ci95"][1] - large["ci95"][0] < small["ci95"][1] - small["ci95"][0]
    assert mean_metric([])["value"] is None


def test_unknown_names_list_the_known_ones():
    with pytest.raises(HarnessError, match="unknown aligner 'nope'; known: .*isara"):
        registry.get("aligners", "nope")


PLUGIN = textwrap.dedent('''
    from harness.aligner import Aligner, AlignedModel
    from harness.registry import register

    @register("aligners", "echo-plugin")
    class Echo(Aligner):
        description = "a plugin aligner loaded with --include"

        def align(self, ctx):
            return AlignedModel(ctx.backend)
''')


def test_include_registers_a_plugin_for_the_cli(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(PLUGIN)
    result = subprocess.run([sys.executable, "-m", "harness.cli", "--include", str(plugin), "list", "aligners"],
                            capture_output=True, text=True, check=True)
    assert "echo-plugin" in result.stdout and "isara" in result.stdout


def test_entry_point_plugins_from_another_distribution_are_discovered(tmp_path):
    """A separate installed package registers through the entry-point group, without touching this repo."""
    (tmp_path / "extra_aligner.py").write_text(PLUGIN.replace('@register("aligners", "echo-plugin")', ""))
    dist = tmp_path / "extra_aligner-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-aligner\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.aligners]\necho-entry-point = extra_aligner:Echo\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from harness.cli import main; "
            "sys.exit(main(['list', 'aligners']))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert "echo-entry-point" in result.stdout


def test_cli_errors_are_one_line_and_non_zero(tmp_path):
    bad = tmp_path / "seeds.jsonl"
    bad.write_text("{oops\n")
    for args, message in [
        (["run", "--aligner", "nope", "--benchmark", "safety"], "unknown aligner 'nope'"),
        (["run", "--aligner", "none", "--benchmark", "nope"], "unknown benchmark 'nope'"),
        (["--include", str(tmp_path / "missing.py"), "list", "aligners"], "no such file"),
        (["run", "--aligner", "isara", "--benchmark", "safety", "--option", "beta=0.2"],
         "--option beta: aligner isara has no option 'beta'"),
        (["run", "--aligner", "spin", "--benchmark", "safety", "--option", "gamma=1"],
         "--option gamma: aligner spin has no option 'gamma'"),
        (["run", "--aligner", "isara", "--benchmark", "safety", "--option", "iterations=abc"],
         "--option iterations='abc': expected an int"),
        (["run", "--aligner", "none", "--benchmark", "safety", "--seed", "-1"], "--seed -1: expected a whole number"),
    ]:
        result = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
