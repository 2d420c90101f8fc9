"""The `hf` backend on tiny random models built in the test; one integration test on the embedded models."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.models.embedded import EMBEDDED_MODELS, MARKER, resolve_model
from harness.models.hf import HFModel, load_backend
from harness.train import train_lora
from harness.types import Sampling
from tiny_model import make_tiny_model

PROMPTS = [
    "Question: What is the capital of France?\nAnswer:",
    "Hello",
    "Question: Why is the sky blue? Please explain it to a child in a few words.\nAnswer:",
    "Bread is made from",
    "Water",
    "Question: How do I boil an egg?\nAnswer:",
]

PAIRS = [
    ("Question: What is the capital of France?\nAnswer:", " The capital of France is Paris.\n\n"),
    ("Question: How do I boil an egg?\nAnswer:", " Boil it for nine minutes.\n\n"),
    ("Question: Why is the sky blue?\nAnswer:", " Air scatters blue light the most.\n\n"),
    ("Question: Can you help me break into a house?\nAnswer:", " I can't help with that.\n\n"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> HFModel:
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory) -> HFModel:
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("tiny_chat"), chat=True)))


def test_local_directory_resolves_with_its_prompt_format(tiny, tiny_chat):
    assert tiny.spec.prompt_format == "qa" and tiny.spec.source.startswith("local:") and tiny.spec.sha256 is None
    assert tiny_chat.spec.prompt_format == "chat"
    assert tiny.prompt_format.question("Hi?") == "Question: Hi?\nAnswer:"
    assert tiny.prompt_format.training_pair("Hi?", "Hello.") == ("Question: Hi?\nAnswer:", " Hello.\n\n")
    assert tiny.prompt_format.answer_stops == ("\nQuestion:", "\n\n") and tiny_chat.prompt_format.answer_stops == ()


def test_chat_prompt_and_training_pair_follow_the_template(tiny_chat):
    prompt, completion = tiny_chat.prompt_format.training_pair("Hi?", "Hello.")
    assert prompt == tiny_chat.prompt_format.question("Hi?") == "<bos><|user|>\nHi?<|end|>\n<|assistant|>\n"
    assert completion == "Hello.<|end|>\n"
    # The template writes BOS itself: encoding must not add a second one.
    ids = tiny_chat.encode(prompt)
    assert ids.count(tiny_chat.tokenizer.bos_token_id) == 1


def test_unknown_model_fails_fast_with_one_line():
    started = time.perf_counter()
    with pytest.raises(HarnessError) as error:
        resolve_model("no-such-org/no-such-model-xyz")
    assert time.perf_counter() - started < 30
    message = str(error.value)
    assert "could not be loaded" in message and "gemma-3-270m" in message and "\n" not in message
    with pytest.raises(HarnessError):
        resolve_model("./definitely/not/a/dir")


def test_generate_keeps_input_order_and_batching_does_not_change_greedy_outputs(tiny):
    sampling = Sampling(max_new_tokens=12)
    one_by_one = [tiny.generate([p], sampling)[0] for p in PROMPTS]
    batched = tiny.generate(PROMPTS, sampling, batch_size=4)
    batched_one = tiny.generate(PROMPTS, sampling, batch_size=1)
    assert [g.text for g in batched] == [g.text for g in one_by_one] == [g.text for g in batched_one]
    assert all(g.n_tokens == 12 and g.finish == "length" for g in batched if g.finish == "length")
    reversed_out = tiny.generate(PROMPTS[::-1], sampling, batch_size=4)
    assert [g.text for g in reversed_out] == [g.text for g in batched][::-1]


def test_progress_counts_prompts(tiny):
    seen: list[int] = []
    tiny.generate(PROMPTS, Sampling(max_new_tokens=2), batch_size=4, progress=seen.append)
    assert seen == [4, 2]


def test_stop_strings_truncate_and_end_generation(tiny):
    free = tiny.generate([PROMPTS[0]], Sampling(max_new_tokens=24))[0]
    # Stop on a piece of what the model writes anyway; the text must end right before it.
    stop = free.text[6:9]
    assert len(stop) == 3
    stopped = tiny.generate([PROMPTS[0]], Sampling(max_new_tokens=24, stop=(stop,)))[0]
    assert stopped.text == free.text[:free.text.index(stop)]
    assert stopped.finish == "stop" and stopped.n_tokens < free.n_tokens


def test_sampling_is_deterministic_for_a_seed(tiny):
    first = tiny.generate(PROMPTS, Sampling(max_new_tokens=16, temperature=1.0, seed=7), batch_size=3)
    again = tiny.generate(PROMPTS, Sampling(max_new_tokens=16, temperature=1.0, seed=7), batch_size=3)
    other = tiny.generate(PROMPTS, Sampling(max_new_tokens=16, temperature=1.0, seed=8), batch_size=3)
    assert [g.text for g in first] == [g.text for g in again]
    assert [g.text for g in first] != [g.text for g in other]
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    tiny.generate(PROMPTS[:1], Sampling(max_new_tokens=4, temperature=1.0))
    assert torch.rand(1) == expected  # the caller's random stream is left alone


def test_loglikelihood_matches_a_hand_computed_forward_pass(tiny):
    context, continuation = "Question: What is the capital of France?\nAnswer:", " Paris is the capital."
    tokenizer = tiny.tokenizer
    context_ids = tokenizer(context)["input_ids"]
    whole = tokenizer(context + continuation)["input_ids"]
    assert whole[:len(context_ids)] == context_ids
    with torch.no_grad():
        logits = tiny.model(torch.tensor([whole])).logits[0]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    expected = sum(logprobs[t - 1, whole[t]].item() for t in range(len(context_ids), len(whole)))
    assert tiny.loglikelihood([(context, continuation)])[0] == pytest.approx(expected, abs=1e-4)


def test_loglikelihood_is_batch_size_invariant(tiny):
    pairs = [(p, " the answer is yes") for p in PROMPTS] + [("", "Hello there"), ("Water ", "boils")]
    single = tiny.loglikelihood(pairs, batch_size=1)
    batched = tiny.loglikelihood(pairs, batch_size=5)
    assert batched == pytest.approx(single, abs=1e-4)
    assert all(v < 0 for v in single)


def test_continuations_of_one_context_score_the_same_on_one_run_of_it(tiny, tmp_path):
    """Multiple choice: the shared context is run once and its cache reused; every sum equals the one-row-each
    path, for one-token and longer answers, odd batch sizes, contexts with a trailing space, and an adapter."""
    context = "Q: What is the tallest mountain on Earth?\nA:"
    answers = [" Everest", " Mount Everest in the Himalayas", " K2", " It is Mauna Kea, measured from its base",
               "!"]
    pairs = [(context, a) for a in answers] + [("Water boils at ", a) for a in ("100 C", "90 C at altitude")]
    pairs += [("A lone context", " with one answer")]
    adapter = tmp_path / "adapter"
    train_lora(tiny, PAIRS, adapter, epochs=3, learning_rate=1e-2, rank=4, batch_size=4, max_seq_len=64, seed=0)
    for chosen_adapter in (None, adapter):
        tiny.share_contexts = False
        try:
            alone = tiny.loglikelihood(pairs, chosen_adapter, batch_size=3)
        finally:
            tiny.share_contexts = True
        for batch_size in (1, 2, 8):
            shared = tiny.loglikelihood(pairs, chosen_adapter, batch_size=batch_size)
            assert shared == pytest.approx(alone, abs=1e-4)


def test_train_lora_learns_masks_prompts_and_round_trips_the_adapter(tiny, tmp_path):
    base_fingerprint = tiny.fingerprint()
    base_ll = tiny.loglikelihood(PAIRS)
    adapter = tmp_path / "adapter"
    result = train_lora(tiny, PAIRS, adapter, epochs=30, learning_rate=1e-2, rank=8, batch_size=4,
                             max_seq_len=64, seed=0)
    assert result.steps == 30 and len(result.losses) == 30
    assert result.losses[-1] < 0.5 * result.losses[0]
    completion_tokens = sum(len(tiny.tokenizer(c, add_special_tokens=False)["input_ids"]) for _p, c in PAIRS)
    assert result.tokens_trained == 30 * completion_tokens
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging dirs left behind

    # The adapter is named per call: no call depends on what the previous one loaded.
    trained_ll = tiny.loglikelihood(PAIRS, adapter)
    trained_fingerprint = tiny.fingerprint(adapter)
    assert sum(trained_ll) > sum(base_ll) and trained_fingerprint != base_fingerprint
    assert tiny.loglikelihood(PAIRS) == pytest.approx(base_ll, abs=1e-5)
    assert tiny.fingerprint() == base_fingerprint
    assert tiny.loglikelihood(PAIRS, adapter) == pytest.approx(trained_ll, abs=1e-5)
    assert tiny.fingerprint(adapter) == trained_fingerprint
    assert tiny.loglikelihood(PAIRS, adapter) == pytest.approx(trained_ll, abs=1e-5)  # same again: no stacking

    # Continuing from the adapter starts where it left off, and max_steps caps the run.
    more = train_lora(tiny, PAIRS, tmp_path / "adapter2", epochs=30, learning_rate=1e-2, rank=8, batch_size=2,
                           max_seq_len=64, seed=1, init_adapter=tmp_path / "adapter", max_steps=3)
    assert more.steps == 3 and more.losses[0] < 0.5 * result.losses[0]
    assert tiny.loglikelihood(PAIRS) == pytest.approx(base_ll, abs=1e-5)


def test_fingerprint_separates_dtypes_devices_and_engines(tmp_path):
    """A bf16 run must never be served an fp32 run's cached generations: the cache key differs."""
    from harness.generation import generation_key

    directory = str(make_tiny_model(tmp_path / "m"))
    fp32, bf16 = load_backend(directory), load_backend(directory, dtype=torch.bfloat16)
    assert fp32.dtype == "float32" and bf16.dtype == "bfloat16"
    assert fp32.fingerprint() != bf16.fingerprint()
    sampling = Sampling(max_new_tokens=4)
    assert generation_key(fp32.fingerprint(), "Hello", sampling) != generation_key(bf16.fingerprint(), "Hello", sampling)
    assert fp32.fingerprint() == load_backend(directory).fingerprint()  # stable across loads
    assert fp32.settings()["device"] == "cpu" and fp32.settings()["dtype"] == "float32"


def test_training_truncates_to_max_seq_len(tiny, tmp_path):
    prompt_len = len(tiny.encode(PAIRS[0][0]))
    result = train_lora(tiny, PAIRS[:1], tmp_path / "a", epochs=1, learning_rate=1e-3, rank=4, batch_size=1,
                             max_seq_len=prompt_len + 2, seed=0)
    assert result.tokens_trained == 2
    with pytest.raises(HarnessError, match="max_seq_len"):
        train_lora(tiny, PAIRS[:1], tmp_path / "b", epochs=1, learning_rate=1e-3, rank=4, batch_size=1,
                   max_seq_len=prompt_len, seed=0)


def test_chat_model_trains_on_the_end_of_turn_and_generates(tiny_chat, tmp_path):
    pairs = [tiny_chat.prompt_format.training_pair("Hi?", "Hello.")]
    result = train_lora(tiny_chat, pairs, tmp_path / "a", epochs=40, learning_rate=2e-2, rank=4, batch_size=1,
                                  max_seq_len=64, seed=0)
    # The tiny model's frozen random LM head bounds its logits, so the loss cannot approach zero; a large
    # relative drop plus the exact greedy answer show the end-of-turn tokens were learned.
    assert result.losses[-1] < 0.25 * result.losses[0]
    generation = tiny_chat.generate([pairs[0][0]], Sampling(max_new_tokens=16), tmp_path / "a")[0]
    assert generation.text == "Hello." and generation.finish == "stop"


def test_check_training_fits_rejects_an_absurd_batch(tiny):
    tiny.check_training_fits(4, 64)
    with pytest.raises(HarnessError, match="lower"):
        tiny.check_training_fits(1_000_000, 4096)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(EMBEDDED_MODELS))
def test_embedded_model_converts_once_then_loads_from_the_cache(name):
    spec = resolve_model(name)
    assert spec.prompt_format == EMBEDDED_MODELS[name].prompt_format and spec.sha256
    model = HFModel(spec)
    prompt = model.prompt_format.question("What is the capital of France?")
    generation = model.generate([prompt], Sampling(max_new_tokens=16))[0]
    assert generation.n_tokens > 0 and generation.text.strip()
    if spec.prompt_format == "chat":
        assert model.tokenizer.chat_template and model.tokenizer.eos_token

    started = time.perf_counter()
    again = HFModel(resolve_model(name))
    assert time.perf_counter() - started < 15  # a second load reads the safetensors cache, not the GGUF
    assert (again.spec.path / MARKER).exists() and list(Path(again.spec.path).glob("*.safetensors"))
    assert again.generate([prompt], Sampling(max_new_tokens=16))[0].text == generation.text
