"""Building the judges a benchmark needs: one per role it declares, checked before anything is loaded."""
from __future__ import annotations

import inspect
from typing import Any

from harness import registry
from harness.errors import HarnessError
from harness.judges.roles import check_fills, fills
from harness.options import names as option_names, parse_value


def flag_of(key: str) -> str:
    """The command-line flag that sets a judge option."""
    return {"prompts": "--judge-prompt", "model": "--judge-model", "base_url": "--judge-base-url",
            "api_key_env": "--judge-api-key-env", "concurrency": "--judge-concurrency"}.get(key, "--judge-option")


def judge_option_values(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The given judge options, each parsed against the judge's typed options (its `options_class`); an
    option the judge does not take, or a bad value, is one HarnessError naming the flag. Judges without an
    options class (older plugins) are checked against their factory's parameters."""
    factory = registry.get("judges", name)
    options_class = getattr(factory, "options_class", None)
    if options_class is not None:
        known = set(option_names(options_class))
    else:
        parameters = inspect.signature(factory).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return dict(options)
        known = set(parameters)
    unknown = [key for key in options if key not in known]
    if unknown:
        flags = ", ".join(f"{flag_of(key)}" + (f" {key}" if flag_of(key) == "--judge-option" else "")
                          for key in unknown)
        raise HarnessError(f"judge {name} does not take {flags}; drop the option(s) or choose another --judge"
                           + (f" (its options: {', '.join(sorted(known))})" if known else ""))
    if options_class is None:
        return dict(options)
    return {key: parse_value(options_class, key, raw, f"{flag_of(key)} {name}:") for key, raw in options.items()}


def make_judge(name: str, options: dict[str, Any]) -> Any:
    """The registered judge built with `options` (checked by `judge_option_values`)."""
    return registry.get("judges", name)(**judge_option_values(name, options))


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
