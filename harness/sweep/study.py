"""`harness sweep PLAN`: expand the plan, run its jobs with a launcher, write the report, list what failed."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from harness import progress
from harness.errors import HarnessError
from harness.fileio import ensure_directory, write_json_atomic
from harness.runlock import acquire_run_lock, release_run_lock
from harness.sweep.jobs import expand
from harness.sweep.launch import LAUNCHERS, SweepState, ray_available
from harness.sweep.plan import load_plan


def run_sweep(plan_name: str, out: Path | None, launcher: str, address: str | None,
              include: list[str]) -> SweepState:
    plan = load_plan(plan_name)
    if launcher not in LAUNCHERS:
        raise HarnessError(f"--launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    if address and launcher != "ray":
        raise HarnessError("--address is the Ray cluster to submit to; it needs --launcher ray")
    if launcher == "ray":
        ray_available(address)  # before anything is written
    out = Path(out) if out else Path("runs") / "sweeps" / Path(plan.source).stem
    jobs = expand(plan, out)
    if not jobs:
        raise HarnessError(f"plan {plan.source} has no jobs")
    ensure_directory(out, "--out")
    lock = acquire_run_lock(out)  # one sweep writes sweep.json at a time
    try:
        write_json_atomic(out / "plan.json", {**asdict(plan), "resources": asdict(plan.resources)})
        aligns = sum(job.kind != "eval" for job in jobs)
        evaluations = sum(job.kind != "align" for job in jobs)
        progress.say(f"sweep {plan.source}: {aligns} alignment(s) and {evaluations} evaluation(s) "
                     f"(one run per pair would align {evaluations} times) in {out}, launcher {launcher}")
        state = SweepState(out.resolve(), plan, launcher)
        LAUNCHERS[launcher](jobs, state, include, address)
        finished = [Path(j.out) for j in jobs if j.kind != "align" and state.outcomes.get(j.id)
                    and state.outcomes[j.id].status in ("finished", "reused")]
        if finished:
            from reports.report import write_report

            report = write_report(finished, out / "report", plan.title or f"Study: {Path(plan.source).stem}", False)
            progress.say(f"report: {', '.join(str(p) for p in report.files)}")
        return state
    finally:
        release_run_lock(lock)
