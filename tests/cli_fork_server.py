"""Runs many `harness` command lines, each in its own process, without paying Python's imports for each.

    python tests/cli_fork_server.py JOBS.json RESULTS.json WORKERS

JOBS.json is a list of {"argv", "cwd", "env", "stdout", "stderr", "timeout_s"}. This process imports the
harness and its heavy dependencies once (no model is loaded and no torch op runs, so forking is safe), then
forks one child per job, WORKERS at a time. A child is what `python -m harness.cli ARGV` would be: it changes
to `cwd`, takes `env` as its environment, writes its stdout and stderr to the given files, runs
`harness.cli.main`, prints the traceback of anything that escapes it (as the interpreter would) and exits with
main's status, after the exit handlers a normal exit runs. A child still running after `timeout_s` is killed.
RESULTS.json gets each job's exit status (negative: killed by that signal), in the jobs' order.
"""
from __future__ import annotations

import atexit
import importlib
import json
import os
import signal
import sys
import traceback


PRELOADED = ("numpy", "pandas", "torch", "transformers", "peft", "sentence_transformers", "harness.cli")


def preload() -> None:
    for module in PRELOADED:
        importlib.import_module(module)
    from harness import registry

    for kind in ("aligners", "benchmarks", "judges", "backends"):
        registry.names(kind)


def child(job: dict) -> int:
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    signal.alarm(int(job["timeout_s"]))  # SIGALRM's default action ends the child
    from harness.cli import main

    sys.argv = ["harness", *job["argv"]]
    try:
        code = main(job["argv"])
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):  # sys.exit("message"), as the interpreter treats it
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code or 0


def run_all(jobs: list[dict], workers: int) -> list[int]:
    codes: list[int | None] = [None] * len(jobs)
    running: dict[int, int] = {}  # pid -> job index
    pending = list(range(len(jobs)))
    while pending or running:
        while pending and len(running) < workers:
            index = pending.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    status = child(jobs[index])
                except BaseException:
                    status = 1
                os._exit(status)
            running[pid] = index
        pid, status = os.wait()
        index = running.pop(pid)
        codes[index] = os.waitstatus_to_exitcode(status)
    return [int(c) for c in codes]


def main() -> int:
    jobs_path, results_path, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    jobs = json.loads(open(jobs_path, encoding="utf-8").read())
    preload()
    codes = run_all(jobs, workers)
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(codes, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
