"""How a model is asked a question: the one place that owns prompt templates and stop strings.

Two formats: `qa` for base (pretrained, unaligned) models, `Question: ...\\nAnswer:` with answers ended by a
blank line; `chat` for models whose tokenizer has a chat template. Aligners, benchmarks and judges build
every answer prompt and training pair through this object, so a model is always asked the way it is
trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from harness.types import Example

QA_STOPS = ("\nQuestion:", "\n\n")


@dataclass(frozen=True)
class PromptFormat:
    kind: str  # "qa" or "chat"
    tokenizer: Any = None  # needed for "chat": its chat template renders the messages
    eos_token: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("qa", "chat"):
            raise ValueError(f"unknown prompt format {self.kind!r}; expected 'qa' or 'chat'")
        if self.kind == "chat" and self.tokenizer is None:
            raise ValueError("the chat prompt format needs a tokenizer with a chat template")

    @property
    def is_chat(self) -> bool:
        return self.kind == "chat"

    @property
    def answer_stops(self) -> tuple[str, ...]:
        """Where an answer ends: a chat model ends its turn itself; a base model starts the next example."""
        return () if self.is_chat else QA_STOPS

    def _chat(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def question(self, question: str) -> str:
        """The prompt after which the model answers `question`."""
        if self.is_chat:
            return self._chat([{"role": "user", "content": question}], add_generation_prompt=True)
        return f"Question: {question}\nAnswer:"

    def training_pair(self, question: str, answer: str) -> tuple[str, str]:
        """(prompt, completion): the completion is the answer plus the marker that ends it.

        qa: " answer\\n\\n" (the blank line is what `answer_stops` stops on, and what separates few-shot
        examples). chat: whatever the template writes after the generation prompt for an assistant turn,
        i.e. the answer and the end-of-turn token(s), with no extra leading space.
        """
        prompt = self.question(question)
        if not self.is_chat:
            return prompt, f" {answer}\n\n"
        full = self._chat([{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                          add_generation_prompt=False)
        if full.startswith(prompt) and answer in full[len(prompt):]:
            return prompt, full[len(prompt):]
        return prompt, answer + self.eos_token

    def with_preamble(self, preamble: str, question: str) -> str:
        """`preamble` before the question: plain text for base models, a system (or user) preamble for chat."""
        if not self.is_chat:
            return f"{preamble}\n\n{self.question(question)}"
        from jinja2.exceptions import TemplateError

        try:
            return self._chat([{"role": "system", "content": preamble}, {"role": "user", "content": question}],
                              add_generation_prompt=True)
        except TemplateError:  # templates without a system role
            return self._chat([{"role": "user", "content": f"{preamble}\n\n{question}"}], add_generation_prompt=True)

    def answer_prompt(self, question: str, examples: Sequence[Example] = ()) -> str:
        """The prompt that asks for an answer to `question`, optionally after example exchanges."""
        if self.is_chat:
            messages: list[dict[str, str]] = []
            for example in examples:
                messages += [{"role": "user", "content": example.question},
                             {"role": "assistant", "content": example.answer}]
            messages.append({"role": "user", "content": question})
            return self._chat(messages, add_generation_prompt=True)
        shots = "".join(p + c for p, c in (self.training_pair(e.question, e.answer) for e in examples))
        return shots + self.question(question)
