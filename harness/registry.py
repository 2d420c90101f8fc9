"""Registry of aligners, benchmarks, judges and backends.

Built-ins and plugins register the same way: entry points in the groups `harness.aligners`,
`harness.benchmarks`, `harness.judges` and `harness.backends`, each naming a class or factory.
A Python file passed with `--include` registers by calling `register(kind, name)` at import time.
"""
from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

from harness.errors import HarnessError
from harness.hashing import hash_file

KINDS = ("aligners", "benchmarks", "judges", "backends")

# The one piece of global mutable state the design allows: objects registered at run time, where each came
# from, and the plugin files included (for the manifest).
_registered: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
_origins: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
_plugins: dict[str, dict[str, Any]] = {}
_including: list[tuple[Path, str]] = []  # (plugin file, its module name) while it is being imported


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise HarnessError(f"unknown registry kind {kind!r}; choose one of: {', '.join(KINDS)}")


def register(kind: str, name: str, *, override: bool = False) -> Callable[[Any], Any]:
    """Decorator that registers a class or factory under `name`.

    In a plugin file (`--include`), a name that is already taken (a built-in, or another plugin's) is refused,
    so a plugin can never replace a built-in silently; `override=True` replaces it on purpose, and every run's
    manifest records that (see `plugins()`)."""
    _check_kind(kind)

    def decorate(obj: Any) -> Any:
        # A registration comes from a plugin when the registered object was defined in the plugin's module
        # (a built-in module first imported by a plugin still registers as a built-in).
        origin = next((path for path, module in _including if getattr(obj, "__module__", None) == module), None)
        source = str(origin) if origin else "register()"
        earlier = _origins[kind].get(name, "builtin" if name in _entry_points(kind) else None)
        # Only a plugin file can shadow by mistake; code calling register() directly (tests, scripts) means it.
        replacing = origin is not None and earlier is not None and earlier != source
        if replacing and not override:
            what = "a built-in" if earlier == "builtin" else f"already registered by {earlier}"
            raise HarnessError(f"{'plugin ' + str(origin) if origin else 'register()'} registers {kind[:-1]} "
                               f"{name!r}, which is {what}; give it another name, or register it with "
                               "override=True to replace it on purpose (the run's manifest records that)")
        _registered[kind][name] = obj
        _origins[kind][name] = source
        if origin is not None:
            entry = _plugins[str(origin)]
            entry["registers"].append(f"{kind[:-1]} {name}")
            if replacing:
                entry["overrides"].append(f"{kind[:-1]} {name} (was {'built-in' if earlier == 'builtin' else earlier})")
        return obj

    return decorate


def _entry_points(kind: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=f"harness.{kind}")}


def names(kind: str) -> list[str]:
    _check_kind(kind)
    return sorted(set(_entry_points(kind)) | set(_registered[kind]))


def get(kind: str, name: str) -> Any:
    """The registered object; an unknown name is a HarnessError that lists the known ones."""
    _check_kind(kind)
    if name in _registered[kind]:
        return _registered[kind][name]
    eps = _entry_points(kind)
    if name in eps:
        return eps[name].load()
    singular = kind.rstrip("s")
    raise HarnessError(f"unknown {singular} {name!r}; known: {', '.join(names(kind)) or 'none'}")


def include(path: str | Path) -> None:
    """Import a plugin file; its `register(...)` calls take effect. Every failure is one HarnessError."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"--include {path}: no such file")
    resolved = path.resolve()
    module_name = f"harness_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise HarnessError(f"--include {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    _plugins[str(resolved)] = {"file": str(resolved), "sha256": hash_file(resolved), "registers": [],
                               "overrides": []}
    _including.append((resolved, module_name))
    try:
        spec.loader.exec_module(module)
    except HarnessError:
        raise
    except SystemExit as exc:  # it must not end the command (a gate would pass without comparing)
        raise HarnessError(f"--include {path}: the plugin called sys.exit({exc.code!r}) while being imported; a "
                           "plugin file should only define and register things") from None
    except Exception as exc:  # a broken plugin is the user's input: report it in one line
        raise HarnessError(f"--include {path}: failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        _including.pop()


def plugins() -> list[dict[str, Any]]:
    """The plugin files included in this process: path, sha256, what each registers and what it overrides."""
    return [dict(entry) for entry in _plugins.values()]


def plugin_frame(trace: TracebackType | None) -> str | None:
    """'FILE line N' of the innermost traceback frame inside an included plugin file, if any."""
    found = None
    files = set(_plugins)
    while trace is not None:
        filename = trace.tb_frame.f_code.co_filename
        if filename in files or str(Path(filename).resolve()) in files:
            found = f"{filename} line {trace.tb_lineno}"
        trace = trace.tb_next
    return found
