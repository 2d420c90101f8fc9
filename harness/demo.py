"""`harness demo`: every built-in aligner on `safety` with the embedded base model, one table."""
from __future__ import annotations

import time
from pathlib import Path

from harness import progress
from harness.config import RunConfig
from harness.fileio import ensure_directory
from harness.runner import execute, load_model, peak_memory_mb
from harness.store import write_json_atomic
from reports.table import render_table

DEMO_ALIGNERS = ("none", "icl-only", "sft-seeds", "isara")


def run_demo(model: str, preset: str, seed: int, out: Path) -> list[dict]:
    started = time.perf_counter()
    ensure_directory(out, "--out")  # before the model loads: a bad --out costs nothing
    progress.say(f"harness demo: {', '.join(DEMO_ALIGNERS)} on safety, model {model}, preset {preset}")
    backend = load_model("hf", model)
    documents = []
    for aligner in DEMO_ALIGNERS:
        progress.say(f"--- {aligner}")
        config = RunConfig.from_preset(aligner, "safety", preset, model=model, seed=seed)
        documents.append(execute(config, out / f"{preset}-seed{seed}" / aligner, backend=backend))
    table = render_table(documents)
    wall, peak = time.perf_counter() - started, peak_memory_mb()
    print(table)
    print(f"demo wall time {wall / 60:.1f} min, peak memory {peak / 1024:.2f} GiB; runs in {out}/")
    (out / "table.txt").write_text(table + "\n", encoding="utf-8")
    write_json_atomic(out / "demo.json", {"wall_s": round(wall, 1), "peak_memory_mb": round(peak, 1),
                                          "runs": [d["run"] for d in documents]})
    return documents
