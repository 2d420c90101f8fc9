"""The tokenizer side every backend shares, so all of them tokenize and split prompts the same way.

`Tokenization` loads a model directory's tokenizer (no weights) and owns BOS handling, lm-evaluation-harness's
split of a (context, continuation) pair into tokens, the end-of-sequence ids and the prompt format. The `hf`
backend, the in-process `vllm` backend and the `openai-server` backend all score exactly these token ids, which
is what makes their log-likelihoods comparable.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.errors import HarnessError
from harness.models.embedded import ModelSpec
from harness.models.prompt_format import PromptFormat
from harness.progress import no_loading_bars


def _generation_eos_ids(path: Path) -> list[int]:
    """The eos_token_id(s) of the model's generation_config.json (or config.json), if it names any."""
    for name in ("generation_config.json", "config.json"):
        try:
            ids = json.loads((Path(path) / name).read_text(encoding="utf-8")).get("eos_token_id")
        except (OSError, ValueError, AttributeError):
            continue
        if ids is not None:
            return [ids] if isinstance(ids, int) else [int(i) for i in ids]
    return []


class Tokenization:
    def __init__(self, spec: ModelSpec, tokenizer=None, generation_eos: list[int] | None = None):
        if tokenizer is None:
            from transformers import AutoTokenizer

            try:
                with no_loading_bars():
                    tokenizer = AutoTokenizer.from_pretrained(spec.path)
            except (OSError, ValueError, KeyError) as error:
                raise HarnessError(f"the tokenizer of model {spec.name} could not be loaded from {spec.path}: "
                                   f"{str(error).strip().splitlines()[0]}") from None
        self.tokenizer = tokenizer
        self.prompt_format = PromptFormat(spec.prompt_format, tokenizer if spec.prompt_format == "chat" else None,
                                          tokenizer.eos_token or "")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self.pad_id = int(tokenizer.pad_token_id)
        ids = list(generation_eos if generation_eos is not None else _generation_eos_ids(spec.path))
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        self.eos_ids = sorted(set(int(i) for i in ids))
        if not self.eos_ids:
            raise HarnessError(f"model {spec.name} has no end-of-sequence token; it cannot be used for generation")

    def encode(self, text: str, special: bool = True) -> list[int]:
        """Token ids; special tokens (BOS) are added unless the text already starts with BOS (chat templates)."""
        bos = self.tokenizer.bos_token
        if special and bos and text.startswith(bos):
            special = False
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens the way lm-evaluation-harness splits them.

        Trailing whitespace of the context moves to the continuation; the whole string is encoded and
        split at the context's own token length. Where the tokenizer merges characters across the
        boundary (the whole encoding does not start with the context's encoding), we instead encode
        the continuation separately and append it, so the context is always tokenized exactly as the
        model would see it alone.
        """
        stripped = context.rstrip()
        continuation = context[len(stripped):] + continuation
        context_ids = self.encode(stripped)
        whole = self.encode(stripped + continuation)
        if whole[:len(context_ids)] == context_ids and len(whole) > len(context_ids):
            continuation_ids = whole[len(context_ids):]
        else:
            continuation_ids = self.encode(continuation, special=False)
        if not context_ids:  # nothing to condition on: start from BOS (or EOS), as lm-eval does
            fallback = self.tokenizer.bos_token_id
            context_ids = [fallback if fallback is not None else self.eos_ids[0]]
        return context_ids, continuation_ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)
