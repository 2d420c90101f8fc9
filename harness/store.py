"""Run directories: config, manifest, per-sample JSONL written as it goes, and a content-addressed cache.

Every file is written atomically (temp file + rename) or appended line by line, so a killed run leaves
only complete records behind and a rerun picks up where it stopped.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from harness.errors import HarnessError
from harness.hashing import hash_json


def cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness")


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (the run was killed mid-write) is ignored."""
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


class JsonlWriter:
    """Appends one record per line and flushes each, so progress survives a kill."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair(path)
        self.path = path
        self._handle = open(path, "a", encoding="utf-8")

    @staticmethod
    def _repair(path: Path) -> None:
        if path.exists():
            records = read_jsonl(path)
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            if text.encode("utf-8") != path.read_bytes():
                path.write_text(text, encoding="utf-8")

    def write(self, record: dict) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Cache:
    """Content-addressed store of generations and judgements: one file per key, written atomically."""

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
            value = json.loads(path.read_text(encoding="utf-8"))["value"]
        except (json.JSONDecodeError, KeyError):
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        write_json_atomic(self._path(key), {"key": key, "value": value})


class RunStore:
    """One run's directory. Refuses a directory that holds a run of a different config."""

    def __init__(self, root: Path, config: dict[str, Any]):
        self.root = Path(root)
        self.config = config
        self.config_hash = hash_json(config)
        existing = self.root / "config.json"
        if existing.exists():
            try:
                old_hash = hash_json(json.loads(existing.read_text(encoding="utf-8")))
            except json.JSONDecodeError:
                old_hash = None
            if old_hash != self.config_hash:
                raise HarnessError(
                    f"output directory {self.root} holds a run with a different config; "
                    "pass a new --out directory (or delete that one)"
                )
        elif self.root.exists() and any(self.root.iterdir()):
            raise HarnessError(f"output directory {self.root} is not empty and holds no harness run; pass a new --out")
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(existing, config)
        self.manifest: dict[str, Any] = self.read_json("manifest.json") or {"stages": {}}
        self.manifest["config_hash"] = self.config_hash
        # A finished run that is run again is a replay served from its files: its recorded costs stay those
        # of the computation that produced it. An interrupted run's stages add up over its attempts.
        self.replay = self.manifest.get("status") == "complete"
        self.earlier_stages: dict[str, dict] = dict(self.manifest["stages"])

    def path(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def read_json(self, relpath: str) -> Any | None:
        path = self.root / relpath
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def write_json(self, relpath: str, obj: Any) -> None:
        write_json_atomic(self.root / relpath, obj)

    def samples(self, name: str) -> JsonlWriter:
        return JsonlWriter(self.path("samples", f"{name}.jsonl"))

    def read_samples(self, name: str) -> list[dict]:
        return read_jsonl(self.root / "samples" / f"{name}.jsonl")

    def update_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self.write_json("manifest.json", self.manifest)

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Times a stage; the caller adds token counts to the yielded dict. Saved in the manifest."""
        record: dict[str, Any] = {"tokens_generated": 0, "tokens_trained": 0}
        start = time.perf_counter()
        try:
            yield record
        finally:
            record["wall_s"] = round(time.perf_counter() - start, 3)
            earlier = self.earlier_stages.get(name)
            if earlier is None or not self.replay:
                self.manifest["stages"][name] = record if earlier is None else merge_attempts(earlier, record)
                self.write_json("manifest.json", self.manifest)


def merge_attempts(earlier: dict[str, Any], latest: dict[str, Any]) -> dict[str, Any]:
    """A stage resumed after an interruption: the wall time of both attempts; counts from the latest one,
    which redoes or re-reads everything (tokens served from the cache count), but never below the earlier."""
    merged = {**earlier, **latest, "wall_s": round(earlier.get("wall_s", 0) + latest["wall_s"], 3)}
    for key in ("tokens_generated", "tokens_trained", "optimizer_steps"):
        if key in earlier or key in latest:
            merged[key] = max(earlier.get(key, 0), latest.get(key, 0))
    return merged
