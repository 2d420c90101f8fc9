"""The `hf` backend: transformers on CPU or GPU, LoRA adapters through peft (see harness/models/backend.py).

Batches are always LEFT-padded with explicit position ids, for generation and for scoring alike: the
tokens being scored (a continuation, or a training completion) then sit at the right end of every row,
so the LM head only has to run over the last few positions (`logits_to_keep`). With Gemma's 262k-word
vocabulary the LM head costs more than the rest of the network, so this roughly halves training time.
"""
from __future__ import annotations

import math
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from transformers import (AutoModelForCausalLM, AutoTokenizer, GenerationConfig, StoppingCriteria,
                          StoppingCriteriaList)

from harness.errors import HarnessError
from harness.progress import no_loading_bars
from harness.hashing import hash_json
from harness.models.backend import Generation, Progress, cut_at_stops
from harness.models.embedded import ModelSpec, resolve_model
from harness.models.hf_training import TrainingSupport, _seeded
from harness.models.shared_context import shared_context_loglikelihoods
from harness.models.identity import AdapterHashes, weights_id
from harness.models.tokenization import Tokenization
from harness.types import Sampling

# peft calls a transformers method that transformers deprecates; the warning says nothing to our users.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class _StopStrings(StoppingCriteria):
    """Marks each row done once its generated text contains a stop string; remembers when."""

    def __init__(self, tokenizer, stops: Sequence[str], prompt_len: int):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_len = prompt_len
        # Decoding only the tail suffices: each token holds at least one character (byte tokens aside).
        self.window = max((len(s) for s in self.stops), default=0) + 8
        self.stopped_at: dict[int, int] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if not self.stops:
            return done
        length = input_ids.shape[1]
        for row in range(input_ids.shape[0]):
            if row not in self.stopped_at:
                tail = input_ids[row, max(self.prompt_len, length - self.window):]
                text = self.tokenizer.decode(tail, skip_special_tokens=True)
                if any(stop in text for stop in self.stops):
                    self.stopped_at[row] = length - self.prompt_len
            done[row] = row in self.stopped_at
        return done



def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class HFModel(TrainingSupport):
    """A causal LM from a local directory (see `resolve_model`). Each call names its LoRA adapter (or None);
    the last one used stays loaded, so consecutive calls with the same adapter do not reload it."""

    description = "transformers on CPU or GPU; LoRA adapters via peft"
    share_contexts = True  # multiple-choice continuations of one context are scored on one run of it

    def __init__(self, spec: ModelSpec, device: str | None = None, dtype: torch.dtype | None = None):
        from peft import PeftModel  # noqa: F401  (fail at load time, not mid-run, if peft is missing)

        self.spec = spec
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or default_dtype(self.device)
        try:
            with no_loading_bars():
                self.tokenizer = AutoTokenizer.from_pretrained(spec.path)
                base = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype)
        except (OSError, ValueError, KeyError) as error:
            raise HarnessError(f"model {spec.name} could not be loaded from {spec.path}: "
                               f"{str(error).strip().splitlines()[0]}") from None
        self._base = base.to(self.device).eval()
        self._base.requires_grad_(False)
        self.model: torch.nn.Module = self._base  # the base itself, or a PeftModel wrapping it
        self._adapter_hash: str | None = None  # content hash of the adapter loaded in self.model
        self._adapter_hashes = AdapterHashes()
        self._base_hash: str | None = None
        eos = self._base.generation_config.eos_token_id
        self.tokens = Tokenization(spec, self.tokenizer, [eos] if isinstance(eos, int) else list(eos or []))
        self.prompt_format = self.tokens.prompt_format
        self.pad_id, self.eos_ids = self.tokens.pad_id, self.tokens.eos_ids

    # ----- tokenization (harness/models/tokenization.py, shared with the other backends) -------------

    def encode(self, text: str, special: bool = True) -> list[int]:
        return self.tokens.encode(text, special)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return self.tokens.encode_pair(context, continuation)

    def left_pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row):] = 1
        return ids.to(self.device), mask.to(self.device)

    # ----- generation --------------------------------------------------------------------------------

    def generate(self, prompts: list[str], sampling: Sampling, adapter: Path | None = None, *,
                 batch_size: int = 8, progress: Progress | None = None) -> list[Generation]:
        """One generation per prompt, in input order. Batches group prompts of similar token length."""
        self._use(adapter)
        encoded = [self.encode(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # longest first: OOM shows early
        results: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start:start + max(1, batch_size)]
            for i, generation in zip(chunk, self._generate_batch([encoded[i] for i in chunk], sampling)):
                results[i] = generation
            if progress:
                progress(len(chunk))
        return [r for r in results if r is not None]

    def _generation_config(self, sampling: Sampling) -> GenerationConfig:
        # A fresh config: the model's own defaults (top_k, repetition penalty, ...) must not leak in.
        sample = sampling.temperature > 0
        return GenerationConfig(
            max_new_tokens=sampling.max_new_tokens, do_sample=sample,
            temperature=sampling.temperature if sample else None, top_p=sampling.top_p if sample else None,
            top_k=0 if sample else None, pad_token_id=self.pad_id, eos_token_id=self.eos_ids,
            bos_token_id=self.tokenizer.bos_token_id, use_cache=True,
        )

    def _generate_batch(self, rows: list[list[int]], sampling: Sampling) -> list[Generation]:
        input_ids, attention_mask = self.left_pad(rows)
        prompt_len = input_ids.shape[1]
        stopper = _StopStrings(self.tokenizer, sampling.stop, prompt_len)
        # The seed depends on the batch's content, so the same prompts give the same samples on rerun.
        seed = int(hash_json([sampling.seed, rows])[:8], 16)
        with torch.inference_mode(), _seeded(seed, self.device):
            output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                         generation_config=self._generation_config(sampling),
                                         stopping_criteria=StoppingCriteriaList([stopper]))
        generations = []
        eos = set(self.eos_ids)
        for row, tokens in enumerate(output[:, prompt_len:].tolist()):
            n_tokens = len(tokens)
            hit_eos = next((j for j, t in enumerate(tokens) if t in eos), None)
            if hit_eos is not None:
                n_tokens = hit_eos + 1
            n_tokens = min(n_tokens, stopper.stopped_at.get(row, n_tokens))
            text = self.tokenizer.decode(tokens[:n_tokens], skip_special_tokens=True)
            text, stopped = cut_at_stops(text, sampling.stop)
            stopped = stopped or (hit_eos is not None and hit_eos < n_tokens)
            generations.append(Generation(text, n_tokens, "stop" if stopped else "length"))
        return generations

    # ----- scoring -----------------------------------------------------------------------------------

    def continuation_logprobs(self, model: torch.nn.Module, rows: Sequence[tuple[list[int], int]]) -> torch.Tensor:
        """Log-probs of the last `n` tokens of each row (row = (token ids, n)), concatenated in row order."""
        inputs = [ids[:-1] for ids, _n in rows]  # position t predicts token t + 1
        input_ids, attention_mask = self.left_pad(inputs)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        keep = max(n for _ids, n in rows)
        try:
            logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           logits_to_keep=keep, use_cache=False).logits
        except TypeError:  # an architecture without `logits_to_keep`: all positions, then slice
            logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           use_cache=False).logits
        logits = logits[:, -keep:]
        targets = torch.full((len(rows), keep), -100, dtype=torch.long)
        for i, (ids, n) in enumerate(rows):
            targets[i, keep - n:] = torch.tensor(ids[len(ids) - n:], dtype=torch.long)
        targets = targets.to(self.device)
        scored = targets != -100
        return -F.cross_entropy(logits[scored].float(), targets[scored], reduction="none")

    def loglikelihood(self, pairs: list[tuple[str, str]], adapter: Path | None = None, *,
                      batch_size: int = 8) -> list[float]:
        """Sum of log-probabilities of each continuation given its context. Continuations that share a context
        (multiple choice) are scored on one run of it (harness/models/shared_context.py) unless
        `self.share_contexts` is False."""
        self._use(adapter)
        encoded = [self._encode_pair(context, continuation) for context, continuation in pairs]
        results = [0.0] * len(pairs)
        alone: list[int] = []
        by_context: dict[tuple[int, ...], list[int]] = {}
        for i, (context_ids, continuation_ids) in enumerate(encoded):
            if continuation_ids:
                by_context.setdefault(tuple(context_ids), []).append(i)
        with torch.inference_mode():
            for context_ids, members in by_context.items():
                if len(members) < 2 or not self.share_contexts:
                    alone += members
                    continue
                scores = shared_context_loglikelihoods(self.model, context_ids, [encoded[i][1] for i in members],
                                                       self.pad_id, self.device, batch_size)
                for i, score in zip(members, scores):
                    results[i] = score
            rows = {i: (encoded[i][0] + encoded[i][1], len(encoded[i][1])) for i in alone}
            order = sorted(alone, key=lambda i: -len(rows[i][0]))
            for start in range(0, len(order), max(1, batch_size)):
                chunk = order[start:start + max(1, batch_size)]
                logprobs = self.continuation_logprobs(self.model, [rows[i] for i in chunk]).tolist()
                offset = 0
                for i in chunk:
                    n = rows[i][1]
                    results[i] = float(math.fsum(logprobs[offset:offset + n]))
                    offset += n
        return results

    # ----- adapters ----------------------------------------------------------------------------------

    def adapter_hash(self, path: Path | None) -> str | None:
        """Content hash of an adapter directory (memoised per path and modification time)."""
        return self._adapter_hashes(path)

    def _drop_adapter(self) -> None:
        from peft import PeftModel

        if isinstance(self.model, PeftModel):
            self._base = self.model.unload()  # removes the LoRA layers without merging them
        self.model = self._base
        self._adapter_hash = None

    def _use(self, path: Path | None) -> None:
        """Load the adapter at `path` on the base weights (None: the plain base), unless it already is."""
        from peft import PeftModel

        digest = self.adapter_hash(path)
        if digest == self._adapter_hash and (path is not None or self.model is self._base):
            return
        self._drop_adapter()
        if path is not None:
            self.model = PeftModel.from_pretrained(self._base, Path(path), is_trainable=False).eval()
            self._adapter_hash = digest

    def module(self, adapter: Path | None = None) -> torch.nn.Module:
        """The torch module with `adapter` loaded, for callers that run it themselves (e.g. letter-scoring judges)."""
        self._use(adapter)
        return self.model

    def weights_hash(self) -> str:
        """Identifies the base weights: the source file's hash, the pinned hub revision, or the files' hash."""
        if self._base_hash is None:
            self._base_hash = weights_id(self.spec)
        return self._base_hash

    @property
    def dtype(self) -> str:
        return str(self._base.dtype).removeprefix("torch.")

    def fingerprint(self, adapter: Path | None = None) -> str:
        """Base weights + adapter (by content) + dtype + device kind + engine versions, for cache keys."""
        return hash_json({"base": self.weights_hash(), "adapter": self.adapter_hash(adapter), "dtype": self.dtype,
                          "device": self.device.type, "engine": "transformers",
                          "versions": [version("transformers"), version("torch"), version("peft")]})

    def settings(self) -> dict[str, str]:
        """What the manifest records about this backend."""
        return {"backend": "hf", "engine": f"transformers {version('transformers')}", "torch": version("torch"),
                "dtype": self.dtype, "device": self.device.type}

def load_backend(spec: ModelSpec | str, device: str | None = None, dtype: torch.dtype | None = None) -> HFModel:
    """An HFModel for a ModelSpec or anything `resolve_model` accepts."""
    return HFModel(resolve_model(spec) if isinstance(spec, str) else spec, device=device, dtype=dtype)


__all__ = ["Generation", "HFModel", "load_backend"]
