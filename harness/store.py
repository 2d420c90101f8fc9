"""Run directories: config, manifest, per-sample JSONL written as it goes, and a content-addressed cache.

Crash safety:
- every JSON file is written atomically: a temp file in the same directory is written, flushed and fsynced,
  renamed over the target, and the directory is fsynced, so a kill or a power loss leaves the old file or the
  new one, never a mix (and no stray temp file when the write fails);
- JSONL files are appended one fsynced line at a time: a kill loses at most the line being written, which
  readers ignore and `JsonlWriter` removes; a corrupt line anywhere else is reported, never skipped;
- a run directory is locked (harness/runlock.py) so two processes never write one run;
- a running stage's time is checkpointed (harness/heartbeat.py), so the recorded cost of a resumed run
  includes attempts that were killed before they could record themselves.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from harness.errors import HarnessError
from harness.fileio import (ensure_directory, fsync_dir, parse_json_object, read_json_file,  # noqa: F401
                            remove_stray_temp_files, write_bytes_atomic, write_json_atomic, write_text_atomic)
from harness.hashing import hash_json
from harness.heartbeat import HEARTBEAT_DIR, Heartbeat, killed_attempts
from harness.runlock import LOCK_NAME, TAKEOVER_NAME, acquire_run_lock, release_run_lock


def cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness")


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file.

    A torn last line (no newline after it: the writer was killed mid-write) is ignored. Any other line that is
    not a JSON object raises HarnessError naming the file and the line, instead of silently losing the records
    after it.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")  # the last piece is b"" when the file ends with a newline
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        record = parse_json_object(raw)
        if record is None:
            if number == len(lines):
                break  # torn last line
            raise HarnessError(f"{path}: line {number} is corrupt; fix or delete that line, then rerun "
                               "(it is not a JSON object)")
        records.append(record)
    return records


class JsonlWriter:
    """Appends one record per line, flushed and fsynced each, so progress survives a kill or a power loss."""

    def __init__(self, path: Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        if existed:
            self._repair(path)
        self.path = path
        self._handle = open(path, "a", encoding="utf-8")
        if not existed:
            fsync_dir(path.parent)

    @staticmethod
    def _repair(path: Path) -> None:
        """Ends the file with a complete line: a torn last line is removed (or, when it is a whole record whose
        newline was lost, completed). Corruption before the last line raises, as in `read_jsonl`."""
        read_jsonl(path)
        data = path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        kept = data[:cut] + (tail + b"\n" if parse_json_object(tail) is not None else b"")
        write_bytes_atomic(path, kept)

    def write(self, record: dict) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Cache:
    """Content-addressed store of generations and judgements: one file per key, written atomically, so
    concurrent runs can share it. A file that cannot be read back whole is a miss."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else cache_root() / "results"
        self.hits = 0  # results served instead of computed: a run's wall time leaves their work out

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            document = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(document, dict) or document.get("key") != key or "value" not in document:
            return None
        self.hits += 1
        return document["value"]

    def put(self, key: str, value: Any) -> None:
        write_json_atomic(self._path(key), {"key": key, "value": value})


class RunStore:
    """One run's directory. Refuses a directory that holds a run of a different config, or that another live
    process is using (see `acquire_run_lock`). The lock is released by `close()`, by leaving a `with` block, or
    when the process exits."""

    def __init__(self, root: Path, config: dict[str, Any]):
        self.root = Path(root)
        self.config = config
        self.config_hash = hash_json(config)
        ensure_directory(self.root, "output directory")
        self._lock: Path | None = acquire_run_lock(self.root)
        try:
            self._open(config)
        except BaseException:
            self.close()
            raise

    def _open(self, config: dict[str, Any]) -> None:
        existing = self.root / "config.json"
        if existing.exists():
            try:
                old_hash = hash_json(json.loads(existing.read_text(encoding="utf-8")))
            except (UnicodeDecodeError, ValueError, RecursionError):  # unreadable: not this run's config
                old_hash = None
            if old_hash != self.config_hash:
                raise HarnessError(
                    f"output directory {self.root} holds a run with a different config; "
                    "pass a new --out directory (or delete that one; a run written by an earlier version: "
                    "`harness upgrade` it, then rerun)"
                )
        elif any(p.name not in (LOCK_NAME, TAKEOVER_NAME, HEARTBEAT_DIR) for p in self.root.iterdir()):
            raise HarnessError(f"output directory {self.root} is not empty and holds no harness run; pass a new --out")
        write_json_atomic(existing, config)
        self.manifest: dict[str, Any] = self.read_json("manifest.json") or {"stages": {}}
        self.manifest["config_hash"] = self.config_hash
        # A finished run that is run again is a replay served from its files: its recorded costs stay those
        # of the computation that produced it. An interrupted run's stages add up over its attempts.
        self.replay = self.manifest.get("status") == "complete"
        remove_stray_temp_files(self.root)  # a killed attempt's half-written files (we hold the lock)
        self._add_killed_attempts()
        self.earlier_stages: dict[str, dict] = dict(self.manifest["stages"])

    def _add_killed_attempts(self) -> None:
        """Adds the time of attempts that were killed mid-stage (their heartbeats) to those stages' records."""
        beats = killed_attempts(self.root)
        for beat in [] if self.replay else beats:  # a killed replay of a finished run computed nothing new
            earlier = self.manifest["stages"].get(beat["stage"])
            killed = {"tokens_generated": 0, "tokens_trained": 0, "wall_s": beat["wall_s"]}
            record = killed if earlier is None else merge_attempts(earlier, killed)
            record["killed_attempts"] = (earlier or {}).get("killed_attempts", 0) + 1
            self.manifest["stages"][beat["stage"]] = record
        if beats:
            self.write_json("manifest.json", self.manifest)
            for beat in beats:
                beat["path"].unlink(missing_ok=True)

    def close(self) -> None:
        """Releases the run directory's lock (again: nothing happens)."""
        if self._lock is not None:
            release_run_lock(self._lock)
            self._lock = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def read_json(self, relpath: str) -> Any | None:
        path = self.root / relpath
        return read_json_file(path, "run file") if path.exists() else None

    def write_json(self, relpath: str, obj: Any) -> None:
        write_json_atomic(self.root / relpath, obj)

    def samples(self, name: str) -> JsonlWriter:
        return JsonlWriter(self.path("samples", f"{name}.jsonl"))

    def read_samples(self, name: str) -> list[dict]:
        return read_jsonl(self.root / "samples" / f"{name}.jsonl")

    def replace_samples(self, name: str, records: list[dict]) -> None:
        """samples/<name>.jsonl rewritten whole with `records`: atomically (a staging file renamed over it)."""
        path = self.path("samples", f"{name}.jsonl")
        staging = path.with_name(f".{path.name}.rewrite")
        staging.unlink(missing_ok=True)
        with JsonlWriter(staging) as writer:
            for record in records:
                writer.write(record)
        os.replace(staging, path)
        fsync_dir(path.parent)

    def update_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self.write_json("manifest.json", self.manifest)

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Times a stage; the caller adds token counts to the yielded dict. Saved in the manifest."""
        record: dict[str, Any] = {"tokens_generated": 0, "tokens_trained": 0}
        start = time.perf_counter()
        heartbeat = Heartbeat(self.root, name, start).start()
        try:
            yield record
        finally:
            heartbeat.stop()
            record["wall_s"] = round(time.perf_counter() - start, 3)
            earlier = self.manifest["stages"].get(name) if not self.replay else self.earlier_stages.get(name)
            if earlier is None or not self.replay:
                self.manifest["stages"][name] = record if earlier is None else merge_attempts(earlier, record)
                self.write_json("manifest.json", self.manifest)
            heartbeat.clear()  # after the record: a kill in between never counts this attempt twice


def merge_attempts(earlier: dict[str, Any], latest: dict[str, Any]) -> dict[str, Any]:
    """A stage resumed after an interruption: the wall time of both attempts; counts from the latest one,
    which redoes or re-reads everything (tokens served from the cache count), but never below the earlier."""
    merged = {**earlier, **latest, "wall_s": round(earlier.get("wall_s", 0) + latest["wall_s"], 3)}
    for key in ("tokens_generated", "tokens_trained", "optimizer_steps"):
        if key in earlier or key in latest:
            merged[key] = max(earlier.get(key, 0), latest.get(key, 0))
    return merged
