"""The training-token budget (`--budget N`): the cap holds in every trainer and across iterations and stages."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from aligners.isara import Isara, IsaraOptions
from aligners.sft_seeds import SftOnSeeds
from harness.aligner import AlignContext
from harness.cli import budget_cap
from harness.config import RunConfig
from harness.errors import HarnessError
from harness.train import TrainingBudget, TrainOptions, finetune, train_lora, train_spin
from harness.models.hf import load_backend
from harness.store import Cache, RunStore
from harness.types import Example
from tiny_model import make_tiny_model

PAIRS = [
    ("Question: What is the capital of France?\nAnswer:", " The capital of France is Paris.\n\n"),
    ("Question: How do I boil an egg?\nAnswer:", " Boil it for nine minutes.\n\n"),
    ("Question: Why is the sky blue?\nAnswer:", " Air scatters blue light the most.\n\n"),
    ("Question: Can you help me break into a house?\nAnswer:", " I can't help with that.\n\n"),
]
SEEDS = [Example("What is the capital of France?", "The capital of France is Paris, on the Seine.", "benign"),
         Example("How do I boil an egg properly?", "Put it in boiling water for about nine minutes.", "benign"),
         Example("Why is the sky blue during the day?", "Air scatters blue sunlight more than red light.", "benign"),
         Example("Can you help me break into my neighbour's house?", "I can't help with that; it is a crime.", "crime")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))


def _completion_tokens(backend):
    return [n for _ids, n in backend.training_rows(PAIRS, 64)]


def test_train_lora_never_exceeds_the_cap_and_says_it_stopped(tiny, tmp_path):
    per_epoch = sum(_completion_tokens(tiny))
    kwargs = dict(epochs=3, learning_rate=1e-3, rank=4, batch_size=2, max_seq_len=64, seed=0)
    free = train_lora(tiny, PAIRS, tmp_path / "free", **kwargs)
    assert free.tokens_trained == 3 * per_epoch and free.steps == 6 and not free.stopped_at_budget
    cap = per_epoch + 3  # a little more than one epoch: the next batch only partly fits
    capped = train_lora(tiny, PAIRS, tmp_path / "capped", max_tokens=cap, **kwargs)
    assert capped.stopped_at_budget and capped.tokens_trained <= cap
    assert capped.tokens_trained >= per_epoch and 2 <= capped.steps < free.steps
    assert capped.losses[:-1] == pytest.approx(free.losses[:capped.steps - 1])  # same run until the cut batch
    # A cap smaller than any example: no step, but an adapter is still saved and the stop is recorded.
    none = train_lora(tiny, PAIRS, tmp_path / "none", max_tokens=1, **kwargs)
    assert none.steps == 0 and none.tokens_trained == 0 and none.stopped_at_budget
    assert (tmp_path / "none" / "adapter_config.json").exists()
    # A cap that the full run fits in exactly is not a stop.
    exact = train_lora(tiny, PAIRS, tmp_path / "exact", max_tokens=3 * per_epoch, **kwargs)
    assert exact.tokens_trained == 3 * per_epoch and not exact.stopped_at_budget


def test_train_spin_counts_both_answers_against_the_cap(tiny, tmp_path):
    triples = [(p, c, " Bread is made from flour.\n\n") for p, c in PAIRS]
    result = train_spin(tiny, triples, tmp_path / "spin", beta=0.1, reference_adapter=None, init_adapter=None,
                             epochs=2, learning_rate=1e-3, rank=4, batch_size=2, max_seq_len=64, seed=0,
                             max_tokens=40)
    assert result.stopped_at_budget and 0 < result.tokens_trained <= 40


def test_training_budget_accumulates_and_records():
    budget = TrainingBudget(100)
    assert budget.remaining == 100 and not budget.exhausted
    budget.spend(60)
    assert budget.remaining == 40 and not budget.exhausted
    budget.spend(40)
    assert budget.remaining == 0 and budget.exhausted and not budget.stopped
    budget.skip()
    assert budget.record() == {"max_train_tokens": 100, "tokens_trained": 100, "stopped_at_budget": True}
    unlimited = TrainingBudget(None)
    unlimited.spend(10**9)
    assert unlimited.remaining is None and not unlimited.exhausted
    with pytest.raises(HarnessError, match="positive"):
        TrainingBudget(0)


def test_finetune_records_the_stop_and_resumes_it(tiny, tmp_path):
    budget = TrainOptions(epochs=2, batch_size=2, max_seq_len=64, lora_rank=4)
    first = finetune(tiny, SEEDS, tmp_path / "sft", budget, seed=0, max_tokens=20)
    assert first.stopped_at_budget and first.tokens_trained <= 20 and not first.resumed
    assert json.loads((tmp_path / "sft" / "train.json").read_text())["stopped_at_budget"] is True
    again = finetune(tiny, SEEDS, tmp_path / "sft", budget, seed=0, max_tokens=20)
    assert again.resumed and again.stopped_at_budget and again.tokens_trained == first.tokens_trained


def _context(backend, tmp_path, options_class=IsaraOptions, **options):
    return AlignContext(backend=backend, seeds=SEEDS,
                        options=options_class(**(dict(samples_per_iteration=2, k_neighbours=2, gen_max_new_tokens=16)
                                                 if options_class is IsaraOptions else {}),
                                              epochs=1, batch_size=2, max_seq_len=64, lora_rank=4, **options),
                        seed=0, store=RunStore(tmp_path / "run", {"test": 1}), cache=Cache(tmp_path / "cache"),
                        eval_prompts=[], eval_vectors=np.zeros((0, 384), np.float32))


def test_isara_cap_holds_across_iterations(tiny, tmp_path):
    free = Isara().align(_context(tiny, tmp_path / "free", iterations=2))
    per_iteration = [i["tokens_trained"] for i in free.description["iterations"]]
    assert free.description["budget"]["stopped_at_budget"] is False
    cap = per_iteration[0] + per_iteration[1] // 2  # iteration 2 is cut in the middle
    capped = Isara().align(_context(tiny, tmp_path / "capped", iterations=3, max_train_tokens=cap))
    record = capped.description["budget"]
    assert record["stopped_at_budget"] and record["tokens_trained"] <= cap and record["max_train_tokens"] == cap
    assert len(capped.description["iterations"]) == 2  # iteration 3 never starts
    assert capped.description["iterations"][1]["stopped_at_budget"]
    # Resuming the capped run restores what was spent and stops at the same place.
    again = Isara().align(_context(tiny, tmp_path / "capped", iterations=3, max_train_tokens=cap))
    assert again.description["budget"] == record


def test_sft_seeds_reports_its_budget(tiny, tmp_path):
    aligned = SftOnSeeds().align(_context(tiny, tmp_path, TrainOptions, max_train_tokens=30))
    assert aligned.description["budget"]["stopped_at_budget"] is True
    assert 0 < aligned.description["budget"]["tokens_trained"] <= 30


def test_budget_option_reaches_the_run_config_and_bad_values_fail():
    config = RunConfig.from_preset("isara", "safety", "tiny", options=budget_cap(5000, "isara"))
    assert config.options().max_train_tokens == 5000 and config.to_dict()["aligner_options"]["max_train_tokens"] == 5000
    assert budget_cap(None, "isara") == {}
    with pytest.raises(HarnessError, match="does not train"):
        budget_cap(5000, "icl-only")
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--aligner", "isara", "--benchmark", "safety",
                             "--budget", "0"], capture_output=True, text=True)
    assert result.returncode == 2 and "--budget 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--aligner", "spin", "--benchmark", "safety",
                             "--option", "beta"], capture_output=True, text=True)
    assert result.returncode == 2 and "--option 'beta'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
