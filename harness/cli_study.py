"""The `harness align` and `harness eval` commands: an alignment as a reusable artifact, and its evaluations."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness import registry
from harness.config import DEFAULT_MODEL, PRESETS, RunConfig, aligner_options, benchmark_options
from harness.errors import HarnessError

BACKEND_OPTION_HELP = ("a backend option, typed and checked before any work, e.g. --backend-option "
                       "base_url=http://127.0.0.1:8000/v1; see `harness list options`")


def add_align_parser(commands: argparse._SubParsersAction, add_judge_options, budget_flag) -> None:
    align = commands.add_parser("align", help="align a model with one method and write an aligned-model artifact "
                                "(PEFT adapter, checkpoints, seeds, manifest, decontamination set)")
    align.add_argument("--aligner", required=True, help="see `harness list aligners`")
    align.add_argument("--model", default=DEFAULT_MODEL, help="embedded model name, Hugging Face id or local path")
    align.add_argument("--backend", default="hf", help="see `harness list backends`")
    align.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                       help=BACKEND_OPTION_HELP)
    align.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    align.add_argument("--seed", type=int, default=0, help="drives every random number generator")
    align.add_argument("--seeds", type=int, dest="n_seeds", help="sample N seed examples with the seed")
    align.add_argument("--seed-set", default="safety", help="built-in seed set: safety, truthfulqa or alpacaeval "
                       "(default safety)")
    align.add_argument("--seeds-file", help="JSONL of question/answer/domain seed examples (instead of --seed-set)")
    align.add_argument("--seed-domain", metavar="DOMAIN",
                       help="align on one target domain's seeds (with the generic benign/general ones), e.g. "
                       "cybercrime: domain generalization")
    align.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="an aligner option, typed and checked before any work; see `harness list options`")
    budget_flag(align)
    align.add_argument("--decontaminate", metavar="BENCHMARK[,BENCHMARK]",
                       help="check against these benchmarks' evaluation items (default: every registered benchmark "
                       "whose data is available)")
    align.add_argument("--decontaminate-scope", default="preset", choices=["preset", "full"],
                       help="preset: the items an evaluation at this preset, seed and --limit uses (default); "
                       "full: every item each benchmark has (slower: MMLU alone is 14,042 questions)")
    align.add_argument("--limit", type=int, help="with scope preset: the items of evaluations run with --limit N")
    align.add_argument("--out", type=Path, help="artifact directory (default: runs/artifacts/<model>/...)")
    align.add_argument("--quiet", action="store_true")

    evaluate = commands.add_parser("eval", help="evaluate an aligned-model artifact (or a model as it is) on one "
                                   "benchmark")
    evaluate.add_argument("--model", required=True, metavar="ARTIFACT_OR_MODEL",
                          help="an artifact directory written by `harness align`, or a model name (evaluated "
                          "unaligned)")
    evaluate.add_argument("--benchmark", required=True, help="see `harness list benchmarks`")
    evaluate.add_argument("--preset", choices=sorted(PRESETS), help="evaluation sizes (default: the artifact's)")
    evaluate.add_argument("--seed", type=int, help="item sampling and judging seed (default: the artifact's)")
    evaluate.add_argument("--limit", type=int, help="at most N evaluation items of each kind")
    evaluate.add_argument("--backend", help="see `harness list backends` (default: hf, or the artifact's)")
    evaluate.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                          help=BACKEND_OPTION_HELP)
    evaluate.add_argument("--judge", help="see `harness list judges` (default: the benchmark's)")
    add_judge_options(evaluate)
    evaluate.add_argument("--eval-option", action="append", default=[], metavar="KEY=VALUE",
                          help="a benchmark option, e.g. --eval-option questions=50; see `harness list options`")
    evaluate.add_argument("--eval-batch-size", type=int, default=32, metavar="N")
    evaluate.add_argument("--out", type=Path, help="run directory (default: runs/<benchmark>/<model>/...)")
    evaluate.add_argument("--quiet", action="store_true")


def add_sweep_parser(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser("sweep", help="run a study plan: models x aligners x benchmarks x training seeds, "
                                "each alignment once, then the report")
    sweep.add_argument("plan", help="a plan file (YAML) or a built-in plan's name (leaderboard, "
                       "domain-generalization, tiny-study)")
    sweep.add_argument("--out", type=Path, help="study directory (default runs/sweeps/<plan>)")
    sweep.add_argument("--launcher", default="local", choices=["local", "ray"],
                       help="local: every job in this process, one after another (default); ray: each job a Ray task "
                       "with the plan's resources")
    sweep.add_argument("--address", help="with --launcher ray: the cluster to submit to, e.g. 10.0.0.5:6379 "
                       "(default: start a local Ray instance)")
    sweep.add_argument("--quiet", action="store_true")


def command_sweep(args: argparse.Namespace) -> int:
    import sys

    from harness.sweep.study import run_sweep

    state = run_sweep(args.plan, args.out, args.launcher, args.address, args.include)
    counts: dict[str, int] = {}
    for outcome in state.outcomes.values():
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    print(f"sweep {state.root}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    if state.failed:
        for outcome in state.failed:
            print(f"  {outcome.status}: {outcome.job.id}: {outcome.error}", file=sys.stderr)
        print(f"harness: error: {len(state.failed)} job(s) did not finish (see {state.root}/sweep.json); rerun the "
              "same command to retry them", file=sys.stderr)
        return 1
    return 0


def check_whole_numbers(*flags: tuple[str, int | None, int]) -> None:
    for flag, value, low in flags:
        if value is not None and value < low:
            raise HarnessError(f"{flag} {value}: expected a whole number of at least {low}")


def command_align(args: argparse.Namespace) -> int:
    from harness.align_run import AlignConfig, execute_align
    from harness.cli import budget_cap, checked_backend_options, option_values

    check_whole_numbers(("--seed", args.seed, 0), ("--seeds", args.n_seeds, 1), ("--limit", args.limit, 1))
    registry.get("aligners", args.aligner)
    backend_options = checked_backend_options(args.backend, args.backend_option)
    if args.seeds_file and args.seed_set != "safety":
        raise HarnessError("--seeds-file and --seed-set both name the seeds; pass one")
    if args.limit is not None and args.decontaminate_scope == "full":
        raise HarnessError("--limit applies to --decontaminate-scope preset; scope full takes every item")
    benchmarks = None
    if args.decontaminate is not None:
        benchmarks = [name.strip() for name in args.decontaminate.split(",") if name.strip()]
        if not benchmarks:
            raise HarnessError("--decontaminate: expected benchmark names, e.g. --decontaminate safety,truthfulqa")
        for name in benchmarks:
            registry.get("benchmarks", name)
    options = option_values(args.option) | budget_cap(args.budget, args.aligner)
    config = AlignConfig.from_preset(
        args.aligner, args.preset, options=options, model=args.model, backend=args.backend,
        backend_options=backend_options, seed=args.seed,
        n_seeds=args.n_seeds, seed_set=args.seed_set, seed_domain=args.seed_domain,
        seeds_file=str(Path(args.seeds_file).resolve()) if args.seeds_file else None, decontaminate=benchmarks,
        decontamination_scope=args.decontaminate_scope, limit=args.limit)
    artifact = execute_align(config, args.out)
    cost = artifact.align_cost()
    print(f"artifact: {artifact.root} (key {artifact.key[:12]}, {cost['tokens_trained']} tokens trained, "
          f"{cost['wall_s']} s)")
    return 0


def command_eval(args: argparse.Namespace) -> int:
    from harness.artifact import is_artifact, open_artifact
    from harness.cli import checked_backend_options, checked_judge_options, option_values
    from harness.runner import execute
    from reports.table import print_table

    check_whole_numbers(("--seed", args.seed, 0), ("--limit", args.limit, 1),
                        ("--eval-batch-size", args.eval_batch_size, 1))
    benchmark = registry.get("benchmarks", args.benchmark)
    if args.judge and not benchmark.judge_roles:
        raise HarnessError(f"benchmark {args.benchmark} uses no judge; drop --judge")
    judge = args.judge or benchmark.default_judge()
    eval_options = option_values(args.eval_option, "--eval-option")
    path = Path(args.model)
    artifact = open_artifact(path) if is_artifact(path) or (path / "manifest.json").is_file() else None
    preset = args.preset or (artifact["preset"] if artifact else "demo")
    benchmark_options(args.benchmark, preset, eval_options)
    common = dict(preset=preset, limit=args.limit, judge=judge, judge_options=checked_judge_options(judge, args),
                  eval_options=eval_options, eval_batch_size=args.eval_batch_size)
    backend = args.backend or (artifact["backend"] if artifact else "hf")
    backend_options = checked_backend_options(backend, args.backend_option)
    if artifact is None:
        config = RunConfig.from_preset("none", args.benchmark, model=args.model, backend=backend,
                                       backend_options=backend_options, seed=args.seed or 0, **common)
    else:
        aligner_options(artifact["aligner"], preset, None)  # the artifact's aligner is registered
        config = artifact.run_config(args.benchmark, seed=args.seed, backend=backend,
                                     backend_options=backend_options, **common)
    document = execute(config, args.out, artifact=artifact.root if artifact else None)
    print_table([document])
    print(f"results: {document['run']}/metrics.json")
    return 0
