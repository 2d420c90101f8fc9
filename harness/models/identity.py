"""What identifies a backend's weights and adapters in cache keys, the same way for every backend."""
from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.hashing import hash_dir
from harness.models.embedded import ModelSpec


def weights_id(spec: ModelSpec) -> str:
    """The source file's hash (a converted GGUF), the pinned hub revision, or the hash of the files."""
    if spec.sha256:
        return f"{spec.source}#{spec.sha256}"
    if spec.source.startswith("hf:"):  # pinned to the snapshot's commit
        return spec.source
    return hash_dir(spec.path)


class AdapterHashes:
    """Content hashes of LoRA adapter directories, memoised per path and modification time."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], str] = {}

    def __call__(self, path: Path | None) -> str | None:
        if path is None:
            return None
        path = Path(path)
        if not (path / "adapter_config.json").exists():
            raise HarnessError(f"{path} holds no LoRA adapter (adapter_config.json is missing)")
        key = (str(path.resolve()), (path / "adapter_config.json").stat().st_mtime_ns)
        if key not in self._known:
            self._known[key] = hash_dir(path)
        return self._known[key]
