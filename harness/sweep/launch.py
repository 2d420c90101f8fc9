"""Running a plan's jobs: in this process (`local`) or as Ray tasks (`ray`), resumable, with retries.

The sweep directory holds sweep.json: every job's state (finished, failed with its error, skipped because what it
needs failed), rewritten atomically after each job. A rerun skips what is finished and resumes what was
interrupted (each job's own directory resumes as any run does). A job that fails is retried `plan.retries` times;
the rest of the plan still runs, and the sweep exits non-zero listing what failed.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness import progress
from harness.errors import HarnessError
from harness.fileio import write_json_atomic
from harness.sweep.jobs import Job, is_finished, run_job
from harness.sweep.plan import Plan, Resources

STATE_FILE = "sweep.json"
ENVIRONMENT = ("HARNESS_DATA_DIR", "HARNESS_CACHE_DIR")  # what a Ray worker needs to find data and models


@dataclass
class Outcome:
    job: Job
    status: str  # finished | reused | failed | skipped
    attempts: int = 0
    wall_s: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.job.kind, "out": self.job.out, "status": self.status, "attempts": self.attempts,
                "wall_s": round(self.wall_s, 1), "error": self.error, "depends": self.job.depends}


@dataclass
class SweepState:
    root: Path
    plan: Plan
    launcher: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def record(self, outcome: Outcome) -> None:
        self.outcomes[outcome.job.id] = outcome
        write_json_atomic(self.root / STATE_FILE, {
            "plan": self.plan.source, "launcher": self.launcher,
            "jobs": {job_id: o.to_dict() for job_id, o in self.outcomes.items()}})

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.status in ("failed", "skipped")]


def one_line_error(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:1000]


def run_local(jobs: list[Job], state: SweepState, include: list[str]) -> None:
    backends: dict = {}
    total = len(jobs)
    for number, job in enumerate(jobs, start=1):
        if not dependencies_met(job, state):
            continue
        if is_finished(job):
            state.record(Outcome(job, "reused"))
            progress.say(f"[{number}/{total}] {job.id}: finished earlier, skipped")
            continue
        outcome = Outcome(job, "failed")
        for attempt in range(1, state.plan.retries + 2):
            progress.say(f"[{number}/{total}] {job.id}" + (f" (attempt {attempt})" if attempt > 1 else ""))
            started = time.perf_counter()
            outcome.attempts = attempt
            try:
                run_job(job, backends)
            except Exception as exc:  # a HarnessError (bad data, a full disk) or a fault: recorded, then retried
                outcome.error = one_line_error(exc)
                outcome.wall_s += time.perf_counter() - started
                progress.say(f"[{number}/{total}] {job.id} failed: {outcome.error}")
                continue
            outcome.wall_s += time.perf_counter() - started
            outcome.status, outcome.error = "finished", None
            break
        state.record(outcome)


def dependencies_met(job: Job, state: SweepState) -> bool:
    """False (and the job recorded as skipped) when a job it needs failed."""
    failed = [d for d in job.depends if d in state.outcomes and state.outcomes[d].status in ("failed", "skipped")]
    if failed:
        state.record(Outcome(job, "skipped", error=f"needs {failed[0]}, which did not finish"))
        return False
    return True


def ray_job(job_data: dict[str, Any], include: list[str], environment: dict[str, str]) -> dict[str, Any]:
    """What a Ray worker runs: one job, its failure returned as data (the driver decides about retries)."""
    from harness import registry
    from harness.progress import set_quiet

    os.environ.update(environment)
    set_quiet(True)
    started = time.perf_counter()
    try:
        for path in include:
            registry.include(path)
        run_job(Job(**job_data))
    except BaseException as exc:  # noqa: BLE001 -- reported to the driver, which retries or records it
        return {"ok": False, "error": one_line_error(exc), "trace": traceback.format_exc()[-4000:],
                "wall_s": time.perf_counter() - started}
    return {"ok": True, "wall_s": time.perf_counter() - started}


def ray_available(address: str | None) -> None:
    """Ray is installed and, when an address is given, the cluster there answers (one line otherwise)."""
    if importlib.util.find_spec("ray") is None:
        raise HarnessError("--launcher ray needs Ray: pip install -e '.[ray]'")
    if address:
        check_reachable(address)


def connect_ray(address: str | None) -> Any:
    ray_available(address)
    import ray

    environment = {name: os.environ[name] for name in ENVIRONMENT if name in os.environ}
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     runtime_env={"env_vars": environment})
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all mean no cluster to use
        raise HarnessError(f"cannot reach a Ray cluster at {address or 'a new local instance'}: "
                           f"{one_line_error(exc)}") from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A cluster address (HOST:PORT, or ray://HOST:PORT for Ray Client) must accept a connection: Ray itself
    retries an unreachable address for minutes."""
    if address == "auto":
        return  # Ray finds the cluster of this machine, and says so at once when there is none
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise HarnessError(f"--address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise HarnessError(f"the Ray cluster at {address} does not answer ({exc.strerror or exc}); start it with "
                           "`ray start --head` or check the address") from None


def ray_options(resources: Resources) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": resources.cpus, "num_gpus": resources.gpus, "max_retries": 0}
    if resources.memory_gb:
        options["memory"] = int(resources.memory_gb * 1024 ** 3)
    return options


def run_ray(jobs: list[Job], state: SweepState, include: list[str], address: str | None) -> None:
    ray = connect_ray(address)
    try:
        remote = ray.remote(ray_job).options(**ray_options(state.plan.resources))
        environment = {name: os.environ[name] for name in ENVIRONMENT if name in os.environ}
        include = [str(Path(p).resolve()) for p in include]
        pending = list(jobs)
        running: dict[Any, tuple[Job, int]] = {}

        def submit_ready() -> None:
            for job in list(pending):
                if any(d not in state.outcomes or state.outcomes[d].status not in ("finished", "reused")
                       for d in job.depends):
                    if not dependencies_met(job, state):
                        pending.remove(job)
                    continue
                pending.remove(job)
                if is_finished(job):
                    state.record(Outcome(job, "reused"))
                    progress.say(f"{job.id}: finished earlier, skipped")
                    continue
                running[remote.remote(job.to_dict(), include, environment)] = (job, 1)
                progress.say(f"submitted {job.id}")

        attempts: dict[str, Outcome] = {}
        submit_ready()
        while running or pending:
            if not running:
                submit_ready()
                if not running:
                    break
            done, _ = ray.wait(list(running), num_returns=1)
            job, attempt = running.pop(done[0])
            result = ray.get(done[0])
            outcome = attempts.setdefault(job.id, Outcome(job, "failed"))
            outcome.attempts, outcome.wall_s = attempt, outcome.wall_s + result["wall_s"]
            if result["ok"]:
                outcome.status, outcome.error = "finished", None
                progress.say(f"{job.id}: finished")
            elif attempt <= state.plan.retries:
                progress.say(f"{job.id} failed (attempt {attempt}): {result['error']}; retrying")
                running[remote.remote(job.to_dict(), include, environment)] = (job, attempt + 1)
                continue
            else:
                outcome.error = result["error"]
                progress.say(f"{job.id} failed: {result['error']}")
            state.record(outcome)
            submit_ready()
    finally:
        ray.shutdown()  # a local instance stops; a cluster is only disconnected from


LAUNCHERS: dict[str, Callable[..., None]] = {"local": lambda jobs, state, include, address: run_local(
    jobs, state, include), "ray": run_ray}
