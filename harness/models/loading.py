"""Loading a model with a registered backend: the one place that turns names into a loaded backend.

A backend may declare typed options (`options_class`, given as `--backend-option KEY=VALUE` or a plan's
`backend_options`) and a `check_installed()` classmethod; both are checked by `backend_option_values` before
any work, so a missing package or a bad value is one line, not a failure after minutes of alignment.
"""
from __future__ import annotations

from typing import Any, Mapping

from harness import registry
from harness.options import Layer, as_dict, names, resolve


def backend_option_values(backend: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The backend's options, typed and complete (its defaults, then `given`); {} for a backend without
    options. Raises HarnessError for an unknown key, a bad value, or a backend whose package is missing."""
    from harness.errors import HarnessError

    factory = registry.get("backends", backend)
    check = getattr(factory, "check_installed", None)
    if callable(check):
        check()
    options_class = getattr(factory, "options_class", None)
    if options_class is None or not names(options_class):
        if given:
            raise HarnessError(f"--backend-option {next(iter(given))}: backend {backend} takes no options")
        return {}
    return as_dict(resolve(options_class, [Layer("--backend-option", dict(given or {}), strict=True)],
                           f"backend {backend}"))


def load_model(backend: str, model: str, options: Mapping[str, Any] | None = None) -> Any:
    """`model` (an embedded name, a Hugging Face id or a local path) loaded with the backend named `backend`."""
    from harness.models.embedded import resolve_model

    factory = registry.get("backends", backend)
    values = backend_option_values(backend, options)
    if not values:
        return factory(resolve_model(model))
    return factory(resolve_model(model), options=resolve(factory.options_class, [Layer("config", values)],
                                                         f"backend {backend}"))
