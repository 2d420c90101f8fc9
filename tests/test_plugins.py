"""Plugins cannot shadow a built-in by mistake, cannot end the command, and a fault in their code is one line
that names them (the traceback behind --debug); the manifest records every plugin file and its hash."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.fileio import path_component
from harness.hashing import hash_file
from harness.runner import default_out_dir
from harness.config import RunConfig
from mirror import DATA_DIR

REPO = Path(__file__).resolve().parent.parent

SHADOW = """
from aligners.none import NoAlignment
from harness.registry import register


@register("aligners", "isara"{override})
class NotIsara(NoAlignment):
    name = "isara"
"""

FAULTY = """
from aligners.none import NoAlignment
from harness.registry import register


@register("aligners", "faulty")
class Faulty(NoAlignment):
    name = "faulty"

    def align(self, ctx):
        raise ValueError("the plugin's own bug\\non two lines")
"""


def harness(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HARNESS_CACHE_DIR": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: ")
    return lines[0]


def test_a_plugin_cannot_shadow_a_builtin_by_mistake(tmp_path):
    plugin = tmp_path / "shadow.py"
    plugin.write_text(SHADOW.format(override=""))
    line = one_error_line(harness(tmp_path, "--include", str(plugin), "list", "aligners"))
    assert f"plugin {plugin.resolve()} registers aligner 'isara', which is a built-in" in line
    assert "override=True" in line
    # Two plugins claiming one name: the second is refused, naming the first.
    other = tmp_path / "other.py"
    other.write_text(SHADOW.format(override="").replace('"isara"', '"mine"'))
    again = tmp_path / "again.py"
    again.write_text(SHADOW.format(override="").replace('"isara"', '"mine"'))
    line = one_error_line(harness(tmp_path, "--include", str(other), "--include", str(again), "list", "aligners"))
    assert f"which is already registered by {other.resolve()}" in line


@pytest.mark.skipif(not (DATA_DIR / "harmbench").is_dir(), reason="no data mirror (HARNESS_DATA_DIR)")
def test_an_override_on_purpose_is_recorded_with_the_plugin_hash(tmp_path):
    plugin = tmp_path / "shadow.py"
    plugin.write_text(SHADOW.format(override=", override=True"))
    out = tmp_path / "run"
    result = harness(tmp_path, "--include", str(plugin), "run", "--aligner", "isara", "--benchmark", "safety",
                     "--preset", "tiny", "--limit", "1", "--model", "smollm2-135m-instruct", "--out", str(out),
                     "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    plugins = json.loads((out / "manifest.json").read_text())["plugins"]
    assert plugins == [{"file": str(plugin.resolve()), "sha256": hash_file(plugin), "registers": ["aligner isara"],
                        "overrides": ["aligner isara (was built-in)"]}]


def test_a_plugin_that_exits_at_import_does_not_end_the_command(tmp_path):
    plugin = tmp_path / "exits.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    baseline = tmp_path / "nothing.json"
    line = one_error_line(harness(tmp_path, "--include", str(plugin), "compare", str(baseline), str(baseline),
                                  "--fail-on-regression"))
    assert f"--include {plugin}: the plugin called sys.exit(0) while being imported" in line


@pytest.mark.skipif(not (DATA_DIR / "harmbench").is_dir(), reason="no data mirror (HARNESS_DATA_DIR)")
def test_a_fault_in_plugin_code_names_the_plugin_and_debug_shows_the_traceback(tmp_path):
    plugin = tmp_path / "faulty.py"
    plugin.write_text(FAULTY)
    common = ["--include", str(plugin)]
    run = ["run", "--aligner", "faulty", "--benchmark", "safety", "--preset", "tiny", "--limit", "1", "--model",
           "smollm2-135m-instruct", "--quiet"]
    line = one_error_line(harness(tmp_path, *common, *run, "--out", str(tmp_path / "run")))
    assert line == (f"harness: error: plugin code failed at {plugin} line 11: ValueError: the plugin's own bug on "
                    "two lines (rerun with --debug for the traceback)")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"].startswith("ValueError: the plugin's own bug")
    debug = harness(tmp_path, "--debug", *common, *run, "--out", str(tmp_path / "run-debug"))
    assert debug.returncode == 1 and "Traceback" in debug.stderr and f'File "{plugin}", line 11' in debug.stderr


@pytest.mark.parametrize("name, expected", [("isara", "isara"), ("..", "_."), (".", "_"), ("", "_"),
                                            ("../../etc/passwd", "_._.._etc_passwd"), ("/abs/path", "_abs_path"),
                                            (".hidden", "_hidden"), ("a b\u00e9", "a_b_"), ("x" * 300, "x" * 120)])
def test_names_become_safe_path_components(name, expected):
    assert path_component(name) == expected


def test_a_run_directory_never_leaves_runs(tmp_path):
    config = RunConfig(aligner="../../outside", benchmark="..", model="/abs/../model", preset="tiny")
    out = default_out_dir(config)
    assert out.parts[0] == "runs" and ".." not in out.parts and len(out.parts) == 4
    assert (tmp_path / out).resolve().is_relative_to((tmp_path / "runs").resolve())
