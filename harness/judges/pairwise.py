"""Pairwise judges: which of two outputs answers an instruction better.

`Preference` is what every pairwise judge returns (the role's protocol is in harness/judges/roles.py; the
embedded judge here, the `openai` judge elsewhere). A judge always sees the outputs in the order it is given; the benchmark
does the seeded position swap and un-swaps the verdict.

`EmbeddedPairwiseJudge` ("embedded-pairwise") runs on a CPU: the embedded chat model reads a short
comparison prompt and the log-probabilities of its next token being "A" or "B" give the verdict, averaged
over both orders of the two outputs. Its measured agreement with human labels is in docs/alpacaeval.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness import progress
from harness.errors import HarnessError
from harness.hashing import hash_json
from harness.options import option
from harness.store import Cache


@dataclass(frozen=True)
class Preference:
    second_better: float | None  # 0.0 = first output better, 1.0 = second better, 0.5 = tie; None = unparsed
    raw: str = ""                # the judge's raw answer (for the per-sample record)


# --- the embedded pairwise judge ---------------------------------------------------------------------

EMBEDDED_JUDGE_MODEL = "smollm2-135m-instruct"
# Long outputs are cut so that one comparison stays a few hundred tokens: the cost on a CPU grows with
# length, and a 135M model reads little past the opening of a long answer anyway.
MAX_INSTRUCTION_CHARS = 1000
MAX_OUTPUT_CHARS = 1000
CUT_MARK = " [...]"

COMPARISON_PROMPT = (
    "Compare two responses to the same instruction. Decide which response follows the instruction better: "
    "it does exactly what was asked, is correct and helpful, and is not padded with irrelevant text.\n\n"
    "# Instruction\n{instruction}\n\n"
    "# Response A\n{a}\n\n"
    "# Response B\n{b}\n\n"
    "Which response is better? Answer with one letter, A or B."
)


def clip(text: str, limit: int) -> str:
    text = str(text).strip()
    return text if len(text) <= limit else text[:limit].rstrip() + CUT_MARK


@dataclass(frozen=True)
class LetterScore:
    """The judge model's next-token log-probabilities of the two letters after one comparison prompt."""

    logp_a: float
    logp_b: float

    @property
    def p_b(self) -> float:
        """P(B) renormalised over {A, B}."""
        return 1.0 / (1.0 + math.exp(self.logp_a - self.logp_b))


@dataclass(frozen=True)
class EmbeddedPairwiseOptions:
    model: str = option(EMBEDDED_JUDGE_MODEL, "the judge model: embedded name, Hugging Face id or local path")
    batch_size: int = option(8, "comparisons scored per forward pass", minimum=1)
    max_output_chars: int = option(MAX_OUTPUT_CHARS, "each output is clipped to this many characters", minimum=1)
    max_instruction_chars: int = option(MAX_INSTRUCTION_CHARS, "the instruction is clipped to this many "
                                        "characters", minimum=1)


class EmbeddedPairwiseJudge:
    """A small chat model compares two outputs through the log-probabilities of the letters "A" and "B".

    Each pair is shown in both orders; `second_better` is the mean of P(second better) over the two
    orders, so the verdict cannot depend on which output came first. Log-probabilities always give a
    verdict, so nothing is ever unparsed.
    """

    name = "embedded-pairwise"
    roles = ("pairwise",)
    options_class = EmbeddedPairwiseOptions
    description = "smollm2-135m-instruct compares two outputs by P('A') vs P('B'), both orders averaged (CPU)"
    both_orders = True

    def __init__(self, model: str = EMBEDDED_JUDGE_MODEL, backend: Any = None, batch_size: int = 8,
                 max_output_chars: int = MAX_OUTPUT_CHARS, max_instruction_chars: int = MAX_INSTRUCTION_CHARS,
                 cache: Cache | None = None):
        if backend is None:
            from harness.models.loading import load_model

            backend = load_model("hf", model)
        self.backend = backend
        self.batch_size = batch_size
        self.max_output_chars = max_output_chars
        self.max_instruction_chars = max_instruction_chars
        # A chat model answers right after its assistant header; a plain LM after "Answer:" and a space.
        prefix = "" if backend.prompt_format.is_chat else " "
        self.letter_ids = (self._first_token(prefix + "A"), self._first_token(prefix + "B"))
        if self.letter_ids[0] == self.letter_ids[1]:
            raise HarnessError(f"judge model {model}: the letters A and B share a first token; choose another model")
        # bfloat16 on a GPU scores slightly differently from float32 on a CPU: keep their caches apart. (This
        # form predates `Backend.fingerprint`; it is kept so the judge's version, and runs judged by it, stay.)
        weights = hash_json({"base": backend.weights_hash(), "adapter": None})
        self.model_fingerprint = weights if backend.dtype == "float32" else hash_json([weights, backend.dtype])
        self.version = hash_json({"model": self.model_fingerprint, "prompt": COMPARISON_PROMPT,
                                  "letters": self.letter_ids, "limits": [max_instruction_chars, max_output_chars],
                                  "both_orders": self.both_orders})[:12]
        # Letter scores per prompt, in memory and on disk: the swapped order, the single-order variant and
        # reruns (e.g. validating on a subset after the full set) never score a prompt twice.
        self._scores: dict[str, LetterScore] = {}
        self.cache = cache if cache is not None else Cache()

    def _first_token(self, text: str) -> int:
        return int(self.backend.tokenizer(text, add_special_tokens=False)["input_ids"][0])

    def comparison_prompt(self, instruction: str, a: str, b: str) -> str:
        question = COMPARISON_PROMPT.format(instruction=clip(instruction, self.max_instruction_chars),
                                            a=clip(a, self.max_output_chars), b=clip(b, self.max_output_chars))
        return self.backend.prompt_format.question(question)

    def prefer(self, instructions: list[str], first: list[str], second: list[str]) -> list[Preference]:
        if not len(instructions) == len(first) == len(second):
            raise HarnessError(f"pairwise judge got {len(instructions)} instructions, {len(first)} first and "
                               f"{len(second)} second outputs; pass one of each per item")
        forward = [self.comparison_prompt(i, f, s) for i, f, s in zip(instructions, first, second)]
        if not self.both_orders:
            self._score_prompts(forward)
            return [Preference(second_better=self._scores[p].p_b,
                               raw=f"logp(A)={self._scores[p].logp_a:.3f} logp(B)={self._scores[p].logp_b:.3f}")
                    for p in forward]
        swapped = [self.comparison_prompt(i, s, f) for i, f, s in zip(instructions, first, second)]
        self._score_prompts(forward + swapped)
        preferences = []
        for f_prompt, s_prompt in zip(forward, swapped):
            in_order, reversed_order = self._scores[f_prompt], self._scores[s_prompt]
            # In order, "second better" is B; with the outputs swapped it is A.
            second_better = (in_order.p_b + (1.0 - reversed_order.p_b)) / 2.0
            raw = (f"A-first: logp(A)={in_order.logp_a:.3f} logp(B)={in_order.logp_b:.3f}; "
                   f"swapped: logp(A)={reversed_order.logp_a:.3f} logp(B)={reversed_order.logp_b:.3f}")
            preferences.append(Preference(second_better=second_better, raw=raw))
        return preferences

    def _score_prompts(self, prompts: list[str]) -> None:
        import torch

        todo = []
        for prompt in sorted(set(prompts) - set(self._scores)):
            cached = self.cache.get(self._cache_key(prompt))
            if cached is None:
                todo.append(prompt)
            else:
                self._scores[prompt] = LetterScore(*cached)
        backend = self.backend
        encoded = {p: backend.encode(p) for p in todo}
        model = backend.module(None)
        todo.sort(key=lambda p: -len(encoded[p]))  # similar lengths share a batch: less padding
        with progress.bar(len(todo), f"{self.name}: compare") as bar, torch.inference_mode():
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start:start + self.batch_size]
                input_ids, attention_mask = backend.left_pad([encoded[p] for p in chunk])
                position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
                logits = model(input_ids=input_ids, attention_mask=attention_mask,
                                       position_ids=position_ids, logits_to_keep=1, use_cache=False).logits
                logp = torch.log_softmax(logits[:, -1].float(), dim=-1)[:, list(self.letter_ids)].tolist()
                for prompt, (logp_a, logp_b) in zip(chunk, logp):
                    self._scores[prompt] = LetterScore(logp_a, logp_b)
                    self.cache.put(self._cache_key(prompt), [logp_a, logp_b])
                bar.update(len(chunk))

    def _cache_key(self, prompt: str) -> str:
        return hash_json({"pairwise-letters": self.model_fingerprint, "letters": self.letter_ids, "prompt": prompt})


class SingleOrderPairwiseJudge(EmbeddedPairwiseJudge):
    """The same model and prompt, reading each pair in the order given only. Not for benchmarks: it exists
    so that `harness judge validate` can measure the position bias that averaging both orders removes."""

    name = "embedded-pairwise-single"
    description = "embedded-pairwise reading one order only (to measure the position bias averaging removes)"
    both_orders = False
