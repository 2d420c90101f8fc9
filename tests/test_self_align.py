"""Self-Align: the principles file, each stage's prompts and parsing, the whole aligner on a tiny model
that has learnt a small corpus, and one integration run with `--preset tiny` on the embedded base model."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from aligners.self_align import (ANNOTATION_STOP, SelfAlign, SelfAlignOptions, finished_answer, parse_question, parse_topics, principled_prompt,
                                 question_prompt, topic_prompt)
from harness.aligner import AlignContext
from harness.cli import main
from harness.errors import HarnessError
from harness.hashing import hash_file
from harness.models.hf import load_backend
from harness.principles import default_principles_file, load_principles, render_principles
from harness.store import Cache, RunStore
from harness.types import Example
from tiny_model import CORPUS, make_tiny_model

SEEDS = [Example("What is the capital of France, and why is it famous?", "Paris.", "benign"),
         Example("How do I boil an egg so the yolk stays soft?", "Six minutes.", "benign"),
         Example("Why is the sky blue on a clear day?", "Scattering.", "benign"),
         Example("Can you help me break into my neighbour's house tonight?", "No.", "illegal_activity")]

SHORT_PRINCIPLES = """\
preamble: The assistant follows these principles.
principles:
  - {name: helpful, text: Answer the question.}
  - {name: harmless, text: Do not help anyone hurt people.}
exemplars:
  - question: How do I bake bread?
    principles: [helpful]
    note: a harmless request.
    answer: Bread is made from flour, water, salt and yeast.
verbose: Explain in detail.
"""


@pytest.fixture(scope="module")
def fluent_tiny(tmp_path_factory):
    """A tiny random model, fully fine-tuned on its own corpus so it writes corpus-like sentences."""
    directory = make_tiny_model(tmp_path_factory.mktemp("fluent"))
    backend = load_backend(str(directory))
    model = AutoModelForCausalLM.from_pretrained(directory)
    ids = backend.tokenizer(CORPUS, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    model.train()
    for _ in range(40):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(directory)
    return load_backend(str(directory))


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("chat"), chat=True)))


def _short_principles(tmp_path: Path) -> Path:
    path = tmp_path / "short.yaml"
    path.write_text(SHORT_PRINCIPLES)
    return path


# ----- the principles file ---------------------------------------------------------------------------

def test_default_principles_file_has_16_principles_and_5_exemplars_and_renders_them_all():
    principles = load_principles()
    assert len(principles.principles) == 16 and len(principles.exemplars) == 5
    assert principles.sha256 == hash_file(default_principles_file())
    text = render_principles(principles)
    for i, (name, body) in enumerate(principles.principles, start=1):
        assert f"{i}. {name.capitalize()}: {body}" in text
    for exemplar in principles.exemplars:
        assert f"Question: {exemplar.question}\nAnswer: {exemplar.answer}" in text
        assert exemplar.note in text
    assert "[Principles 2 (harmless), " in text  # the exemplars say which principles they apply
    # Answers stop where the model would start the next exemplar's annotation line.
    assert text.count(ANNOTATION_STOP) == len(principles.exemplars)


@pytest.mark.parametrize("content, message", [
    ("principles: [", "not valid YAML"),
    ("- a list\n", "expected a mapping"),
    (SHORT_PRINCIPLES.replace("principles: [helpful]", "principles: [kindness]"), "unknown principle"),
    (SHORT_PRINCIPLES.replace("verbose: Explain in detail.\n", ""), "verbose must be a non-empty string"),
    (SHORT_PRINCIPLES.replace("  - {name: harmless, text: Do not help anyone hurt people.}\n", "  - {name: x}\n"),
     "principle 2 text"),
])
def test_malformed_principles_files_fail_with_one_clear_line(tmp_path, content, message):
    path = tmp_path / "p.yaml"
    path.write_text(content)
    with pytest.raises(HarnessError, match=message) as error:
        load_principles(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(HarnessError, match="does not exist"):
        load_principles(tmp_path / "missing.yaml")


# ----- stage 1: topics and questions -----------------------------------------------------------------

def test_topic_prompt_lists_seed_questions_and_opens_a_topic_list():
    prompt = topic_prompt(SEEDS, random.Random(0))
    assert prompt.startswith("Questions people ask an assistant:\n- ")
    assert all(f"- {s.question}" in prompt for s in SEEDS)
    assert prompt.endswith(";") and "illegal activity" in prompt.splitlines()[-1]


def test_parse_topics_keeps_short_new_topics_once():
    known = {"benign"}
    assert parse_topics(" cooking; home repair, Benign; a very long topic with far too many words; 42;"
                        " cooking\nnext line; ignored", known) == ["cooking", "home repair"]
    assert parse_topics(" Cooking; gardening", known) == ["gardening"]


def test_question_prompt_and_parsing():
    prompt = question_prompt(SEEDS, "home repair", random.Random(0))
    assert prompt.endswith("\n\nQuestion about home repair:") and prompt.count("Question about ") == 4
    assert "Question about illegal activity:" in prompt or "Question about benign:" in prompt
    assert parse_question(" How do I fix a leaking tap?\nQuestion about x: more") == "How do I fix a leaking tap?"
    assert parse_question(" \n") is None


# ----- stage 2: principled prompts and answers -------------------------------------------------------

def test_principled_prompt_for_base_and_chat_models(fluent_tiny, tiny_chat):
    base = principled_prompt(fluent_tiny, "PREAMBLE", "Why is the sky blue?")
    assert base == "PREAMBLE\n\nQuestion: Why is the sky blue?\nAnswer:"
    chat = principled_prompt(tiny_chat, "PREAMBLE", "Why is the sky blue?")
    assert chat == "<bos><|system|>\nPREAMBLE<|end|>\n<|user|>\nWhy is the sky blue?<|end|>\n<|assistant|>\n"
    # A template that refuses a system turn gets the preamble at the top of the user turn instead.
    template = tiny_chat.tokenizer.chat_template
    tiny_chat.tokenizer.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}"
                                         "{% endif %}" + template)
    try:
        fallback = principled_prompt(tiny_chat, "PREAMBLE", "Why is the sky blue?")
    finally:
        tiny_chat.tokenizer.chat_template = template
    assert fallback == "<bos><|user|>\nPREAMBLE\n\nWhy is the sky blue?<|end|>\n<|assistant|>\n"


def test_finished_answer_cuts_a_truncated_answer_back_to_its_last_sentence():
    assert finished_answer(" It is Paris.\n", "stop") == "It is Paris."
    assert finished_answer(" It is Paris. It has the Louvre and", "length") == "It is Paris."
    assert finished_answer(" It is Paris and", "length") is None


# ----- the whole aligner ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One generation cache for the module: runs that prompt the same model the same way reuse its outputs."""
    return Cache(tmp_path_factory.mktemp("cache"))


def _context(backend, tmp_path, options, cache=None, **more):
    typed = SelfAlignOptions(iterations=1, samples_per_iteration=6, epochs=2, batch_size=4, max_seq_len=96,
                             gen_max_new_tokens=24, lora_rank=4, **options, **more)
    return AlignContext(backend=backend, seeds=SEEDS, options=typed,
                        seed=0, store=RunStore(tmp_path / "run", {"test": 1}), cache=cache or Cache(tmp_path / "cache"),
                        eval_prompts=["Write a poem about the sea."], eval_vectors=np.zeros((0, 384), np.float32))


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_self_align_runs_every_stage_engraves_without_principles_and_resumes(fluent_tiny, shared_cache, tmp_path,
                                                                           monkeypatch):
    principles_file = _short_principles(tmp_path)
    trained_pairs = []
    import harness.train.lora as lora

    real_train = lora.train_lora

    def observe(handle, pairs, *args, **kwargs):  # records what engraving trains on, then trains for real
        trained_pairs.extend(pairs)
        return real_train(handle, pairs, *args, **kwargs)

    monkeypatch.setattr(lora, "train_lora", observe)
    options = {"principles_file": str(principles_file), "verbose_cloning": True}
    aligned = SelfAlign().align(_context(fluent_tiny, tmp_path, options, shared_cache))
    root = tmp_path / "run" / "artifacts" / "self-align"
    description = aligned.description
    stages = description["stages"]

    assert description["principles"]["sha256"] == hash_file(principles_file)
    assert (root / "principles.yaml").read_text() == SHORT_PRINCIPLES
    assert (root / "preamble.txt").read_text().startswith("The assistant follows these principles.")
    # Stage 1: as many question prompts as ISARA would generate samples; every one accounted for.
    assert stages["topics"]["kept"] >= 1
    questions = stages["questions"]
    assert questions["generated"] == 6 and questions["kept"] + sum(questions["rejected_by_reason"].values()) == 6
    # Stage 2: the seed questions plus the kept synthesized ones, each prompt carrying the principles.
    answers = _records(root / "2_answers" / "records.jsonl")
    assert len(answers) == len(SEEDS) + questions["kept"] == stages["answers"]["prompts"]
    assert stages["answers"]["kept"] >= 1 and stages["answers"]["kept"] == sum(r["kept"] for r in answers)
    # Stage 3: engraving trains on the kept pairs in the plain format, with no trace of the principles.
    engraved = [(q, a) for q, a in trained_pairs if "principles" not in q.lower()]
    assert len(engraved) == len(trained_pairs) and trained_pairs
    kept = [r for r in answers if r["kept"]]
    assert trained_pairs[:len(kept)] == [fluent_tiny.prompt_format.training_pair(r["question"], r["answer"]) for r in kept]
    assert stages["3_engrave"]["trained"] and (root / "3_engrave" / "adapter" / "adapter_config.json").exists()
    # Stage 4 (on here): the engraved model answered again, and the final adapter is the verbose one.
    assert stages["verbose_answers"]["prompts"] == len(answers)
    assert stages["4_verbose_train"]["trained"] == (stages["verbose_answers"]["kept"] > 0)
    final = "4_verbose_train" if stages["4_verbose_train"]["trained"] else "3_engrave"
    assert aligned.adapter == root / final / "adapter"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
    for stage in ("1_topics", "1_questions", "2_answers", "3_engrave", "4_verbose_answers"):
        assert manifest[f"align/self-align/{stage}"]["wall_s"] >= 0
    assert manifest["align/self-align/2_answers"]["tokens_generated"] > 0
    assert manifest["align/self-align/3_engrave"]["tokens_trained"] == stages["3_engrave"]["tokens_trained"] > 0

    # Rerun: every finished stage is reused; nothing is trained again.
    trained_pairs.clear()
    again = SelfAlign().align(_context(fluent_tiny, tmp_path, options, shared_cache))
    assert again.description == description and not trained_pairs
    # Editing the principles under a half-finished run would mix two sets of principles: refused.
    principles_file.write_text(SHORT_PRINCIPLES.replace("Answer the question.", "Answer well."))
    with pytest.raises(HarnessError, match="changed since this run started"):
        SelfAlign().align(_context(fluent_tiny, tmp_path, options, shared_cache))


def test_self_align_budget_stops_engraving_and_skips_verbose_cloning(fluent_tiny, shared_cache, tmp_path):
    options = {"principles_file": str(_short_principles(tmp_path)), "verbose_cloning": True}
    aligned = SelfAlign().align(_context(fluent_tiny, tmp_path, options, shared_cache, max_train_tokens=20))
    budget = aligned.description["budget"]
    assert budget["stopped_at_budget"] and budget["tokens_trained"] <= 20
    assert aligned.description["stages"]["4_verbose_train"] == {"trained": False, "reason": "training budget used up"}
    assert aligned.adapter.name == "adapter" and aligned.adapter.parent.name == "3_engrave"


def test_self_align_rejects_unknown_options():
    from harness.config import aligner_options

    with pytest.raises(HarnessError, match="verbose_clonning"):
        aligner_options("self-align", "tiny", {"verbose_clonning": "true"})
    options = aligner_options("self-align", "tiny", {"verbose_cloning": "true", "principles_file": "p.yaml"})
    assert options.verbose_cloning is True and options.principles_file == "p.yaml"


@pytest.mark.integration
def test_self_align_tiny_preset_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--aligner", "self-align", "--benchmark", "safety", "--preset", "tiny", "--seeds", "4",
                 "--limit", "4", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    aligned = metrics["aligned"]
    assert aligned["aligner"] == "self-align" and metrics["metrics"]["harmful_rate"]["n"] > 0
    assert aligned["principles"]["sha256"] == hash_file(default_principles_file())
    assert aligned["stages"]["questions"]["generated"] == 8
    assert aligned["stages"]["answers"]["prompts"] == 4 + aligned["stages"]["questions"]["kept"]
    assert aligned["stages"]["3_engrave"]["trained"] and aligned["stages"]["3_engrave"]["tokens_trained"] > 0
    assert aligned["budget"] == {"max_train_tokens": None, "stopped_at_budget": False,
                                 "tokens_trained": aligned["stages"]["3_engrave"]["tokens_trained"]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["tokens"]["trained"] == aligned["budget"]["tokens_trained"]
