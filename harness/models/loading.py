"""Loading a model with a registered backend: the one place that turns names into a loaded backend."""
from __future__ import annotations

from typing import Any

from harness import registry


def load_model(backend: str, model: str) -> Any:
    """`model` (an embedded name, a Hugging Face id or a local path) loaded with the backend named `backend`."""
    from harness.models.embedded import resolve_model

    return registry.get("backends", backend)(resolve_model(model))
