"""Compute saved by aligning once: a plan run by `harness sweep` against the same pairs run one by one with
`harness run` (each pair aligning again), side by side in one session, each with an empty results cache.

    .venv/bin/python scripts/bench_sweep_savings.py --plan leaderboard --preset tiny --seeds 0 --out /tmp/savings

Prints the number of trainings and the wall time of each way, and their ratios. HARNESS_DATA_DIR must point at
the data mirror (CI and tests use ../shared/data).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.sweep.jobs import expand  # noqa: E402
from harness.sweep.plan import load_plan, resolve_plan_path  # noqa: E402


def harness(args: list[str], cache: Path) -> float:
    """Runs `harness ARGS` with its own results cache (the converted models are shared); returns wall seconds."""
    cache.mkdir(parents=True, exist_ok=True)
    models = Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness") / "models"
    if models.is_dir() and not (cache / "models").exists():
        (cache / "models").symlink_to(models)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, text=True, capture_output=True,
                          env={**os.environ, "HARNESS_CACHE_DIR": str(cache)})
    if done.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="leaderboard")
    parser.add_argument("--preset", help="replace the plan's preset (e.g. tiny for a quick measurement)")
    parser.add_argument("--seeds", help="replace the plan's training seeds, comma-separated (e.g. 0)")
    parser.add_argument("--limit", type=int, help="replace the plan's --limit")
    parser.add_argument("--out", type=Path, required=True, help="a scratch directory (emptied first)")
    args = parser.parse_args(argv)

    plan_data = yaml.safe_load(resolve_plan_path(args.plan).read_text(encoding="utf-8"))
    if args.preset:
        plan_data["preset"] = args.preset
    if args.seeds:
        plan_data["seeds"] = [int(s) for s in args.seeds.split(",")]
    if args.limit:
        plan_data["limit"] = args.limit
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    plan_file = args.out / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan_data), encoding="utf-8")
    plan = load_plan(str(plan_file))
    if plan.seed_set != "auto" or plan.seed_domains != [None]:
        raise SystemExit("the one-run-per-pair side uses each benchmark's own seeds, as `harness run` does: the plan "
                         "needs seed_set: auto and no seed_domains")
    jobs = expand(plan, args.out / "study")
    pairs = [j for j in jobs if j.kind != "align"]

    sweep_s = harness(["sweep", str(plan_file), "--out", str(args.out / "study"), "--quiet"], args.out / "cache-sweep")
    by_id = {job.id: job for job in jobs}
    loop_s = 0.0
    for job in pairs:
        made_by = by_id[job.depends[0]].config if job.depends else job.config  # the align job, or the run itself
        command = ["run", "--aligner", made_by["aligner"], "--benchmark", job.config["benchmark"],
                   "--model", made_by["model"], "--preset", plan.preset, "--seed", str(job.config["seed"]),
                   "--out", str(args.out / "loop" / job.id.replace(":", "_")),
                   "--artifacts", str(args.out / "no-artifacts"), "--quiet"]
        command += [f"--option={k}={'none' if v is None else v}" for k, v in made_by["aligner_options"].items()]
        if plan.limit:
            command += ["--limit", str(plan.limit)]
        loop_s += harness(command, args.out / "cache-loop")
    aligns = sum(j.kind == "align" for j in jobs) + sum(j.kind == "run" for j in jobs)
    result = {"plan": args.plan, "preset": plan.preset, "seeds": plan.seeds, "evaluations": len(pairs),
              "trainings_sweep": aligns, "trainings_one_run_per_pair": len(pairs),
              "wall_s_sweep": round(sweep_s, 1), "wall_s_one_run_per_pair": round(loop_s, 1),
              "wall_ratio": round(sweep_s / loop_s, 3)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
