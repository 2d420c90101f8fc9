"""The run-directory lock: one process writes a run at a time.

`acquire_run_lock(root)` creates `root/.lock` (the owner's pid, host and start time) atomically. A second
process that targets the directory while the owner is alive is refused with one line; a lock whose owner on
this host is no longer running (killed, crashed, power loss) is taken over behind a short guard file, so two
processes never both win. The same process may open a directory again (a hold count keeps the lock until the
last holder releases it); every lock this process holds is removed when it exits.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.fileio import fsync_dir, parse_json_object, write_bytes_atomic

LOCK_NAME = ".lock"
TAKEOVER_NAME = ".lock.takeover"
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
        owner = parse_json_object(raw)
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
    guard = lock.with_name(TAKEOVER_NAME)
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
