"""Building the judges a benchmark needs: one per role it declares, checked before anything is loaded."""
from __future__ import annotations

import inspect
from typing import Any

from harness import registry
from harness.errors import HarnessError
from harness.judges.roles import check_fills, fills


def make_judge(name: str, options: dict[str, Any]) -> Any:
    """The registered judge built with `options`; an option the judge does not take is a HarnessError."""
    factory = registry.get("judges", name)
    parameters = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = [key for key in options if key not in parameters]
        if unknown:
            flags = ", ".join("--judge-prompt" if key == "prompts" else f"--judge-{key.replace('_', '-')}"
                              for key in unknown)
            raise HarnessError(f"judge {name} does not take {flags}; drop the option(s) or choose another --judge")
    return factory(**options)


def judges_filling(role: str) -> list[str]:
    """Registered judges that declare `role` (for error messages)."""
    found = []
    for name in registry.names("judges"):
        try:
            if fills(registry.get("judges", name), role):
                found.append(name)
        except Exception:  # a broken plugin must not hide the message this list decorates
            continue
    return found


def judge_names(benchmark: Any, primary: str | None) -> dict[str, str]:
    """role -> judge name: the benchmark's defaults, with `primary` (--judge) replacing its first role's."""
    roles = dict(benchmark.judge_roles)
    if roles and primary:
        roles[next(iter(roles))] = primary
    for role, name in roles.items():
        check_fills(name, registry.get("judges", name), role, benchmark.name, judges_filling(role))
    return roles


def judges_for(benchmark: Any, primary: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """role -> judge instance. The --judge-* options go to the primary judge; a judge filling two roles is
    built once."""
    names = judge_names(benchmark, primary)
    first = next(iter(names), None)
    built: dict[tuple[str, bool], Any] = {}
    judges = {}
    for role, name in names.items():
        key = (name, role == first)
        if key not in built:
            built[key] = make_judge(name, options if role == first else {})
        judges[role] = built[key]
    return judges
