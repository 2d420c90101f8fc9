"""TruthfulQA MC1/MC2: our scoring vs lm-evaluation-harness on the same model and the same questions.

lm-eval runs as a library. Its own `truthfulqa_mc1` / `truthfulqa_mc2` task files are included unchanged
(same QA primer, same target sets, same MC2 function); a local task file only swaps the dataset for a
JSON file written from our loaded questions, since the hub is unreachable. Both sides use the one loaded
model object; each side tokenises and batches in its own way. lm-eval runs mc2 and then mc1 with its
request cache on, so neither side scores a (context, choice) pair twice.

    python scripts/bench_truthfulqa_parity.py                        # all 817 questions, gemma-3-270m
    python scripts/bench_truthfulqa_parity.py --model smollm2-135m-instruct --limit 40

Needs the data mirror (HARNESS_DATA_DIR) or the hub, and lm-eval (`pip install -e .[dev]`).
Prints MC1, MC2 and wall time of each side (ours twice: every (context, choice) row on its own, then each
question's context run once and its cache reused for every choice), and the per-question agreement.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.truthfulqa import mc1_score, mc2_score, mc_loglikelihoods, select_questions  # noqa: E402
from benchmarks.truthfulqa_data import TruthfulQAQuestion, load_truthfulqa  # noqa: E402
from harness.aligner import AlignedModel  # noqa: E402
from harness.store import Cache  # noqa: E402

TASKS = ("harness_truthfulqa_mc1", "harness_truthfulqa_mc2")


@dataclass
class McResult:
    mc1: float
    mc2: float
    per_question: dict[str, tuple[float, float]]  # question text -> (mc1, mc2)
    wall_s: float


def ours(backend, questions: list[TruthfulQAQuestion], batch_size: int = 8) -> McResult:
    """Our MC1/MC2 through the benchmark's own scoring code, with an empty cache (nothing served from disk)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        scores = mc_loglikelihoods(AlignedModel(backend), questions, Cache(Path(tmp)), batch_size)
    per_question = {}
    for question, lls in zip(questions, scores):
        per_question[question.question] = (
            mc1_score([lls[c] for c in question.mc1_choices], question.mc1_labels),
            mc2_score([lls[c] for c in question.mc2_choices], question.mc2_labels))
    values = np.array(list(per_question.values()))
    return McResult(float(values[:, 0].mean()), float(values[:, 1].mean()), per_question,
                    time.perf_counter() - started)


def write_lm_eval_tasks(questions: list[TruthfulQAQuestion], task_dir: Path) -> None:
    """lm-eval's truthfulqa_mc1/mc2 task files, included unchanged, over a local JSON file of the questions."""
    import lm_eval

    builtin = Path(lm_eval.__file__).resolve().parent / "tasks" / "truthfulqa"
    data_file = task_dir / "validation.jsonl"
    with open(data_file, "w", encoding="utf-8") as handle:
        for q in questions:  # the HF `multiple_choice` row layout the task templates read
            row = {"question": q.question,
                   "mc1_targets": {"choices": list(q.mc1_choices), "labels": list(q.mc1_labels)},
                   "mc2_targets": {"choices": list(q.mc2_choices), "labels": list(q.mc2_labels)}}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    for task, kind in zip(TASKS, ("mc1", "mc2")):
        (task_dir / f"{task}.yaml").write_text(
            f"include: {json.dumps(str(builtin / f'truthfulqa_{kind}.yaml'))}\n"
            f"task: {task}\n"
            "dataset_path: json\n"
            "dataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    validation: {json.dumps(str(data_file))}\n",
            encoding="utf-8")


def lm_eval_reference(backend, questions: list[TruthfulQAQuestion], batch_size: int = 8) -> McResult:
    """MC1/MC2 computed by lm-eval's HFLM and its truthfulqa tasks on the backend's loaded model."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    started = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_lm_eval_tasks(questions, Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(backend.spec.path)
        lm = HFLM(pretrained=backend.module(None), tokenizer=tokenizer, batch_size=batch_size)
        manager = TaskManager(include_path=tmp, include_defaults=False)
        # mc2 first: lm-eval's own request cache (`use_cache`) then serves the mc1 choices, which are a
        # subset of the mc2 choices, instead of scoring them a second time.
        for task in reversed(TASKS):
            results[task] = simple_evaluate(model=lm, tasks=[task], log_samples=True, bootstrap_iters=0,
                                            task_manager=manager, use_cache=str(Path(tmp) / "lm_eval_cache"))
    per_question: dict[str, list[float]] = {}
    for index, task in enumerate(TASKS):
        for sample in results[task]["samples"][task]:
            per_question.setdefault(sample["doc"]["question"], [0.0, 0.0])[index] = float(sample["acc"])
    return McResult(results[TASKS[0]]["results"][TASKS[0]]["acc,none"],
                    results[TASKS[1]]["results"][TASKS[1]]["acc,none"],
                    {q: (v[0], v[1]) for q, v in per_question.items()}, time.perf_counter() - started)


def tokens_run(backend, questions: list[TruthfulQAQuestion]) -> tuple[int, int]:
    """Tokens the model runs: every (context, choice) row whole, and each context once plus every choice."""
    from benchmarks.truthfulqa import mc_choices, mc_context

    as_rows = shared = 0
    for question in questions:
        pairs = [backend._encode_pair(mc_context(question.question, []), " " + c) for c in mc_choices(question)]
        as_rows += sum(len(context) + len(choice) for context, choice in pairs)
        shared += len(pairs[0][0]) + sum(len(choice) for _, choice in pairs)
    return as_rows, shared


def disagreements(a: McResult, b: McResult, tolerance: float = 1e-4) -> list[str]:
    """Questions whose MC1 differs, or whose MC2 differs by more than `tolerance`."""
    return [q for q in a.per_question
            if a.per_question[q][0] != b.per_question[q][0]
            or abs(a.per_question[q][1] - b.per_question[q][1]) > tolerance]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m", help="embedded model name, HF id or local path")
    parser.add_argument("--limit", type=int, help="a seeded sample of N questions (default: all 817)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    from harness.runner import load_model

    questions = select_questions(load_truthfulqa()[0], args.limit, args.seed)
    backend = load_model("hf", args.model)
    backend.share_contexts = False  # before: every (context, choice) row run on its own
    rows = ours(backend, questions, args.batch_size)
    backend.share_contexts = True  # now: each question's context run once, its cache reused for every choice
    mine = ours(backend, questions, args.batch_size)
    theirs = lm_eval_reference(backend, questions, args.batch_size)
    differing = disagreements(mine, theirs)
    rows_tokens, unique_tokens = tokens_run(backend, questions)
    print(f"TruthfulQA MC on {args.model}, {len(questions)} questions, batch size {args.batch_size}")
    print(f"tokens run: {rows_tokens} as rows, {unique_tokens} with a shared context (the floor: one forward pass "
          f"per unique token, {unique_tokens / rows_tokens:.3f} of the rows')")
    print(f"{'':22s} {'MC1':>8s} {'MC2':>8s} {'wall':>9s} {'x lm-eval':>10s}")
    for name, result in (("harness (rows)", rows), ("harness (shared ctx)", mine), ("lm-eval", theirs)):
        print(f"{name:22s} {100 * result.mc1:7.2f}% {100 * result.mc2:7.2f}% {result.wall_s:8.1f}s "
              f"{result.wall_s / theirs.wall_s:9.2f}x")
    print(f"diff (shared - lm-eval) {100 * (mine.mc1 - theirs.mc1):+7.3f}  {100 * (mine.mc2 - theirs.mc2):+7.3f}   "
          f"points; {len(differing)} question(s) differ; rows vs shared: {len(disagreements(rows, mine))} differ")
    if args.json:
        args.json.write_text(json.dumps({
            "model": args.model, "n": len(questions), "batch_size": args.batch_size,
            "harness_rows": {"mc1": rows.mc1, "mc2": rows.mc2, "wall_s": rows.wall_s},
            "harness": {"mc1": mine.mc1, "mc2": mine.mc2, "wall_s": mine.wall_s},
            "lm_eval": {"mc1": theirs.mc1, "mc2": theirs.mc2, "wall_s": theirs.wall_s},
            "differing_questions": differing}, indent=2))
    return 0 if abs(mine.mc1 - theirs.mc1) <= 1e-3 and abs(mine.mc2 - theirs.mc2) <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
