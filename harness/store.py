"""Run directories: config, manifest, per-sample JSONL written as it goes, and a content-addressed cache.

Crash safety:
- every JSON file is written atomically: a temp file in the same directory is written, flushed and fsynced,
  renamed over the target, and the directory is fsynced, so a kill or a power loss leaves the old file or the
  new one, never a mix (and no stray temp file when the write fails);
- JSONL files are appended one fsynced line at a time: a kill loses at most the line being written, which
  readers ignore and `JsonlWriter` removes; a corrupt line anywhere else is reported, never skipped;
- a run directory is locked (`.lock`, holding the owner's pid and host) so two processes never write one run.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from harness.errors import HarnessError
from harness.hashing import hash_json


def cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness")


def fsync_dir(directory: Path) -> None:
    """Makes a rename or a new file in `directory` durable. Platforms that cannot open or fsync a directory
    (Windows) are skipped: there the rename itself is all we get."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replaces `path` with `data`: all or nothing, even across a power loss."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def _parse_record(raw: bytes) -> dict | None:
    """One JSONL line as a record, or None when it is not a JSON object."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


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
        record = _parse_record(raw)
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
        kept = data[:cut] + (tail + b"\n" if _parse_record(tail) is not None else b"")
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


LOCK_NAME = ".lock"
_TAKEOVER_NAME = ".lock.takeover"
_STALE_TAKEOVER_S = 10.0  # a takeover guard this old was left by a process killed in the middle of one

# Run directory locks this process holds, with the number of open RunStores using each.
_held_locks: dict[Path, int] = {}
_held_mutex = threading.Lock()


def _lock_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds")}


def _is_mine(owner: dict[str, Any]) -> bool:
    return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()


def _read_lock(lock: Path, attempts: int = 20) -> tuple[bytes | None, dict[str, Any] | None]:
    """The lock file's bytes (None: there is none) and its owner (None: unreadable). An unreadable lock is read
    again a few times, since its owner may be between creating it and writing its pid."""
    for attempt in range(attempts):
        try:
            raw = lock.read_bytes()
        except FileNotFoundError:
            return None, None
        owner = _parse_record(raw)
        if owner is not None and isinstance(owner.get("pid"), int):
            return raw, owner
        if attempt + 1 < attempts:
            time.sleep(0.05)
    return raw, None


def _process_state(pid: int) -> str | None:
    """The Linux process state letter (R, S, Z, ...) of `pid`, None where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0] if ")" in stat else None


def _owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process that wrote a lock still runs. One on another host cannot be checked: it counts as
    running."""
    if owner.get("host") != socket.gethostname() or os.name == "nt":  # os.kill(pid, 0) terminates on Windows
        return True
    pid = owner["pid"]
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return _process_state(pid) != "Z"  # a killed process nobody has waited for yet holds nothing


def _write_lock(lock: Path) -> bytes | None:
    """Creates the lock file if there is none; its bytes, or None when another process holds one."""
    data = json.dumps(_lock_record()).encode("utf-8") + b"\n"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(lock.parent)
    return data


def _take_over(lock: Path, stale: bytes) -> bytes | None:
    """Replaces a stale lock, provided it still holds `stale`; its new bytes, or None when another process got
    there first. A guard file makes the check and the replacement one step among competing processes."""
    guard = lock.with_name(_TAKEOVER_NAME)
    try:
        fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        with suppress(OSError):
            if time.time() - guard.stat().st_mtime > _STALE_TAKEOVER_S:
                guard.unlink()
        return None
    try:
        try:
            if lock.read_bytes() != stale:
                return None
        except FileNotFoundError:
            return None
        data = json.dumps(_lock_record()).encode("utf-8") + b"\n"
        write_bytes_atomic(lock, data)
        return data
    finally:
        os.close(fd)
        with suppress(OSError):
            guard.unlink()


def _in_use_error(root: Path, owner: dict[str, Any]) -> HarnessError:
    started = owner.get("started", "at an unknown time")
    if owner.get("host") == socket.gethostname():
        where, hint = "", ""
    else:
        where, hint = f" on host {owner.get('host')}", f" (if that process is gone, delete {root / LOCK_NAME})"
    return HarnessError(f"run directory {root} is in use by process {owner['pid']}{where} (started {started}); "
                        f"wait for it or pass another --out{hint}")


def acquire_run_lock(root: Path) -> Path:
    """Locks the run directory `root` for this process; refuses one that a live process holds. A stale lock
    (its process has ended) is taken over; this process may lock a directory it holds again."""
    lock = Path(root) / LOCK_NAME
    with _held_mutex:
        if lock in _held_locks:
            _, owner = _read_lock(lock, attempts=1)
            if owner is not None and _is_mine(owner):
                _held_locks[lock] += 1
                return lock
            del _held_locks[lock]  # deleted or taken from us meanwhile: acquire it anew
        for _ in range(100):
            mine = _write_lock(lock)
            if mine is None:
                raw, owner = _read_lock(lock)
                if raw is None:
                    continue  # released meanwhile
                if owner is not None and _owner_alive(owner) and not _is_mine(owner):
                    raise _in_use_error(Path(root), owner)
                # Unreadable, or left by a process that has ended (or by an earlier process with our pid).
                mine = _take_over(lock, raw)
                if mine is None:
                    time.sleep(0.05)
                    continue
            with suppress(FileNotFoundError):
                if lock.read_bytes() == mine:
                    _held_locks[lock] = 1
                    return lock
        raise HarnessError(f"could not lock run directory {root}: other processes keep competing for it; "
                           "wait for them or pass another --out")


def release_run_lock(lock: Path) -> None:
    """Drops one hold on a lock; the last one removes the lock file, if this process still owns it."""
    with _held_mutex:
        count = _held_locks.get(lock, 0)
        if count > 1:
            _held_locks[lock] = count - 1
            return
        _held_locks.pop(lock, None)
        _remove_if_mine(lock)


def _remove_if_mine(lock: Path) -> None:
    _, owner = _read_lock(lock, attempts=1)
    if owner is not None and _is_mine(owner):
        with suppress(FileNotFoundError):
            lock.unlink()


@atexit.register
def _release_all_run_locks() -> None:
    with _held_mutex:
        for lock in list(_held_locks):
            _remove_if_mine(lock)
        _held_locks.clear()


class RunStore:
    """One run's directory. Refuses a directory that holds a run of a different config, or that another live
    process is using (see `acquire_run_lock`). The lock is released by `close()`, by leaving a `with` block, or
    when the process exits."""

    def __init__(self, root: Path, config: dict[str, Any]):
        self.root = Path(root)
        self.config = config
        self.config_hash = hash_json(config)
        if self.root.exists() and not self.root.is_dir():
            raise HarnessError(f"output directory {self.root} is a file; pass a directory as --out")
        self.root.mkdir(parents=True, exist_ok=True)
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
            except (UnicodeDecodeError, json.JSONDecodeError):
                old_hash = None
            if old_hash != self.config_hash:
                raise HarnessError(
                    f"output directory {self.root} holds a run with a different config; "
                    "pass a new --out directory (or delete that one)"
                )
        elif any(p.name not in (LOCK_NAME, _TAKEOVER_NAME) for p in self.root.iterdir()):
            raise HarnessError(f"output directory {self.root} is not empty and holds no harness run; pass a new --out")
        write_json_atomic(existing, config)
        self.manifest: dict[str, Any] = self.read_json("manifest.json") or {"stages": {}}
        self.manifest["config_hash"] = self.config_hash
        # A finished run that is run again is a replay served from its files: its recorded costs stay those
        # of the computation that produced it. An interrupted run's stages add up over its attempts.
        self.replay = self.manifest.get("status") == "complete"
        self.earlier_stages: dict[str, dict] = dict(self.manifest["stages"])

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
