"""Crash safety and hardening: atomic writes, JSONL corruption, the run lock, the shared cache, secrets kept out
of run files, and escaping in the Markdown leaderboard."""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import runlock as store_module
from harness.cli import main
from harness.errors import HarnessError
from harness.store import LOCK_NAME, Cache, JsonlWriter, RunStore, read_jsonl, write_json_atomic, write_text_atomic
from reports.collect import find_runs
from reports.leaderboard import build_leaderboard
from reports.render import to_markdown
from report_helpers import exact_outcomes, safety_items, write_run

REPO = Path(__file__).resolve().parent.parent
CONFIG = {"aligner": "none", "seed": 0}


def stray_temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith(".tmp")]


# Atomic writes

def test_atomic_writes_fsync_the_file_and_the_directory(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    write_json_atomic(tmp_path / "sub" / "a.json", {"x": 1})
    assert json.loads((tmp_path / "sub" / "a.json").read_text()) == {"x": 1}
    assert len(synced) == 2  # the temp file before the rename, the directory after it
    write_text_atomic(tmp_path / "b.txt", "héllo\n")
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert stray_temp_files(tmp_path) == []


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    write_json_atomic(path, {"old": True})

    def refuse(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, {"new": True})
    monkeypatch.undo()
    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True}
    assert stray_temp_files(tmp_path) == []


# JSONL

def test_a_torn_last_line_is_ignored_and_repaired(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_bytes('{"id": 1}\n{"id": 2}\n{"id": 3, "text": "caf\u00e9'.encode()[:-1])  # cut inside a character
    assert [r["id"] for r in read_jsonl(path)] == [1, 2]
    with JsonlWriter(path) as writer:
        writer.write({"id": 3})
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n{"id": 3}\n'

    whole = tmp_path / "whole.jsonl"
    whole.write_text('{"id": 1}\n{"id": 2}')  # killed between the record and its newline
    assert [r["id"] for r in read_jsonl(whole)] == [1, 2]
    JsonlWriter(whole).close()
    assert whole.read_text() == '{"id": 1}\n{"id": 2}\n'


@pytest.mark.parametrize("bad_line", ['{"id": 7, "resp', "[1, 2]", '"a string"', "\udcff"])
def test_a_corrupt_line_in_the_middle_is_reported_with_its_number(tmp_path, bad_line):
    path = tmp_path / "samples.jsonl"
    lines = [json.dumps({"id": i}) for i in range(1, 7)] + [bad_line] + [json.dumps({"id": 8})]
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    expected = f"{path}: line 7 is corrupt; fix or delete that line, then rerun"
    with pytest.raises(HarnessError, match=re.escape(expected)):
        read_jsonl(path)
    with pytest.raises(HarnessError, match="line 7 is corrupt"):
        JsonlWriter(path)  # never appends after, or silently drops, records it cannot read


def test_a_complete_but_corrupt_last_line_is_reported(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"id": 1}\n\n[1]\n')
    with pytest.raises(HarnessError, match="line 3 is corrupt"):
        read_jsonl(path)


def test_jsonl_writer_fsyncs_every_record(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    with JsonlWriter(tmp_path / "s.jsonl") as writer:
        monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
        writer.write({"id": 1})
        writer.write({"id": 2})
        assert synced == [writer._handle.fileno()] * 2
    assert [r["id"] for r in read_jsonl(tmp_path / "s.jsonl")] == [1, 2]


# The run lock

def start_holder(run_dir: Path) -> subprocess.Popen:
    """Another process that opens a RunStore on `run_dir` and sleeps."""
    code = textwrap.dedent(f"""
        import time
        from harness.store import RunStore
        RunStore({str(run_dir)!r}, {CONFIG!r})
        print("locked", flush=True)
        time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_run_directory_in_use_is_refused_until_its_process_dies(tmp_path):
    run_dir = tmp_path / "run"
    child = start_holder(run_dir)
    try:
        with pytest.raises(HarnessError) as refused:
            RunStore(run_dir, CONFIG)
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith(f"run directory {run_dir} is in use by process {child.pid} (started ")
        assert message.endswith("; wait for it or pass another --out")
    finally:
        child.kill()
        child.wait()
    store = RunStore(run_dir, CONFIG)  # the dead process's lock is taken over
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()
    again = RunStore(run_dir, CONFIG)  # the same process may open it again
    again.close()
    assert (run_dir / LOCK_NAME).exists()  # still held by `store`
    store.close()
    assert not (run_dir / LOCK_NAME).exists()
    assert stray_temp_files(run_dir) == []


def test_the_lock_is_released_at_exit_and_by_a_with_block(tmp_path):
    code = f"from harness.store import RunStore; RunStore({str(tmp_path / 'run')!r}, {CONFIG!r})"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    assert (tmp_path / "run" / "config.json").exists() and not (tmp_path / "run" / LOCK_NAME).exists()
    with RunStore(tmp_path / "run", CONFIG) as store:
        assert (store.root / LOCK_NAME).exists()
        child = RunStore(store.root / "domains" / "violence", {**CONFIG, "seed_domain": "violence"})
        assert (child.root / LOCK_NAME).exists()  # a child store locks its own directory only
        child.close()
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_stale_unreadable_and_foreign_host_locks(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "stale"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x"}))
    RunStore(run_dir, CONFIG).close()  # a lock file alone does not make the directory "not empty"

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / LOCK_NAME).write_bytes(b"\x00\x00")  # its writer died before writing its pid
    RunStore(garbage, CONFIG).close()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": "elsewhere", "started": "today"}))
    with pytest.raises(HarnessError, match=f"in use by process {dead.pid} on host elsewhere .*delete"):
        RunStore(foreign, CONFIG)


def test_a_refused_config_releases_the_lock(tmp_path):
    RunStore(tmp_path / "run", CONFIG).close()
    with pytest.raises(HarnessError, match="different config"):
        RunStore(tmp_path / "run", {**CONFIG, "seed": 1})
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    assert not store_module._held_locks.get(tmp_path / "run" / LOCK_NAME)


# The shared cache

@pytest.mark.parametrize("content", [b'{"key": "ab", "val', b"\xff\xfe\x00garbage", b"[1, 2]", b'"text"', b"{}"])
def test_a_damaged_cache_file_is_a_miss(tmp_path, content):
    cache = Cache(tmp_path)
    key = "ab" * 32
    cache.put(key, {"text": "hi"})
    cache._path(key).write_bytes(content)
    assert cache.get(key) is None and cache.hits == 0
    cache.put(key, {"text": "hi"})
    assert cache.get(key) == {"text": "hi"} and cache.hits == 1


def test_two_processes_writing_the_same_keys_never_leave_a_partial_file(tmp_path):
    go = tmp_path / "go"
    code = textwrap.dedent(f"""
        import hashlib, os, sys, time
        from harness.store import Cache
        cache = Cache({str(tmp_path / "cache")!r})
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
        for i in range(200):
            key = hashlib.sha256(str(i).encode()).hexdigest()
            cache.put(key, {{"writer": sys.argv[1], "i": i, "text": sys.argv[1] * 20000}})
    """)
    writers = [subprocess.Popen([sys.executable, "-c", code, name], cwd=REPO) for name in "ab"]
    time.sleep(0.5)  # both started and waiting
    go.touch()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    cache = Cache(tmp_path / "cache")
    for i in range(200):
        value = cache.get(hashlib.sha256(str(i).encode()).hexdigest())
        assert value is not None and value["i"] == i and value["text"] == value["writer"] * 20000
    assert stray_temp_files(tmp_path / "cache") == []


# Secrets

def test_an_api_key_given_as_the_variable_name_is_refused_and_never_written(tmp_path, monkeypatch, capsys):
    key = "sk-test-1234567890"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["run", "--aligner", "none", "--benchmark", "safety", "--judge", "openai", "--preset", "tiny",
                 "--judge-api-key-env", key, "--out", str(tmp_path / "run"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2
    assert key not in err and key not in out
    assert "--judge-api-key-env expects the NAME of an environment variable" in err
    assert all(key.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("value, accepted", [("OPENAI_API_KEY", True), ("_MY_KEY2", True), ("2KEY", False),
                                             ("MY-KEY", False), ("A" * 41, False), ("sk-abc", False),
                                             ("KEY\u00e9", False)])
def test_api_key_env_names(value, accepted):
    from harness.cli import build_parser, judge_options

    args = build_parser().parse_args(["run", "--aligner", "none", "--benchmark", "safety",
                                      "--judge-api-key-env", value])
    if accepted:
        assert judge_options(args)["api_key_env"] == value
    else:
        with pytest.raises(HarnessError) as refused:
            judge_options(args)
        assert value not in str(refused.value)


# Markdown

def test_markdown_escapes_names_and_keeps_the_table_shape(tmp_path):
    items = safety_items()
    evil_model, evil_aligner = "<script>alert(1)</script>a|b", "a|b<script>alert(1)</script>\nnext & more"
    write_run(tmp_path / "evil", evil_aligner, exact_outcomes(items, 4, 20, 2), model=evil_model)
    write_run(tmp_path / "limited", "none", exact_outcomes(safety_items(5, 5, 5), 0, 5, 0), limit=5,
              model=evil_model)
    board = build_leaderboard(find_runs([tmp_path]))
    markdown = to_markdown(board, title="Board <b>|</b>")
    assert "<script" not in markdown and "<b>" not in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;a\\|b" in markdown and "next &amp; more" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    head = table[0]
    expected_cells = len(re.split(r"(?<!\\)\|", head)) - 2
    rows = table[2:]
    assert len(rows) == len(board.rows) == 2
    for row in rows:
        assert len(re.split(r"(?<!\\)\|", row)) - 2 == expected_cells
        assert row.split(" | ")[0] == "| &lt;script&gt;alert(1)&lt;/script&gt;a\\|b"


# The cost of a killed attempt

def test_a_stage_killed_mid_way_still_counts_its_time(tmp_path):
    run_dir = tmp_path / "run"
    code = textwrap.dedent(f"""
        import time
        import harness.heartbeat
        from harness.store import RunStore
        harness.heartbeat.INTERVAL_S = 0.1
        store = RunStore({str(run_dir)!r}, {CONFIG!r})
        with store.stage("evaluate"):
            print("in the stage", flush=True)
            time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "in the stage"
    time.sleep(1.0)
    child.kill()  # SIGKILL: no finally, no atexit
    child.wait()
    assert "evaluate" not in json.loads((run_dir / "manifest.json").read_text() if (run_dir / "manifest.json").exists()
                                        else "{}").get("stages", {})

    store = RunStore(run_dir, CONFIG)  # the rerun finds the heartbeat and records the killed attempt
    killed = store.manifest["stages"]["evaluate"]
    assert killed["killed_attempts"] == 1 and 0.8 <= killed["wall_s"] < 5
    with store.stage("evaluate"):
        time.sleep(0.2)
    finished = json.loads((run_dir / "manifest.json").read_text())["stages"]["evaluate"]
    assert finished["killed_attempts"] == 1 and finished["wall_s"] >= killed["wall_s"] + 0.2
    assert not list((run_dir / ".heartbeats").glob("*")) and stray_temp_files(run_dir) == []
    store.close()


def test_a_killed_replay_of_a_finished_run_keeps_its_recorded_cost(tmp_path):
    from harness.heartbeat import Heartbeat

    run_dir = tmp_path / "run"
    with RunStore(run_dir, CONFIG) as store:
        with store.stage("evaluate"):
            pass
        store.update_manifest(status="complete")
        recorded = dict(store.manifest["stages"]["evaluate"])
    Heartbeat(run_dir, "evaluate", time.perf_counter() - 30).beat()  # a replay killed after 30 s
    with RunStore(run_dir, CONFIG) as again:
        assert again.manifest["stages"]["evaluate"] == recorded
    assert not list((run_dir / ".heartbeats").glob("*.json"))
