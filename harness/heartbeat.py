"""Stage time that survives a kill.

While a stage runs, a background thread rewrites a small file (`.heartbeats/<stage>.json` in the run
directory) with the stage's elapsed time every few seconds; the stage removes it when it ends, after its
record is in the manifest. A heartbeat file found when a run directory is opened is therefore the cost of an
attempt that was killed (SIGKILL, power loss) before it could record itself, and the run store adds it to
that stage's record. What a kill can still lose is the time since the last beat (at most `INTERVAL_S`).
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from harness.fileio import path_component, write_json_atomic

HEARTBEAT_DIR = ".heartbeats"
INTERVAL_S = 5.0


class Heartbeat:
    """Beats for one stage from `started` (a time.perf_counter() value): `start()`, then `stop()` and, once the
    stage's record is saved, `clear()`."""

    def __init__(self, run_dir: Path, stage: str, started: float, interval_s: float | None = None):
        self.path = Path(run_dir) / HEARTBEAT_DIR / f"{path_component(stage)}.json"
        self.stage, self.started, self.interval_s = stage, started, interval_s or INTERVAL_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {stage}", daemon=True)

    def beat(self) -> None:
        write_json_atomic(self.path, {"stage": self.stage, "wall_s": round(time.perf_counter() - self.started, 3)})

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except OSError:  # a full disk must not kill the stage; the next beat tries again
                pass

    def start(self) -> "Heartbeat":
        """The first beat at once (so the file also marks a stage in progress), then one every interval."""
        self.beat()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops beating (the file stays until `clear`)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def killed_attempts(run_dir: Path) -> list[dict[str, Any]]:
    """The heartbeats that killed attempts left ({"stage", "wall_s"}); unreadable ones are skipped."""
    found = []
    for path in sorted((Path(run_dir) / HEARTBEAT_DIR).glob("*.json")):
        try:
            beat = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(beat, dict) and isinstance(beat.get("stage"), str) and isinstance(beat.get("wall_s"), (int, float)):
            found.append({"stage": beat["stage"], "wall_s": float(beat["wall_s"]), "path": path})
    return found
