"""Progress bars that stay quiet under --quiet and in CI logs."""
from __future__ import annotations

import os
from contextlib import contextmanager, redirect_stderr
from typing import Iterator

from tqdm.auto import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet or os.environ.get("CI", "").lower() in ("1", "true")


def bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, disable=is_quiet(), leave=False, dynamic_ncols=True)


def say(message: str) -> None:
    if not _quiet:
        print(message, flush=True)


@contextmanager
def no_loading_bars() -> Iterator[None]:
    """Hide transformers' per-load progress bars: loading a cached model takes well under a second."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def quiet_third_party() -> Iterator[None]:
    """Under --quiet (or in CI), silence the progress output of library code we cannot configure (e.g.
    transformers' GGUF conversion bar) for the duration of the block; otherwise change nothing."""
    if not is_quiet():
        yield
        return
    with no_loading_bars(), open(os.devnull, "w", encoding="utf-8") as sink, redirect_stderr(sink):
        yield
