"""The `harness` command line."""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

from harness import progress, registry
from harness.config import DEFAULT_MODEL, PRESETS, RunConfig, aligner_options, benchmark_options
from harness.cli_study import (BACKEND_OPTION_HELP, add_align_parser, add_sweep_parser, command_align, command_eval,
                               command_sweep)
from harness.errors import HarnessError
from harness.options import describe, names as option_names


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as every other error of the harness: one line, exit status 2 (argparse prints
    the whole usage block first). Subcommand parsers inherit the class."""

    def error(self, message: str) -> "NoReturn":
        command = self.prog.removeprefix("harness").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"harness: error: {where}{message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="harness", description="Benchmark and evaluation harness for "
                           "LLM self-alignment from few samples.")
    parser.add_argument("--include", action="append", default=[], metavar="FILE.py",
                        help="import a plugin file that registers aligners/benchmarks/judges/backends")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when a plugin's code fails (default: one line naming it)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="align a model with one method and evaluate it on one benchmark")
    run.add_argument("--aligner", required=True, help="see `harness list aligners`")
    run.add_argument("--benchmark", required=True, help="see `harness list benchmarks`")
    run.add_argument("--model", default=DEFAULT_MODEL, help="embedded model name, Hugging Face id or local path")
    run.add_argument("--backend", default="hf", help="see `harness list backends`")
    run.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE", help=BACKEND_OPTION_HELP)
    run.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    run.add_argument("--limit", type=int, help="at most N evaluation items of each kind")
    run.add_argument("--seed", type=int, default=0, help="drives every random number generator")
    run.add_argument("--seeds", type=int, dest="n_seeds", help="sample N seed examples with the run seed")
    run.add_argument("--seeds-file", help="JSONL of question/answer/domain seed examples")
    run.add_argument("--judge", help="see `harness list judges` (default: the benchmark's)")
    add_judge_options(run)
    run.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="an aligner option, typed and checked before any work, e.g. --option iterations=3, "
                     "--option beta=0.2 (spin); see `harness list options`")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="the same as --option (kept for earlier command lines)")
    run.add_argument("--eval-option", action="append", default=[], metavar="KEY=VALUE",
                     help="a benchmark option (evaluation sizes, answer length), e.g. --eval-option questions=50; "
                     "see `harness list options`")
    add_budget_flag(run)
    run.add_argument("--eval-batch-size", type=int, default=32, metavar="N",
                     help="prompts per generation / scoring batch of the evaluation (default 32)")
    run.add_argument("--out", type=Path, help="run directory (default: runs/<benchmark>/<model>/...)")
    run.add_argument("--artifacts", type=Path, default=Path("runs/artifacts"), metavar="DIR",
                     help="use a finished `harness align` artifact found here with this run's model, aligner, options, "
                     "seeds and seed (and decontaminated against its items) instead of aligning again "
                     "(default runs/artifacts)")
    run.add_argument("--quiet", action="store_true")
    add_align_parser(commands, add_judge_options, add_budget_flag)
    add_sweep_parser(commands)

    listing = commands.add_parser("list", help="list what is registered (plugins included)")
    listing.add_argument("kind", choices=["aligners", "benchmarks", "judges", "backends", "models", "presets",
                                         "options", "plans"])

    demo = commands.add_parser("demo", help="every built-in aligner on `safety`, embedded base model, one table")
    demo.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    demo.add_argument("--model", default=DEFAULT_MODEL)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--quiet", action="store_true")

    report = commands.add_parser("report", help="leaderboard (CSV, Markdown, JSON, self-contained HTML, PNG "
                                 "plots) from run directories")
    report.add_argument("runs", nargs="+", type=Path, metavar="RUNS", help="run directories or folders of runs")
    report.add_argument("--out", type=Path, required=True, help="output directory")
    report.add_argument("--title", default="Leaderboard")
    report.add_argument("--pin-baselines", action="store_true",
                        help="also write each comparable run as a baseline file (DIR/baselines/) for `harness compare`")

    compare = commands.add_parser("compare", help="paired statistics of a candidate run against a baseline run")
    compare.add_argument("baseline", type=Path, nargs="?", help="run directory or pinned baseline file")
    compare.add_argument("candidate", type=Path, nargs="?", help="run directory or pinned baseline file")
    compare.add_argument("--baseline", type=Path, nargs="+", dest="baselines", metavar="RUN",
                         help="several baseline runs that differ only in their training seed (instead of BASELINE)")
    compare.add_argument("--candidate", type=Path, nargs="+", dest="candidates", metavar="RUN",
                         help="the candidate's runs, one per training seed of the baseline's; items are paired "
                         "within each seed and the pairs pooled")
    compare.add_argument("--metrics", help="comma-separated metrics to compare and gate on (default: all; "
                         "the gate then uses the top-level ones)")
    compare.add_argument("--alpha", type=float, default=0.05,
                         help="significance level of each verdict, and the family-wise error rate of the gate "
                         "(default 0.05)")
    compare.add_argument("--fail-on-regression", action="store_true",
                         help="exit 1 when a gated metric is worse by more than --threshold with a Holm-adjusted "
                         "p-value below --alpha (Holm over the gated metrics controls the family-wise error rate)")
    compare.add_argument("--threshold", type=float, default=0.0,
                         help="tolerated worsening in the metric's units, e.g. 0.05 = 5 points of a rate")
    compare.add_argument("--json", type=Path, metavar="FILE", help="also write the comparison as JSON")

    upgrade = commands.add_parser("upgrade", help="convert run directories and pinned baselines written by an "
                                  "earlier version to the current format (in place; values are kept)")
    upgrade.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="run directories or baseline files")

    judge = commands.add_parser("judge", help="judge utilities")
    judge_commands = judge.add_subparsers(dest="judge_command", required=True, metavar="ACTION")
    validate = judge_commands.add_parser("validate", help="agreement of a judge with human labels")
    validate.add_argument("--judge", default="embedded-safety")
    add_judge_options(validate)
    validate.add_argument("--against", default="xstest",
                          help="xstest, refusal-direction-llamaguard (safety judges); llmbar, llmbar-natural, "
                          "llmbar-adversarial, mtbench-human, faireval, llmeval2 (pairwise judges); "
                          "truthfulqa-truth, truthfulqa-info (truth judges)")
    validate.add_argument("--all", action="store_true", dest="all_judges",
                          help="every built-in judge against every human-labelled set of its roles, as one page "
                          "(--out FILE to write it, e.g. docs/judge-validation.md)")
    validate.add_argument("--out", type=Path, metavar="FILE", help="with --all: write the page here")
    validate.add_argument("--data-dir", type=Path, help="data mirror (default: $HARNESS_DATA_DIR)")
    validate.add_argument("--limit", type=int, help="judge a seeded subset of N labelled items")
    validate.add_argument("--json", action="store_true", help="print the full result as JSON")
    validate.add_argument("--quiet", action="store_true")
    validate.add_argument("--record", action="store_true",
                          help="write the judge's validation record (harness/judges/validation/JUDGE.json; for a judge "
                          "built on first use, beside its weights in the cache): a "
                          "safety judge's per-head sensitivity/specificity (--against xstest), which corrected "
                          "rates rest on, or a pairwise judge's agreement (--against llmbar-natural), which decides "
                          "whether its win rates are headline numbers")
    return parser


def add_budget_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", type=int, metavar="TOKENS",
                        help="cap the tokens trained on, over all training stages, to compare aligners at equal compute")


def add_judge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge-model", help="openai judge: the model name the endpoint serves")
    parser.add_argument("--judge-base-url", help="openai judge: API base, e.g. http://127.0.0.1:8000/v1 "
                        "(default https://api.openai.com/v1)")
    parser.add_argument("--judge-api-key-env", metavar="VAR",
                        help="openai judge: environment variable holding the API key (default OPENAI_API_KEY)")
    parser.add_argument("--judge-concurrency", type=int, metavar="N",
                        help="openai judge: requests in flight (default 4)")
    parser.add_argument("--judge-prompt", action="append", default=[], metavar="ROLE=FILE",
                        help="openai judge: prompt config (built-in name or .yaml) for a role: pairwise, truth, "
                        "info or safety; see docs/judges.md")
    parser.add_argument("--judge-option", action="append", default=[], metavar="KEY=VALUE",
                        help="any other option of the judge, typed and checked, e.g. --judge-option threshold=0.6; "
                        "see `harness list options`")


def checked_backend_options(backend: str, pairs: list[str]) -> dict[str, object]:
    """--backend-option KEY=VALUE pairs as the backend's typed options; a backend whose package is missing, an
    unknown key or a bad value is refused in one line before any work."""
    from harness.models.loading import backend_option_values

    return backend_option_values(backend, option_values(pairs, "--backend-option"))


def option_values(pairs: list[str], flag: str = "--option") -> dict[str, str]:
    """KEY=VALUE pairs as strings; `harness.options` parses each against the aligner's option types."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            example = {"--backend-option": "base_url=http://127.0.0.1:8000/v1", "--eval-option": "questions=50",
                       "--judge-option": "threshold=0.6"}.get(flag, "iterations=3")
            raise HarnessError(f"{flag} {pair!r}: expected KEY=VALUE, e.g. {flag} {example}")
        values[key.strip()] = raw
    return values


def judge_options(args: argparse.Namespace) -> dict[str, object]:
    """The --judge-* options that were given, as keyword arguments of the judge factory.

    --judge-api-key-env must name an environment variable: a value that looks like a key is refused before
    anything is written, without echoing it, so a pasted key never reaches config.json or the manifest."""
    prompts: dict[str, str] = {}
    for pair in args.judge_prompt:
        role, sep, ref = pair.partition("=")
        if not sep or not role.strip() or not ref.strip():
            raise HarnessError(f"--judge-prompt {pair!r}: expected ROLE=FILE, e.g. safety=my_prompt.yaml")
        path = Path(ref.strip())
        prompts[role.strip()] = str(path.resolve()) if path.suffix in (".yaml", ".yml") else ref.strip()
    named = {"model": args.judge_model, "base_url": args.judge_base_url, "api_key_env": args.judge_api_key_env,
             "concurrency": args.judge_concurrency, "prompts": prompts or None}
    given: dict[str, object] = dict(option_values(args.judge_option, "--judge-option"))
    given |= {key: value for key, value in named.items() if value is not None}
    key_env = given.get("api_key_env")
    # An ASCII identifier is exactly [A-Za-z_][A-Za-z0-9_]*, the shape of an environment variable name.
    if isinstance(key_env, str) and (not (key_env.isascii() and key_env.isidentifier())
                                     or key_env.startswith("sk-") or len(key_env) > 40):
        raise HarnessError("--judge-api-key-env expects the NAME of an environment variable holding the key "
                           "(e.g. OPENAI_API_KEY), not the key itself; the value was not saved")
    return given


def checked_judge_options(judge: str | None, args: argparse.Namespace) -> dict[str, object]:
    """The --judge-* options as the judge's typed values (refused in one line before any work)."""
    from harness.judges.build import judge_option_values

    given = judge_options(args)
    if judge is None:
        if given:
            raise HarnessError("the --judge-* options need a judge; this benchmark uses none")
        return {}
    return judge_option_values(judge, given)


def budget_cap(tokens: int | None, aligner: str) -> dict[str, str]:
    """--budget N as the aligner's max_train_tokens option (refused for aligners that do not train)."""
    if tokens is None:
        return {}
    if tokens <= 0:
        raise HarnessError(f"--budget {tokens}: expected a positive number of training tokens")
    if "max_train_tokens" not in option_names(registry.get("aligners", aligner).options_class):
        raise HarnessError(f"--budget: aligner {aligner} does not train; the cap applies to aligners that do")
    return {"max_train_tokens": str(tokens)}


def check_run_arguments(args: argparse.Namespace) -> None:
    """Values argparse types but does not range-check: one clear line before any work."""
    for flag, value, low in (("--seed", args.seed, 0), ("--limit", args.limit, 1), ("--seeds", args.n_seeds, 1),
                             ("--eval-batch-size", args.eval_batch_size, 1)):
        if value is not None and value < low:
            raise HarnessError(f"{flag} {value}: expected a whole number of at least {low}")


def command_run(args: argparse.Namespace) -> int:
    from harness.runner import execute
    from reports.table import print_table

    check_run_arguments(args)
    benchmark = registry.get("benchmarks", args.benchmark)
    registry.get("aligners", args.aligner)
    backend_options = checked_backend_options(args.backend, args.backend_option)
    if args.judge and not benchmark.judge_roles:
        raise HarnessError(f"benchmark {args.benchmark} uses no judge; drop --judge")
    judge = args.judge or benchmark.default_judge()
    eval_options = option_values(args.eval_option, "--eval-option")
    benchmark_options(args.benchmark, args.preset, eval_options)  # checked before the aligner's options
    if args.set:  # checked on its own first, so an error names the flag the value came with
        aligner_options(args.aligner, args.preset, option_values(args.set, "--set"), flag="--set")
    options = option_values(args.set, "--set") | option_values(args.option) | budget_cap(args.budget, args.aligner)
    config = RunConfig.from_preset(
        args.aligner, args.benchmark, args.preset, model=args.model, backend=args.backend,
        backend_options=backend_options, seed=args.seed, n_seeds=args.n_seeds,
        seeds_file=str(Path(args.seeds_file).resolve()) if args.seeds_file else None,
        limit=args.limit, judge=judge, judge_options=checked_judge_options(judge, args),
        options=options, eval_options=eval_options, eval_batch_size=args.eval_batch_size,
    )
    document = execute(config, args.out, reuse_from=args.artifacts)
    print_table([document])
    print(f"results: {document['run']}/metrics.json")
    return 0


def command_list(args: argparse.Namespace) -> int:
    if args.kind == "models":
        from harness.models.embedded import EMBEDDED_MODELS

        for name, model in EMBEDDED_MODELS.items():
            print(f"{name:28s} {model.description}")
        print("(any Hugging Face model id or local directory is accepted as well)")
    elif args.kind == "plans":
        from harness.sweep.plan import builtin_plans, load_plan

        for name, path in builtin_plans().items():
            print(f"{name:22s} {load_plan(str(path)).title}")
    elif args.kind == "presets":
        for name, preset in PRESETS.items():
            print(f"{name:10s} {preset.description}")
    elif args.kind == "options":
        for kind, flag in (("aligners", "--option"), ("benchmarks", "--eval-option"), ("judges", "--judge-option"),
                           ("backends", "--backend-option")):
            print(f"{kind} ({flag} KEY=VALUE):")
            for name in registry.names(kind):
                options_class = getattr(registry.get(kind, name), "options_class", None)
                rows = describe(options_class) if options_class is not None else []
                print(f"  {name}:" + ("" if rows else " (no options)"))
                for row in rows:
                    print(f"    {row['name']:22s} {row['type']:12s} default {row['default']!s:8s} {row['help']}")
    else:
        for name in registry.names(args.kind):
            obj = registry.get(args.kind, name)
            print(f"{name:20s} {getattr(obj, 'description', '')}")
    return 0


def command_demo(args: argparse.Namespace) -> int:
    from harness.demo import run_demo

    if args.seed < 0:
        raise HarnessError(f"--seed {args.seed}: expected a whole number of at least 0")
    run_demo(args.model, args.preset, args.seed, args.out)
    return 0


def command_report(args: argparse.Namespace) -> int:
    from reports.report import write_report
    from reports.render import to_markdown

    report = write_report(args.runs, args.out, args.title, args.pin_baselines)
    print(to_markdown(report.board, args.title))
    print(f"wrote {', '.join(str(p) for p in report.files)} and {len(report.plots)} plot(s) in {args.out / 'plots'}")
    if report.baselines:
        print(f"pinned {len(report.baselines)} baseline(s) in {args.out / 'baselines'}")
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from harness.store import write_json_atomic
    from reports.compare import compare_runs, format_comparison

    if not 0 < args.alpha < 1:
        raise HarnessError(f"--alpha {args.alpha}: expected a level between 0 and 1, e.g. 0.05")
    if not math.isfinite(args.threshold) or args.threshold < 0:
        raise HarnessError(f"--threshold {args.threshold}: expected a non-negative worsening, e.g. 0.05")
    if args.json is not None and args.json.is_dir():
        raise HarnessError(f"--json {args.json} is a directory; pass a file name, e.g. comparison.json")
    names = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    comparison = compare_runs(compared_side(args.baseline, args.baselines, "baseline"),
                              compared_side(args.candidate, args.candidates, "candidate"), args.alpha, names)
    print(format_comparison(comparison))
    if args.json:
        try:
            write_json_atomic(args.json, comparison.to_dict())
        except OSError as exc:
            raise HarnessError(f"--json {args.json}: cannot write it ({exc.strerror or exc})") from None
    regressions = comparison.regressions(args.threshold)
    if args.fail_on_regression and regressions:
        listed = ", ".join(f"{m.metric} ({m.difference:+.3g}, p={m.p_value:.3g}, Holm p={m.p_holm:.3g})"
                           for m in regressions)
        print(f"regression: significantly worse (Holm-adjusted p < {args.alpha}) by more than {args.threshold}: "
              f"{listed}", file=sys.stderr)
        return 1
    return 0


def compared_side(single: Path | None, several: list[Path] | None, side: str):
    """One side of `harness compare`: a run, or several runs of one method that differ only in training seed."""
    from reports.collect import load_run
    from reports.seeds import merge_seed_runs

    if (single is None) == (several is None):
        raise HarnessError(f"give the {side} once: as the {side.upper()} argument or as --{side} RUN...")
    return merge_seed_runs([load_run(path) for path in several], side) if several else load_run(single)


def command_judge(args: argparse.Namespace) -> int:
    from harness.judges.validate import format_report, validate

    if args.limit is not None and args.limit < 1:
        raise HarnessError(f"--limit {args.limit}: expected a whole number of at least 1")
    if args.record and (args.against not in ("xstest", "llmbar-natural") or args.limit is not None):
        raise HarnessError("--record writes a judge's validation record from a whole human-labelled set: use "
                           "--against xstest (safety judges) or llmbar-natural (pairwise judges) without --limit")
    if args.out is not None and not args.all_judges:
        raise HarnessError("--out is for --all (the judges page); a single validation prints its result")
    if args.all_judges and args.record:
        raise HarnessError("--record writes one judge's record: drop --all, or drop --record")
    if args.data_dir:  # TruthfulQA sets resolve their data as benchmarks do, through HARNESS_DATA_DIR
        os.environ["HARNESS_DATA_DIR"] = str(args.data_dir)
    if args.all_judges:
        return validate_every_judge(args)
    result = validate(args.judge, args.against, args.data_dir, limit=args.limit, options=judge_options(args))
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    if args.record:
        from harness.judges.bar import write_pairwise_record
        from harness.judges.validate import head_validations
        from harness.prevalence import built_validation_path, write_validation

        # A judge built on first use keeps its record in the results cache, as its weights, not in the package.
        built = getattr(registry.get("judges", args.judge), "built_on_first_use", False)
        written = (write_pairwise_record(result) if "overall" in result
                   else write_validation(args.judge, head_validations(result),
                                         built_validation_path(args.judge, str(result["judge_version"]))
                                         if built else None))
        print(f"wrote {written}")
    return 0


def validate_every_judge(args: argparse.Namespace) -> int:
    from harness.fileio import write_text_atomic
    from harness.judges.validate_all import anchors, builtin_judges, judges_page, validate_all

    if args.out is not None and args.out.is_dir():
        raise HarnessError(f"--out {args.out} is a directory; pass a file name, e.g. docs/judge-validation.md")
    rows, skipped = validate_all(builtin_judges(), args.data_dir, args.limit)
    anchor_rows, anchors_skipped = anchors(args.data_dir)
    page = judges_page(rows, skipped + anchors_skipped, args.limit, anchor_rows)
    print(page)
    if args.out is not None:
        try:
            write_text_atomic(args.out, page)
        except OSError as exc:
            raise HarnessError(f"--out {args.out}: cannot write it ({exc.strerror or exc})") from None
        print(f"wrote {args.out}")
    return 0


def command_upgrade(args: argparse.Namespace) -> int:
    from reports.upgrade import upgrade

    for path in args.paths:
        print(upgrade(path))
    return 0


COMMANDS = {"upgrade": command_upgrade, "run": command_run, "align": command_align, "eval": command_eval, "sweep": command_sweep,
            "list": command_list, "demo": command_demo, "judge": command_judge,
            "report": command_report, "compare": command_compare}


def interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a terminated run records its partial stages as Ctrl-C does, then exits


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    progress.set_quiet(getattr(args, "quiet", False))
    try:
        for path in args.include:
            registry.include(path)
        return COMMANDS[args.command](args)
    except HarnessError as exc:
        message = " ".join(str(exc).split())  # one line, whatever text (a plugin's, a server's) it quotes
        print(f"harness: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        where = registry.plugin_frame(exc.__traceback__)
        if where is None or args.debug:  # a fault of the harness itself, or asked for: the whole traceback
            raise
        message = " ".join(str(exc).split())  # one line, whatever the plugin put in its message
        print(f"harness: error: plugin code failed at {where}: {type(exc).__name__}: {message} (rerun with "
              "--debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
