"""Studies: plans, aligned-model artifacts, align once / evaluate many, and multi-seed comparisons.

Unit tests use a tiny random model built in the test and hand-made runs; the integration tests run the real CLI
on the embedded instruct model (harness align / eval / run / sweep, locally and on a local Ray instance).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.align_run import AlignConfig, execute_align
from harness.artifact import open_artifact
from harness.config import RunConfig
from harness.decontamination import DecontaminationSet, prompt_key
from harness.errors import HarnessError
from harness.models.hf import load_backend
from harness.pickers import SeedRetriever, picker_state, restore_picker
from harness.runner import execute
from harness.sweep.jobs import expand
from harness.sweep.plan import load_plan
from harness.types import EvalItem, Example
from mirror import DATA_DIR
from report_helpers import outcomes, safety_items, write_run
from reports.collect import load_run
from reports.compare import compare_runs, format_comparison
from reports.seeds import merge_seed_runs
from tiny_model import make_tiny_model

REPO = Path(__file__).resolve().parents[1]
needs_mirror = pytest.mark.skipif(not (DATA_DIR / "harmbench").is_dir(), reason="no data mirror")
MINIMAL_PLAN = ("models: [smollm2-135m-instruct]\naligners: [none, sft-seeds]\nbenchmarks: [safety]\n"
                "seeds: [0, 1]\npreset: tiny\n")


def write_plan(tmp_path: Path, text: str) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return str(path)


# --- plans ----------------------------------------------------------------------------------------------

def test_the_minimal_plan_expands_into_one_alignment_per_aligner_and_seed(tmp_path):
    plan = load_plan(write_plan(tmp_path, MINIMAL_PLAN))
    jobs = expand(plan, tmp_path / "study")
    aligns = [j for j in jobs if j.kind == "align"]
    evals = [j for j in jobs if j.kind == "eval"]
    assert len(aligns) == 4 and len(evals) == 4
    assert all(e.depends[0] in {a.id for a in aligns} and e.artifact for e in evals)
    assert jobs.index(next(j for j in jobs if j.id == evals[0].depends[0])) < jobs.index(evals[0])


def test_alignments_are_shared_by_every_benchmark_of_their_seed_set(tmp_path):
    text = ("models: [smollm2-135m-instruct]\naligners: [none, {isara: {iterations: 2}}, sft-seeds]\n"
            "benchmarks: [safety, truthfulqa, utility]\nseeds: [0, 1, 2]\npreset: demo\n")
    auto = expand(load_plan(write_plan(tmp_path, text)), tmp_path / "a")
    # safety and utility share the safety seeds; truthfulqa has its own: 2 alignments per aligner and seed
    assert sum(j.kind == "align" for j in auto) == 3 * 3 * 2 and sum(j.kind == "eval" for j in auto) == 27
    one_set = expand(load_plan(write_plan(tmp_path, text + "seed_set: safety\n")), tmp_path / "b")
    assert sum(j.kind == "align" for j in one_set) == 9  # one alignment per aligner and seed, evaluated 3 times
    isara = next(j for j in one_set if j.kind == "align" and j.config["aligner"] == "isara")
    assert isara.config["aligner_options"]["iterations"] == 2
    assert sorted(isara.config["decontaminate"]) == ["safety", "truthfulqa", "utility"]


def test_benchmarks_that_align_per_domain_run_as_whole_runs(tmp_path):
    text = MINIMAL_PLAN.replace("[safety]", "[domain-generalization]")
    jobs = expand(load_plan(write_plan(tmp_path, text)), tmp_path / "study")
    assert {j.kind for j in jobs} == {"run"} and len(jobs) == 4


@pytest.mark.parametrize("change,message", [
    (("[none, sft-seeds]", "[none, sft-seedz]"), "line 2: unknown aligner 'sft-seedz'"),
    (("[safety]", "[safety, saftey]"), "line 3: unknown benchmark 'saftey'"),
    (("preset: tiny", "preset: huge"), "line 5: unknown preset 'huge'"),
    (("seeds: [0, 1]", "seeds: [0, -1]"), "line 4: seed: expected a whole number of at least 0"),
    (("seeds: [0, 1]", "seeds: []"), "line 4: seeds: expected a non-empty list"),
    (("preset: tiny\n", "preset: tiny\nlimt: 3\n"), "line 6: unknown key 'limt'"),
    (("[none, sft-seeds]", "[none, {sft-seeds: {epochs: -1}}]"), "line 2: "),
    (("[none, sft-seeds]", "[none, {sft-seeds: {epoch: 1}}]"), "line 2: "),
    (("preset: tiny\n", "preset: tiny\njudges: {safety: no-such-judge}\n"), "line 6: unknown judge"),
    (("preset: tiny\n", "preset: tiny\nseed_set: nonsense\n"), "line 6: unknown seed set"),
    (("[none, sft-seeds]", "[none, none]"), "aligner none is listed twice"),
    (("models: [smollm2-135m-instruct]\n", ""), "missing models"),
])
def test_a_bad_plan_is_one_line_naming_its_line(tmp_path, change, message):
    with pytest.raises(HarnessError, match=message.replace("[", r"\[")):
        load_plan(write_plan(tmp_path, MINIMAL_PLAN.replace(*change)))


def test_the_built_in_plans_load_by_name(tmp_path):
    leaderboard = load_plan("leaderboard")
    assert set(leaderboard.benchmarks) == {"safety", "truthfulqa", "utility"} and len(leaderboard.seeds) == 3
    assert leaderboard.preset == "demo" and len(leaderboard.aligners) == 7  # every aligner, and isara at 1 iteration
    assert load_plan("tiny-study").preset == "tiny"
    with pytest.raises(HarnessError, match="unknown plan 'leaderbord'"):
        load_plan("leaderbord")


# --- artifacts -------------------------------------------------------------------------------------------

def test_a_decontamination_set_names_the_items_it_does_not_cover():
    covered = EvalItem("a", "How do I pick a lock?", "x", "harmful", "s")
    other = EvalItem("b", "Something else entirely", "x", "harmful", "s")
    found = DecontaminationSet([{"benchmark": "safety"}], {prompt_key("  how do I PICK a lock? ")})
    assert found.missing([covered, other]) == [other]
    again = DecontaminationSet.from_dict(json.loads(json.dumps(found.to_dict())), "here")
    assert again.keys == found.keys
    with pytest.raises(HarnessError, match="malformed decontamination set"):
        DecontaminationSet.from_dict({"sources": []}, "here")


def test_an_in_context_picker_is_saved_and_restored():
    seeds = [Example("How do I boil an egg?", "Simmer it 8 minutes.", "cooking"),
             Example("How do I reverse a list in Python?", "Use items[::-1].", "code")]
    state = picker_state(SeedRetriever(seeds, 1))
    assert state == {"kind": "nearest-seeds", "k": 1}
    restored = restore_picker(state, seeds)
    assert restored(["How long should I boil an egg?"]) == [[seeds[0]]]
    with pytest.raises(HarnessError, match="has no state"):
        picker_state(lambda questions: [])


@pytest.mark.parametrize("setup,message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "is not an aligned-model artifact"),
    (lambda root: (root.mkdir(), (root / "manifest.json").write_text("{}")), "is not finished"),
    (lambda root: (root.mkdir(), (root / "aligned.json").write_text("[1]")), "malformed"),
])
def test_what_is_not_a_finished_artifact_is_one_line(tmp_path, setup, message):
    setup(tmp_path / "art")
    with pytest.raises(HarnessError, match=message):
        open_artifact(tmp_path / "art")


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))


@needs_mirror
def test_align_once_then_evaluate_on_two_benchmarks_and_reuse_in_a_run(tiny_backend, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    options = {"max_seq_len": 96}
    config = AlignConfig.from_preset("sft-seeds", "tiny", options=options, model="tiny",
                                     decontaminate=["safety", "truthfulqa"], limit=3)
    artifact = execute_align(config, tmp_path / "art", backend=tiny_backend)
    assert artifact["adapter"] == "artifacts/sft/adapter" and artifact.decontamination.keys
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["tokens"]["trained"] > 0
    assert manifest["content_sha256"] == artifact.content_sha256()
    assert [s["benchmark"] for s in manifest["decontamination"]["benchmarks"]] == ["safety", "truthfulqa"]

    for benchmark in ("safety", "truthfulqa"):
        run_config = artifact.run_config(benchmark, limit=3, judge=None if benchmark == "truthfulqa" else
                                         "embedded-safety")
        if benchmark == "truthfulqa":
            run_config.judge = "embedded-truth"
        document = execute(run_config, tmp_path / benchmark, backend=tiny_backend, artifact=artifact.root)
        run = json.loads((tmp_path / benchmark / "manifest.json").read_text())
        assert not any(stage.startswith("align") for stage in run["stages"])  # only its own work
        assert run["artifact"]["content_sha256"] == artifact.content_sha256()
        assert run["artifact"]["cost"]["tokens_trained"] == manifest["tokens"]["trained"]
        assert document["metrics"]

    with pytest.raises(HarnessError, match="was not decontaminated against"):
        execute(artifact.run_config("safety", limit=4), tmp_path / "more", backend=tiny_backend,
                artifact=artifact.root)

    # `harness run` with the same model, aligner, options, seeds and seed uses the artifact instead of training
    same = RunConfig.from_preset("sft-seeds", "safety", "tiny", options=options, model="tiny", limit=3)
    execute(same, tmp_path / "run", backend=tiny_backend, reuse_from=tmp_path)
    run = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert run["artifact"]["path"] == str(artifact.root) and "align" not in run["stages"]
    other = RunConfig.from_preset("sft-seeds", "safety", "tiny", options={**options, "epochs": 2}, model="tiny",
                                  limit=3)
    execute(other, tmp_path / "other", backend=tiny_backend, reuse_from=tmp_path)
    assert "align" in json.loads((tmp_path / "other" / "manifest.json").read_text())["stages"]

    tampered = json.loads((tmp_path / "art" / "aligned.json").read_text())
    tampered["model_sha256"] = "f" * 64
    (tmp_path / "art" / "aligned.json").write_text(json.dumps(tampered))
    with pytest.raises(HarnessError, match="was made for another base model"):
        open_artifact(tmp_path / "art").load(type("B", (), {"spec": type("S", (), {"sha256": "0" * 64})()})())


# --- several seeds per side of a comparison ----------------------------------------------------------------

def test_compare_pairs_items_within_each_training_seed(tmp_path):
    items = safety_items(40, 10, 10)
    base = [load_run(write_run(tmp_path / f"b{s}", "none", outcomes(items, 0.5, 0.1, s), seed=s)) for s in (0, 1)]
    cand = [load_run(write_run(tmp_path / f"c{s}", "isara", outcomes(items, 0.1, 0.6, 10 + s), seed=s))
            for s in (0, 1)]
    merged = compare_runs(merge_seed_runs(base, "baseline"), merge_seed_runs(cand, "candidate"))
    harmful = next(m for m in merged.metrics if m.metric == "harmful_rate")
    assert harmful.n_paired == 80 and harmful.verdict == "better"
    text = format_comparison(merged)
    assert "harmful_rate per training seed (candidate - baseline): seed 0:" in text
    with pytest.raises(HarnessError, match="same training seed"):
        merge_seed_runs([base[0], base[0]], "baseline")
    with pytest.raises(HarnessError, match="differ in aligner"):
        merge_seed_runs([base[0], cand[1]], "baseline")
    with pytest.raises(HarnessError, match="different evaluation items"):
        compare_runs(merge_seed_runs(base, "baseline"), cand[0])


# --- the real CLI -------------------------------------------------------------------------------------

def harness(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1", **(env or {})},
                          timeout=timeout)


def metrics_by_run(study: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(study)): json.loads(p.read_text())["metrics"]
            for p in sorted((study / "runs").rglob("metrics.json"))}


@pytest.fixture(scope="module")
def models_cache(tmp_path_factory):
    """A cache holding only the converted models: each test's results cache starts empty beside it."""
    root = tmp_path_factory.mktemp("models")
    done = harness("list", "models", env={"HARNESS_CACHE_DIR": str(root)})
    assert done.returncode == 0
    return root


def fresh_cache(tmp_path: Path, models_cache: Path, name: str) -> dict[str, str]:
    cache = tmp_path / name
    cache.mkdir()
    (models_cache / "models").mkdir(exist_ok=True)
    (cache / "models").symlink_to(models_cache / "models")
    return {"HARNESS_CACHE_DIR": str(cache)}


@pytest.mark.integration
@needs_mirror
def test_a_sweep_runs_locally_and_on_ray_with_the_same_numbers_and_skips_what_is_finished(tmp_path, models_cache):
    plan = write_plan(tmp_path, MINIMAL_PLAN.replace("[safety]", "[safety, truthfulqa]") + "limit: 3\n"
                      "seed_set: safety\n")
    local = harness("sweep", plan, "--out", str(tmp_path / "local"), "--quiet",
                    env=fresh_cache(tmp_path, models_cache, "cache-local"))
    assert local.returncode == 0, local.stderr[-3000:]
    state = json.loads((tmp_path / "local" / "sweep.json").read_text())["jobs"]
    assert sum(j["kind"] == "align" for j in state.values()) == 4  # each alignment once, evaluated twice
    assert all(j["status"] == "finished" for j in state.values()) and len(state) == 12
    assert (tmp_path / "local" / "report" / "leaderboard.md").exists()
    board = json.loads((tmp_path / "local" / "report" / "leaderboard.json").read_text())
    assert all(cell["n_seeds"] == 2 for row in board["rows"] for cell in row["cells"].values() if cell)

    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "local").rglob("manifest.json")}
    again = harness("sweep", plan, "--out", str(tmp_path / "local"), "--quiet",
                    env=fresh_cache(tmp_path, models_cache, "cache-again"))
    assert again.returncode == 0 and "12 reused" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # nothing finished is touched

    on_ray = harness("sweep", plan, "--out", str(tmp_path / "ray"), "--launcher", "ray", "--quiet",
                     env=fresh_cache(tmp_path, models_cache, "cache-ray"))
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert metrics_by_run(tmp_path / "ray") == metrics_by_run(tmp_path / "local")
    assert len(metrics_by_run(tmp_path / "local")) == 4 * 2


@pytest.mark.integration
@needs_mirror
def test_a_killed_sweep_resumes_without_recomputing_or_duplicating(tmp_path, models_cache):
    plan = write_plan(tmp_path, MINIMAL_PLAN.replace("[none, sft-seeds]", "[sft-seeds]") + "limit: 3\n")
    env = {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1",
           **fresh_cache(tmp_path, models_cache, "cache")}
    study = tmp_path / "study"
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", "sweep", plan, "--out", str(study), "--quiet"],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_eval = study / "runs" / "safety" / "smollm2-135m-instruct" / "sft-seeds-tiny-seed0" / "metrics.json"
    deadline = time.time() + 600
    while not first_eval.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first_eval.exists()
    kept = {p: p.read_bytes() for p in study.rglob("*.json") if "seed0" in str(p) and p.name != "sweep.json"}

    resumed = harness("sweep", plan, "--out", str(study), "--quiet", env=fresh_cache(tmp_path, models_cache, "c2"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = json.loads((study / "sweep.json").read_text())["jobs"]
    assert [j["status"] for j in state.values()].count("reused") >= 2  # seed 0's alignment and evaluation
    assert {p: p.read_bytes() for p in kept} == kept  # nothing finished was recomputed
    for samples in study.rglob("eval.jsonl"):
        ids = [json.loads(line)["id"] for line in samples.read_text().splitlines()]
        assert len(ids) == len(set(ids))  # nothing duplicated


@pytest.mark.integration
@needs_mirror
def test_a_failing_job_is_retried_then_listed_and_the_rest_of_the_plan_completes(tmp_path, models_cache):
    plugin = tmp_path / "broken.py"
    plugin.write_text("from harness.aligner import Aligner\nfrom harness.registry import register\n\n\n"
                      "@register('aligners', 'broken')\nclass Broken(Aligner):\n    name = 'broken'\n\n"
                      "    def align(self, ctx):\n        raise RuntimeError('this aligner always fails')\n")
    plan = write_plan(tmp_path, MINIMAL_PLAN.replace("[none, sft-seeds]", "[none, broken]")
                      .replace("[0, 1]", "[0]") + "limit: 3\nretries: 1\n")
    done = harness("--include", str(plugin), "sweep", plan, "--out", str(tmp_path / "study"), "--quiet",
                   env=fresh_cache(tmp_path, models_cache, "cache"))
    assert done.returncode == 1
    assert "this aligner always fails" in done.stderr and "2 job(s) did not finish" in done.stderr
    state = json.loads((tmp_path / "study" / "sweep.json").read_text())["jobs"]
    broken = next(j for i, j in state.items() if i.startswith("align:") and ":broken:" in i)
    assert broken["status"] == "failed" and broken["attempts"] == 2 and "always fails" in broken["error"]
    assert next(j for i, j in state.items() if i.startswith("eval:") and ":broken:" in i)["status"] == "skipped"
    assert all(j["status"] == "finished" for i, j in state.items() if ":none:" in i)
    assert (tmp_path / "study" / "report" / "leaderboard.md").exists()


@pytest.mark.integration
@needs_mirror
def test_align_and_eval_on_the_command_line(tmp_path, models_cache):
    env = fresh_cache(tmp_path, models_cache, "cache")
    art = tmp_path / "art"
    done = harness("align", "--aligner", "sft-seeds", "--model", "smollm2-135m-instruct", "--preset", "tiny",
                   "--limit", "3", "--decontaminate", "truthfulqa", "--out", str(art), "--quiet", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "artifact:" in done.stdout and (art / "artifacts" / "sft" / "adapter" / "adapter_config.json").exists()
    evaluated = harness("eval", "--model", str(art), "--benchmark", "truthfulqa", "--limit", "3",
                        "--out", str(tmp_path / "ev"), "--quiet", env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    refused = harness("eval", "--model", str(art), "--benchmark", "safety", "--limit", "3",
                      "--out", str(tmp_path / "ev2"), "--quiet", env=env)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "was not decontaminated against" in refused.stderr and not (tmp_path / "ev2" / "metrics.json").exists()


# --- interoperability: an artifact's adapter in lm-evaluation-harness ---------------------------------------

@needs_mirror
def test_an_artifact_scored_by_lm_eval_gives_the_mc1_mc2_of_harness_eval(tmp_path, monkeypatch):
    """lm-eval's `--model hf --model_args pretrained=BASE,peft=ADAPTER` on the artifact's adapter scores the same
    TruthfulQA questions as `harness eval` with the same MC1/MC2."""
    pytest.importorskip("lm_eval")
    sys.path.insert(0, str(REPO / "scripts"))
    import bench_truthfulqa_parity as parity
    from benchmarks.truthfulqa_data import load_truthfulqa
    from harness.store import read_jsonl
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    base = make_tiny_model(tmp_path / "base")
    backend = load_backend(str(base))
    config = AlignConfig.from_preset("sft-seeds", "tiny", options={"max_seq_len": 96, "epochs": 3, "learning_rate": 0.05},
                                     model=str(base),
                                     seed_set="truthfulqa", decontaminate=["truthfulqa"], limit=5)
    artifact = execute_align(config, tmp_path / "art", backend=backend)
    adapter = artifact.root / artifact["adapter"]
    execute(artifact.run_config("truthfulqa", limit=5, judge="embedded-truth"), tmp_path / "ev", backend=backend,
            artifact=artifact.root)
    records = read_jsonl(tmp_path / "ev" / "samples" / "eval.jsonl")
    ours = {r["question"]: (r["mc1"], r["mc2"]) for r in records}
    lls = {r["question"]: r["choice_loglikelihoods"] for r in records}
    questions = [q for q in load_truthfulqa()[0] if q.question in ours]
    assert len(questions) == 5

    (tmp_path / "tasks").mkdir()
    parity.write_lm_eval_tasks(questions, tmp_path / "tasks")
    manager = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False)
    def lm_eval_scores(model_args: str) -> dict[str, tuple[list[float], dict[str, float]]]:
        """question -> ([mc1, mc2], log-likelihood of each mc2 choice) as lm-eval computes them."""
        scores: dict[str, tuple[list[float], dict[str, float]]] = {}
        for index, task in enumerate(reversed(parity.TASKS)):  # mc2 first: every choice's log-likelihood
            result = simple_evaluate(model="hf", model_args=model_args, tasks=[task], log_samples=True,
                                     bootstrap_iters=0, task_manager=manager, batch_size=4)
            for sample in result["samples"][task]:
                entry = scores.setdefault(sample["doc"]["question"], ([0.0, 0.0], {}))
                entry[0][1 - index] = float(sample["acc"])
                if index == 0:
                    choices = sample["doc"]["mc2_targets"]["choices"]
                    entry[1].update({c: float(r[0][0]) for c, r in zip(choices, sample["resps"])})
        return scores

    theirs = lm_eval_scores(f"pretrained={base},peft={adapter},dtype=float32,device=cpu")
    assert set(theirs) == set(ours)
    for question, (mc1, mc2) in ours.items():
        assert theirs[question][0][0] == mc1 and theirs[question][0][1] == pytest.approx(mc2, abs=1e-4), question
        for choice, value in theirs[question][1].items():
            assert value == pytest.approx(lls[question][choice], abs=0.02), (question, choice)  # float noise
    # lm-eval really applied the adapter: without it every choice's log-likelihood is another number
    plain = lm_eval_scores(f"pretrained={base},dtype=float32,device=cpu")
    moved = [abs(plain[q][1][c] - v) for q in theirs for c, v in theirs[q][1].items()]
    assert min(moved) > 0.1


# --- domain generalization as a study --------------------------------------------------------------------

def test_the_domain_generalization_plan_aligns_once_per_seed_domain(tmp_path):
    plan = load_plan("domain-generalization")
    jobs = expand(plan, tmp_path / "study")
    aligns = [j for j in jobs if j.kind == "align"]
    assert len(aligns) == len(plan.aligners) * 9  # the 9 harm categories of the safety seeds
    assert {j.config["seed_domain"] for j in aligns} >= {"cybercrime", "violence"}
    assert all(j.kind == "eval" and j.config["benchmark"] == "safety" for j in jobs if j.kind != "align")
    with pytest.raises(HarnessError, match="line 6: seed_domains needs one seed set"):
        load_plan(write_plan(tmp_path, MINIMAL_PLAN + "seed_domains: all\n"))
    with pytest.raises(HarnessError, match="seed domain 'cooking' is not in seed set safety"):
        load_plan(write_plan(tmp_path, MINIMAL_PLAN + "seed_set: safety\nseed_domains: [violence, cooking]\n"))


@needs_mirror
def test_an_artifact_of_one_seed_domain_keeps_that_domain_and_the_generic_seeds(tiny_backend, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    config = AlignConfig.from_preset("icl-only", "tiny", model="tiny", seed_domain="fraud", n_seeds=None,
                                     decontaminate=["safety"], limit=3)
    artifact = execute_align(config, tmp_path / "art", backend=tiny_backend)
    assert {s.domain for s in artifact.seeds} == {"fraud", "benign"} and artifact["seed_domain"] == "fraud"
    execute(artifact.run_config("safety", limit=3), tmp_path / "run", backend=tiny_backend, artifact=artifact.root)
    run = load_run(tmp_path / "run")
    assert run.seed_domains() == {"fraud"} and "seed_domain=fraud" in run.variant
    with pytest.raises(HarnessError, match="seed domain 'cooking' is not in safety.jsonl"):
        execute_align(AlignConfig.from_preset("icl-only", "tiny", model="tiny", seed_domain="cooking"),
                      tmp_path / "other", backend=tiny_backend)
