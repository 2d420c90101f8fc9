"""SIGKILL during generation, training and evaluation, then the same command again: no item lost or written
twice, metrics equal to an uninterrupted run's, and the killed attempt's time in the recorded cost.

Real `harness run` processes (ISARA, tiny preset, a tiny random model so each run takes seconds) killed with
SIGKILL as soon as a stage's heartbeat file appears (harness/heartbeat.py writes it as the stage starts; with
a tiny model a stage can end within a second, so waiting longer would often miss it). Each run
has a cache of its own, so a resumed run cannot be served the reference run's work."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.heartbeat import HEARTBEAT_DIR
from harness.store import read_jsonl
from mirror import DATA_DIR
from tiny_model import make_tiny_model

REPO = Path(__file__).resolve().parent.parent
needs_mirror = pytest.mark.skipif(not (DATA_DIR / "harmbench").is_dir(), reason="no data mirror (HARNESS_DATA_DIR)")


def command(model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "run", "--aligner", "isara", "--benchmark", "safety", "--preset",
            "tiny", "--model", str(model), "--option", "max_seq_len=96", "--out", str(out), "--quiet"]


def environment(cache: Path) -> dict[str, str]:
    return {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HARNESS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}


def run_to_completion(model: Path, out: Path, cache: Path) -> dict:
    result = subprocess.run(command(model, out), cwd=REPO, env=environment(cache), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def kill_in_stage(model: Path, out: Path, cache: Path, stage_file: str, after_s: float) -> str | None:
    """Starts the run and SIGKILLs it `after_s` seconds into the stage whose heartbeat is `stage_file`; the
    stage's name, or None when the kill did not land inside that stage."""
    child = subprocess.Popen(command(model, out), cwd=REPO, env=environment(cache), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    beat = out / HEARTBEAT_DIR / stage_file
    deadline = time.monotonic() + 600
    try:
        while child.poll() is None and time.monotonic() < deadline:
            if beat.exists():
                time.sleep(after_s)
                child.send_signal(signal.SIGKILL)
                child.wait()
                return json.loads(beat.read_text())["stage"] if beat.exists() and child.returncode < 0 else None
            time.sleep(0.01)
        return None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    model = make_tiny_model(root / "tiny-model")
    return model, run_to_completion(model, root / "reference", root / "cache-reference")


@needs_mirror
@pytest.mark.parametrize("stage_file, after_s", [
    ("align_isara_iteration_1_generate.json", 0.0),
    ("align_isara_iteration_1_train.json", 0.0),
    ("evaluate.json", 0.0),
])
def test_a_run_killed_in_a_stage_resumes_to_the_same_metrics(reference, tmp_path, stage_file, after_s):
    model, expected = reference
    out, cache = tmp_path / "run", tmp_path / "cache"
    stage = kill_in_stage(model, out, cache, stage_file, after_s)
    assert stage is not None, f"the kill did not land inside the stage of {stage_file}"
    assert not (out / "metrics.json").exists()

    resumed = run_to_completion(model, out, cache)
    assert resumed["metrics"] == expected["metrics"]
    records = read_jsonl(out / "samples" / "eval.jsonl")
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == expected["metrics"]["harmful_rate"]["n"] + \
        expected["metrics"]["over_refusal"]["n"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["stages"][stage]["killed_attempts"] == 1  # the killed attempt is part of the cost
    assert not list((out / HEARTBEAT_DIR).glob("*.json"))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
