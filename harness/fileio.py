"""Writing files so that a kill or a power loss leaves the old file or the new one, never a mix: a temp file in
the same directory is written, flushed and fsynced, renamed over the target, and the directory is fsynced."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def path_component(name: str, allowed: str = "A-Za-z0-9_.=-", max_length: int = 120) -> str:
    """`name` (a model, aligner or benchmark name, which may come from a user or a plugin) as one safe file
    name: other characters become "_", and no result is empty, "." / ".." or hidden, so a name can never
    point outside the directory it is joined to."""
    safe = re.sub(f"[^{allowed}]+", "_", name)[:max_length]
    return "_" + safe[1:] if safe.startswith(".") else (safe or "_")


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


def remove_stray_temp_files(root: Path) -> int:
    """Deletes what writers killed mid-write left under `root` (their ".<name>.<random>.tmp" files and staging
    directories); only for a directory this process holds the lock of. Returns how many were removed."""
    stray = [p for p in Path(root).rglob(".*.tmp")]
    for path in stray:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(stray)


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


def parse_json_object(raw: bytes) -> dict | None:
    """Bytes holding one JSON object (a JSONL line, a lock file), or None when they do not."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError covers JSONDecodeError
        return None
    return record if isinstance(record, dict) else None


# Reading what a user hands us: every way a file can be unreadable is one HarnessError naming it.

def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of `path` (`what` names it in errors, e.g. "seeds file")."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except IsADirectoryError:
        raise HarnessError(f"{what} {path} is a directory; expected a file") from None
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{what} {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as "
                           "UTF-8") from None
    except OSError as exc:
        raise HarnessError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def parse_json_text(text: str, where: str) -> Any:
    """JSON from text; malformed, or nested too deep for Python's parser, is one HarnessError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (RecursionError, ValueError) as exc:
        raise HarnessError(f"{where} is not usable JSON ({type(exc).__name__}: nested too deep or out of range)"
                           ) from None


def read_json_file(path: Path, what: str) -> Any:
    """The JSON content of `path`; an unreadable or malformed file is one HarnessError naming it."""
    return parse_json_text(read_text_file(path, what), f"{what} {path}")


def parse_yaml_text(text: str, where: str) -> Any:
    """YAML from text (safe loader); malformed or too deep is one HarnessError."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HarnessError(f"{where} is not valid YAML ({' '.join(str(exc).split())[:200]})") from None
    except RecursionError:
        raise HarnessError(f"{where} is not usable YAML (nested too deep)") from None


def ensure_directory(path: Path, flag: str) -> Path:
    """Creates the output directory `path` (and its parents); a path that is a file, lies under a file or
    cannot be written is one HarnessError that names `flag`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HarnessError(f"{flag} {path} is a file; pass a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise HarnessError(f"{flag} {path}: a part of that path is a file; pass another directory") from None
    except OSError as exc:
        raise HarnessError(f"{flag} {path}: cannot create it ({exc.strerror or exc}); pass another directory"
                           ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise HarnessError(f"{flag} {path} is not writable; pass another directory")
    return path
