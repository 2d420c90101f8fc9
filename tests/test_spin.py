"""SPIN: the loss against hand-computed values, training on a tiny random model, the aligner, and one
integration run of `harness run --aligner spin --preset tiny` on the embedded base model."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from aligners.spin import Spin, SpinOptions
from harness.aligner import AlignContext
from harness.cli import main
from harness.errors import HarnessError
from harness.train import spin_loss, train_lora, train_spin
from harness.models.hf import load_backend
from harness.store import Cache, RunStore
from harness.types import Example
from tiny_model import make_tiny_model

TRIPLES = [
    ("Question: What is the capital of France?\nAnswer:", " The capital of France is Paris.\n\n", " Bread is made.\n\n"),
    ("Question: How do I boil an egg?\nAnswer:", " Boil it for nine minutes.\n\n", " The quick brown fox.\n\n"),
    ("Question: Why is the sky blue?\nAnswer:", " Air scatters blue light the most.\n\n", " Water freezes.\n\n"),
    ("Question: Can you help me break into a house?\nAnswer:", " I can't help with that.\n\n", " Yes, the door.\n\n"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))


def test_spin_loss_matches_hand_computed_values():
    # Pair 1: beta * ((-1 - -2) - (-3 - -1)) = 0.1 * (1 + 2) = 0.3; pair 2: 0.1 * ((-5 - -4) - (-2 - -2)) = -0.1.
    out = spin_loss(torch.tensor([-1.0, -5.0]), torch.tensor([-3.0, -2.0]), torch.tensor([-2.0, -4.0]),
                    torch.tensor([-1.0, -2.0]), beta=0.1)
    expected = (math.log1p(math.exp(-0.3)) + math.log1p(math.exp(0.1))) / 2
    assert float(out.loss) == pytest.approx(expected, abs=1e-6)
    assert out.reward_accuracy == 0.5 and out.reward_margin == pytest.approx(0.1, abs=1e-6)
    # Policy equal to reference: log 2, whatever beta.
    same = torch.tensor([-7.0])
    assert float(spin_loss(same, same - 1, same, same - 1, beta=0.5).loss) == pytest.approx(math.log(2))


def test_spin_loss_gradient_raises_the_real_answer_and_lowers_the_generated():
    real = torch.tensor([-4.0], requires_grad=True)
    generated = torch.tensor([-4.0], requires_grad=True)
    spin_loss(real, generated, torch.tensor([-4.0]), torch.tensor([-4.0]), beta=0.1).loss.backward()
    assert real.grad.item() < 0 < generated.grad.item()  # descent raises log p(real), lowers log p(generated)
    with pytest.raises(ValueError):
        spin_loss(real, generated, real, generated, beta=0.0)


def _hand_loss(tiny, triples, policy_adapter, reference_adapter, beta):
    """The SPIN loss from log-likelihoods the backend reports through its evaluation path."""
    def lls(adapter):
        return (tiny.loglikelihood([(p, r) for p, r, _ in triples], adapter),
                tiny.loglikelihood([(p, g) for p, _, g in triples], adapter))

    (pol_r, pol_g), (ref_r, ref_g) = lls(policy_adapter), lls(reference_adapter)
    margins = [beta * ((a - b) - (c - d)) for a, b, c, d in zip(pol_r, ref_r, pol_g, ref_g)]
    return sum(math.log1p(math.exp(-m)) for m in margins) / len(margins)


def test_first_step_loss_equals_the_loss_computed_by_hand_on_the_tiny_model(tiny, tmp_path):
    train_lora(tiny, [(p, r) for p, r, _ in TRIPLES], tmp_path / "sft", epochs=5, learning_rate=1e-2, rank=4,
                    batch_size=4, max_seq_len=64, seed=0)
    expected = _hand_loss(tiny, TRIPLES, tmp_path / "sft", None, beta=0.1)
    assert expected < math.log(2) - 0.01  # the SFT adapter already prefers the real answers
    result = train_spin(tiny, TRIPLES, tmp_path / "spin", beta=0.1, reference_adapter=None,
                             init_adapter=tmp_path / "sft", epochs=1, learning_rate=1e-3, rank=4, batch_size=4,
                             max_seq_len=64, seed=0)
    assert result.steps == 1 and result.losses[0] == pytest.approx(expected, abs=1e-4)
    # SPIN proper: the policy starts as the reference, so the first loss is log 2.
    again = train_spin(tiny, TRIPLES, tmp_path / "spin2", beta=0.1, reference_adapter=tmp_path / "sft",
                            init_adapter=tmp_path / "sft", epochs=1, learning_rate=1e-3, rank=4, batch_size=4,
                            max_seq_len=64, seed=0)
    assert again.losses[0] == pytest.approx(math.log(2), abs=1e-4)


def test_spin_loss_falls_over_steps_and_the_real_answers_gain(tiny, tmp_path):
    before = _hand_loss(tiny, TRIPLES, None, None, beta=0.1)
    result = train_spin(tiny, TRIPLES, tmp_path / "spin", beta=0.1, reference_adapter=None, init_adapter=None,
                             epochs=12, learning_rate=1e-2, rank=8, batch_size=2, max_seq_len=64, seed=0)
    assert result.steps == 24 and before == pytest.approx(math.log(2), abs=1e-6)
    assert result.losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert np.mean(result.losses[-4:]) < 0.5 * math.log(2)
    assert result.reward_accuracy[-1] == 1.0 and result.reward_margin[-1] > 0
    # The saved adapter is the trained policy: the loss computed by hand from it is low too.
    assert _hand_loss(tiny, TRIPLES, tmp_path / "spin", None, beta=0.1) < 0.5 * math.log(2)


def _context(backend, tmp_path, iterations=2, **options):
    seeds = [Example("What is the capital of France?", "The capital of France is Paris.", "benign"),
             Example("How do I boil an egg?", "Put it in boiling water for nine minutes.", "benign"),
             Example("Can you help me break into my neighbour's house?", "I can't help with that.", "crime")]
    return AlignContext(backend=backend, seeds=seeds,
                        options=SpinOptions(iterations=iterations, epochs=2, batch_size=2, max_seq_len=64,
                                            gen_max_new_tokens=12, learning_rate=1e-2, lora_rank=4, **options),
                        seed=0, store=RunStore(tmp_path / "run", {"test": 1}), cache=Cache(tmp_path / "cache"),
                        eval_prompts=[], eval_vectors=np.zeros((0, 384), np.float32))


def test_spin_aligner_writes_each_iteration_and_resumes(tiny, tmp_path):
    ctx = _context(tiny, tmp_path)
    aligned = Spin().align(ctx)
    root = tmp_path / "run" / "artifacts" / "spin"
    for t in (1, 2):
        summary = json.loads((root / f"iteration_{t}" / "summary.json").read_text())
        assert summary["pairs"] >= 1 and summary["optimizer_steps"] == 2 * math.ceil(summary["pairs"] / 2)
        assert summary["first_loss"] == pytest.approx(math.log(2), abs=1e-4)  # starts at its reference
        records = [json.loads(line) for line in (root / f"iteration_{t}" / "generated.jsonl").read_text().splitlines()]
        assert [r["question"] for r in records] == [s.question for s in ctx.seeds]
        assert (root / f"iteration_{t}" / "adapter" / "adapter_config.json").exists()
    assert aligned.adapter == root / "iteration_2" / "adapter"
    assert aligned.checkpoints == [(0, None), (1, root / "iteration_1" / "adapter"), (2, aligned.adapter)]
    stages = ctx.store.manifest["stages"]
    assert stages["align/spin/iteration_2/train"]["tokens_trained"] > 0
    assert stages["align/spin/iteration_1/generate"]["tokens_generated"] > 0
    assert aligned.description["budget"] == {"max_train_tokens": None, "stopped_at_budget": False,
                                             "tokens_trained": sum(i["tokens_trained"] for i in aligned.description["iterations"])}

    # A rerun reuses finished iterations: nothing is trained again.
    adapter_bytes = (aligned.adapter / "adapter_model.safetensors").read_bytes()
    again = Spin().align(_context(tiny, tmp_path))
    assert again.description == aligned.description
    assert (again.adapter / "adapter_model.safetensors").read_bytes() == adapter_bytes


def test_spin_aligner_rejects_unknown_options_and_bad_beta(tiny, tmp_path):
    from harness.config import aligner_options

    with pytest.raises(HarnessError, match="has no option 'betta'"):
        aligner_options("spin", "tiny", {"betta": "0.2"})
    with pytest.raises(HarnessError, match="beta=-1.0: must be greater than 0"):
        aligner_options("spin", "tiny", {"beta": "-1"})
    assert aligner_options("spin", "tiny", {"beta": "0.2"}).beta == 0.2


@pytest.mark.integration
def test_spin_tiny_preset_runs_end_to_end_under_a_training_budget(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--aligner", "spin", "--benchmark", "safety", "--preset", "tiny", "--seeds", "8",
                 "--limit", "4", "--budget", "600", "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["aligned"]["aligner"] == "spin" and metrics["metrics"]["harmful_rate"]["n"] > 0
    budget = metrics["aligned"]["budget"]
    assert budget["max_train_tokens"] == 600 and budget["stopped_at_budget"] is True
    assert 0 < budget["tokens_trained"] <= 600
    iteration = json.loads((out / "artifacts" / "spin" / "iteration_1" / "summary.json").read_text())
    assert iteration["first_loss"] == pytest.approx(math.log(2), abs=1e-3)
    config = json.loads((out / "config.json").read_text())
    assert config["aligner_options"]["max_train_tokens"] == 600
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["tokens"]["trained"] == budget["tokens_trained"]
