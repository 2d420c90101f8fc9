"""The `hf` backend: transformers on CPU or GPU, LoRA adapters through peft.

Batches are always LEFT-padded with explicit position ids, for generation and for scoring alike: the
tokens being scored (a continuation, or a training completion) then sit at the right end of every row,
so the LM head only has to run over the last few positions (`logits_to_keep`). With Gemma's 262k-word
vocabulary the LM head costs more than the rest of the network, so this roughly halves training time.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import (AutoModelForCausalLM, AutoTokenizer, GenerationConfig, StoppingCriteria,
                          StoppingCriteriaList)

from harness.errors import HarnessError
from harness.progress import no_loading_bars
from harness.hashing import hash_dir, hash_json
from harness.models.embedded import ModelSpec, resolve_model
from harness.types import Sampling

# peft calls a transformers method that transformers deprecates; the warning says nothing to our users.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Generation:
    text: str  # the continuation only, cut before the first stop string
    n_tokens: int  # tokens generated (up to the stop string or EOS, inclusive)
    finish: str  # "stop" (stop string or EOS) or "length"


@dataclass(frozen=True)
class TrainResult:
    losses: list[float]  # mean completion-token loss of each optimizer step
    tokens_trained: int  # completion tokens that carried loss, summed over steps
    steps: int
    wall_s: float
    stopped_at_budget: bool = False  # training ended early because max_tokens was reached


@dataclass(frozen=True)
class SpinResult(TrainResult):
    # Per step: the share of pairs whose real answer gained more log-likelihood ratio than the generated
    # one, and the mean of beta x (ratio of real - ratio of generated).
    reward_accuracy: list[float] = field(default_factory=list)
    reward_margin: list[float] = field(default_factory=list)


class BudgetedBatches:
    """Shuffled batches of row indices: `epochs` passes, at most `max_steps` batches, cut where one more
    row would cross `max_tokens` trained tokens (then `stopped_at_budget` is set and no batch follows)."""

    def __init__(self, token_counts: Sequence[int], batch_size: int, epochs: int, seed: int,
                 max_steps: int | None = None, max_tokens: int | None = None) -> None:
        self.token_counts = list(token_counts)
        self.batch_size = batch_size
        self.steps = epochs * math.ceil(len(self.token_counts) / batch_size)
        if max_steps is not None:
            self.steps = min(self.steps, max_steps)
        self.seed = seed
        self.max_tokens = max_tokens
        self.tokens = 0
        self.stopped_at_budget = False

    def _fitting(self, batch: list[int]) -> list[int]:
        if self.max_tokens is None:
            return batch
        used = self.tokens
        for count, index in enumerate(batch):
            used += self.token_counts[index]
            if used > self.max_tokens:
                self.stopped_at_budget = True
                return batch[:count]
        return batch

    def __iter__(self):
        shuffle = torch.Generator().manual_seed(self.seed)
        taken = 0
        while taken < self.steps:
            order = torch.randperm(len(self.token_counts), generator=shuffle).tolist()
            for start in range(0, len(order), self.batch_size):
                if taken >= self.steps:
                    return
                batch = self._fitting(order[start:start + self.batch_size])
                if not batch:
                    return
                self.tokens += sum(self.token_counts[i] for i in batch)
                taken += 1
                yield batch
                if self.stopped_at_budget:
                    return


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for a block without disturbing anyone else's random stream."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


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


def _cut_at_stops(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stops if s and s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


def _available_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


class HFModel:
    """A causal LM from a local directory (see `resolve_model`), with an optional active LoRA adapter."""

    description = "transformers on CPU or GPU; LoRA adapters via peft"

    def __init__(self, spec: ModelSpec, device: str | None = None):
        from peft import PeftModel  # noqa: F401  (fail at load time, not mid-run, if peft is missing)

        self.spec = spec
        self.prompt_format = spec.prompt_format
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
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
        self._adapter_hash: str | None = None
        self._base_hash: str | None = None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.eos_ids = self._eos_ids()
        if not self.eos_ids:
            raise HarnessError(f"model {spec.name} has no end-of-sequence token; it cannot be used for generation")

    def _eos_ids(self) -> list[int]:
        ids = self._base.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return sorted(set(int(i) for i in ids))

    # ----- prompts -----------------------------------------------------------------------------------

    def format_prompt(self, question: str) -> str:
        if self.prompt_format == "chat":
            return self.tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                      tokenize=False, add_generation_prompt=True)
        return f"Question: {question}\nAnswer:"

    @property
    def answer_stops(self) -> tuple[str, ...]:
        return () if self.prompt_format == "chat" else ("\nQuestion:", "\n\n")

    def format_training_pair(self, question: str, answer: str) -> tuple[str, str]:
        """(prompt, completion): the completion is the answer plus the marker that ends it.

        qa: " answer\\n\\n" (the blank line is what `answer_stops` stops on, and what separates few-shot
        examples). chat: whatever the template writes after the generation prompt for an assistant turn,
        i.e. the answer and the end-of-turn token(s), with no extra leading space.
        """
        prompt = self.format_prompt(question)
        if self.prompt_format != "chat":
            return prompt, f" {answer}\n\n"
        full = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}, {"role": "assistant", "content": answer}], tokenize=False)
        if full.startswith(prompt) and answer in full[len(prompt):]:
            return prompt, full[len(prompt):]
        return prompt, answer + (self.tokenizer.eos_token or "")

    # ----- tokenization ------------------------------------------------------------------------------

    def _encode(self, text: str, special: bool = True) -> list[int]:
        """Token ids; special tokens (BOS) are added unless the text already starts with BOS (chat templates)."""
        bos = self.tokenizer.bos_token
        if special and bos and text.startswith(bos):
            special = False
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens the way lm-evaluation-harness splits them.

        Trailing whitespace of the context moves to the continuation; the whole string is encoded and
        split at the context's own token length. Where the tokenizer merges characters across the
        boundary (the whole encoding does not start with the context's encoding), we instead encode
        the continuation separately and append it, so the context is always tokenized exactly as the
        model would see it alone.
        """
        stripped = context.rstrip()
        continuation = context[len(stripped):] + continuation
        context_ids = self._encode(stripped)
        whole = self._encode(stripped + continuation)
        if whole[:len(context_ids)] == context_ids and len(whole) > len(context_ids):
            continuation_ids = whole[len(context_ids):]
        else:
            continuation_ids = self._encode(continuation, special=False)
        if not context_ids:  # nothing to condition on: start from BOS (or EOS), as lm-eval does
            fallback = self.tokenizer.bos_token_id
            context_ids = [fallback if fallback is not None else self.eos_ids[0]]
        return context_ids, continuation_ids

    def _left_pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row):] = 1
        return ids.to(self.device), mask.to(self.device)

    # ----- generation --------------------------------------------------------------------------------

    def generate(self, prompts: list[str], sampling: Sampling, batch_size: int = 8,
                 progress: Progress | None = None) -> list[Generation]:
        """One generation per prompt, in input order. Batches group prompts of similar token length."""
        encoded = [self._encode(p) for p in prompts]
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
        input_ids, attention_mask = self._left_pad(rows)
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
            text, stopped = _cut_at_stops(text, sampling.stop)
            stopped = stopped or (hit_eos is not None and hit_eos < n_tokens)
            generations.append(Generation(text, n_tokens, "stop" if stopped else "length"))
        return generations

    # ----- scoring -----------------------------------------------------------------------------------

    def _continuation_logprobs(self, model: torch.nn.Module, rows: Sequence[tuple[list[int], int]]) -> torch.Tensor:
        """Log-probs of the last `n` tokens of each row (row = (token ids, n)), concatenated in row order."""
        inputs = [ids[:-1] for ids, _n in rows]  # position t predicts token t + 1
        input_ids, attention_mask = self._left_pad(inputs)
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

    def loglikelihood(self, pairs: list[tuple[str, str]], batch_size: int = 8) -> list[float]:
        """Sum of log-probabilities of each continuation given its context."""
        rows = []
        for context, continuation in pairs:
            context_ids, continuation_ids = self._encode_pair(context, continuation)
            rows.append((context_ids + continuation_ids, len(continuation_ids)))
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        results = [0.0] * len(rows)
        with torch.inference_mode():
            for start in range(0, len(order), max(1, batch_size)):
                chunk = [i for i in order[start:start + max(1, batch_size)] if rows[i][1] > 0]
                if not chunk:
                    continue
                logprobs = self._continuation_logprobs(self.model, [rows[i] for i in chunk]).tolist()
                offset = 0
                for i in chunk:
                    n = rows[i][1]
                    results[i] = float(math.fsum(logprobs[offset:offset + n]))
                    offset += n
        return results

    # ----- adapters ----------------------------------------------------------------------------------

    def _drop_adapter(self) -> None:
        from peft import PeftModel

        if isinstance(self.model, PeftModel):
            self._base = self.model.unload()  # removes the LoRA layers without merging them
        self.model = self._base
        self._adapter_hash = None

    def set_adapter(self, path: Path | None) -> None:
        """Activate the LoRA adapter saved at `path` on the base weights, or none (plain base model)."""
        from peft import PeftModel

        if path is None:
            self._drop_adapter()
            return
        path = Path(path)
        if not (path / "adapter_config.json").exists():
            raise HarnessError(f"{path} holds no LoRA adapter (adapter_config.json is missing)")
        digest = hash_dir(path)
        if digest == self._adapter_hash:
            return
        self._drop_adapter()
        self.model = PeftModel.from_pretrained(self._base, path, is_trainable=False).eval()
        self._adapter_hash = digest

    def fingerprint(self) -> str:
        """Identifies base weights + active adapter (by content), for cache keys."""
        if self._base_hash is None:
            self._base_hash = self._weights_hash()
        return hash_json({"base": self._base_hash, "adapter": self._adapter_hash})

    def _weights_hash(self) -> str:
        if self.spec.sha256:  # converted from a GGUF file we hashed
            return f"{self.spec.source}#{self.spec.sha256}"
        if self.spec.source.startswith("hf:"):  # pinned to the snapshot's commit
            return self.spec.source
        return hash_dir(self.spec.path)

    # ----- training ----------------------------------------------------------------------------------

    def estimate_training_bytes(self, batch_size: int, max_seq_len: int) -> int:
        """Rough peak memory that LoRA training needs on top of the loaded weights."""
        config = self._base.config.get_text_config()
        hidden, layers = config.hidden_size, config.num_hidden_layers
        intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
        heads = config.num_attention_heads
        tokens = batch_size * max_seq_len
        width = self._base.dtype.itemsize
        # Saved activations per token and layer: ~a dozen hidden-sized tensors, a few MLP-sized ones and
        # the attention probabilities; logits (+ log-softmax + gradient) in float32 for every position.
        activations = tokens * layers * (16 * hidden + 4 * intermediate + 2 * heads * max_seq_len) * width
        logits = tokens * config.vocab_size * 4 * 3
        weights = sum(p.numel() * p.element_size() for p in self._base.parameters())
        return int(activations + logits + 0.1 * weights)  # LoRA weights, grads, Adam state: small

    def check_training_fits(self, batch_size: int, max_seq_len: int) -> None:
        needed = self.estimate_training_bytes(batch_size, max_seq_len)
        available = _available_memory_bytes(self.device)
        if needed > available:
            where = "GPU memory" if self.device.type == "cuda" else "RAM"
            raise HarnessError(
                f"training batch {batch_size} x seq {max_seq_len} needs ~{needed / 1e9:.1f} GB but only "
                f"{available / 1e9:.1f} GB of {where} is available; lower --set batch_size=N or "
                f"--set max_seq_len=N"
            )

    def _training_rows(self, pairs: list[tuple[str, str]], max_seq_len: int) -> list[tuple[list[int], int]]:
        """(token ids, number of completion tokens) per pair, cut to max_seq_len from the right.

        Prompt and completion are encoded separately, so the loss mask sits exactly on the completion.
        A pair whose prompt alone fills max_seq_len has nothing to learn from and is dropped.
        """
        rows = []
        for prompt, completion in pairs:
            prompt_ids = self._encode(prompt)
            ids = (prompt_ids + self._encode(completion, special=False))[:max_seq_len]
            n = min(len(ids) - len(prompt_ids), len(ids) - 1)  # the first token has no prediction
            if n > 0:
                rows.append((ids, n))
        return rows

    def _trainable(self, rank: int, seed: int, init_adapter: Path | None) -> torch.nn.Module:
        from peft import LoraConfig, PeftModel, get_peft_model

        self._drop_adapter()  # never stack: start from the plain base every time
        with _seeded(seed, self.device):
            if init_adapter is not None:
                model = PeftModel.from_pretrained(self._base, Path(init_adapter), is_trainable=True)
            else:
                config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, bias="none",
                                    target_modules="all-linear", task_type="CAUSAL_LM")
                model = get_peft_model(self._base, config)
        self.model = model
        return model

    def train_lora(self, pairs: list[tuple[str, str]], out_dir: Path, *, epochs: int, learning_rate: float,
                   rank: int, batch_size: int, max_seq_len: int, seed: int, init_adapter: Path | None = None,
                   max_steps: int | None = None, max_tokens: int | None = None,
                   progress: Progress | None = None) -> TrainResult:
        """LoRA SFT with loss on completion tokens only; saves the adapter to out_dir and activates it.

        Steps = epochs x ceil(len(pairs) / batch_size), capped at max_steps. `init_adapter` continues an
        existing adapter (its own rank applies); otherwise a fresh one (alpha = 2 x rank) on all linear
        projections of attention and MLP. `max_tokens` caps the completion tokens trained on: a batch that
        would cross it keeps only the rows that fit, and training stops there (`stopped_at_budget`), so
        the cap is never exceeded. Even with no step taken, an adapter (the initial one) is saved.
        """
        started = time.perf_counter()
        self.check_training_fits(batch_size, max_seq_len)
        rows = self._training_rows(pairs, max_seq_len)
        if not rows:
            raise HarnessError(f"no training pair has a completion within max_seq_len={max_seq_len}; raise it")
        model = self._trainable(rank, seed, init_adapter)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
        schedule = BudgetedBatches([n for _ids, n in rows], batch_size, epochs, seed, max_steps, max_tokens)
        losses: list[float] = []
        model.train()
        try:
            for batch in schedule:
                logprobs = self._continuation_logprobs(model, [rows[i] for i in batch])
                loss = -logprobs.mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                losses.append(float(loss.detach()))
                if progress:
                    progress(1)
        finally:
            model.eval()
        self._save_adapter(model, Path(out_dir))
        return TrainResult(losses=losses, tokens_trained=schedule.tokens, steps=len(losses),
                           wall_s=time.perf_counter() - started, stopped_at_budget=schedule.stopped_at_budget)

    def _row_logprob_sums(self, model: torch.nn.Module, rows: Sequence[tuple[list[int], int]]) -> torch.Tensor:
        """Summed log-probability of each row's scored tokens, one value per row."""
        logprobs = self._continuation_logprobs(model, rows)
        return torch.stack([chunk.sum() for chunk in logprobs.split([n for _ids, n in rows])])

    def _reference_logprobs(self, pairs: Sequence[tuple[tuple[list[int], int], tuple[list[int], int]]],
                            reference_adapter: Path | None, batch_size: int) -> torch.Tensor:
        """(n, 2) summed log-probs of (real, generated) under the frozen reference model."""
        self.set_adapter(reference_adapter)
        rows = [row for pair in pairs for row in pair]
        sums = []
        with torch.inference_mode():
            for start in range(0, len(rows), max(1, batch_size)):
                sums.append(self._row_logprob_sums(self.model, rows[start:start + max(1, batch_size)]))
        return torch.cat(sums).view(-1, 2).float()

    def train_spin(self, triples: list[tuple[str, str, str]], out_dir: Path, *, beta: float,
                   reference_adapter: Path | None, init_adapter: Path | None, epochs: int, learning_rate: float,
                   rank: int, batch_size: int, max_seq_len: int, seed: int, max_tokens: int | None = None,
                   progress: Progress | None = None) -> SpinResult:
        """Self-play fine-tuning on (prompt, real completion, generated completion) triples.

        The reference (`reference_adapter` on the base, or the plain base) is frozen: its log-probs are
        computed once up front. The policy starts from `init_adapter` (SPIN: the previous iterate, the
        same as the reference) or a fresh LoRA, which equals the base model until it is trained. A step
        takes `batch_size` triples in micro-batches of batch_size // 2 (two rows each, so a forward pass
        is no wider than an SFT step). Tokens trained count the completion tokens of both answers;
        `max_tokens` caps them as in `train_lora`.
        """
        from harness.loop.preference import spin_loss

        started = time.perf_counter()
        self.check_training_fits(batch_size, max_seq_len)
        pairs = []
        for prompt, real, generated in triples:
            rows = self._training_rows([(prompt, real), (prompt, generated)], max_seq_len)
            if len(rows) == 2:
                pairs.append((rows[0], rows[1]))
        if not pairs:
            raise HarnessError(f"no SPIN pair has both answers within max_seq_len={max_seq_len}; raise it")
        reference = self._reference_logprobs(pairs, reference_adapter, batch_size).to(self.device)
        model = self._trainable(rank, seed, init_adapter)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
        counts = [real[1] + generated[1] for real, generated in pairs]
        schedule = BudgetedBatches(counts, batch_size, epochs, seed, max_tokens=max_tokens)
        micro = max(1, batch_size // 2)
        losses: list[float] = []
        accuracy: list[float] = []
        margins: list[float] = []
        model.train()
        try:
            for batch in schedule:
                optimizer.zero_grad(set_to_none=True)
                step_loss = step_accuracy = step_margin = 0.0
                for chunk_start in range(0, len(batch), micro):
                    chunk = batch[chunk_start:chunk_start + micro]
                    policy = self._row_logprob_sums(model, [row for i in chunk for row in pairs[i]]).view(-1, 2)
                    out = spin_loss(policy[:, 0], policy[:, 1], reference[chunk, 0], reference[chunk, 1], beta)
                    share = len(chunk) / len(batch)
                    (out.loss * share).backward()
                    step_loss += float(out.loss.detach()) * share
                    step_accuracy += out.reward_accuracy * share
                    step_margin += out.reward_margin * share
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                losses.append(step_loss)
                accuracy.append(step_accuracy)
                margins.append(step_margin)
                if progress:
                    progress(1)
        finally:
            model.eval()
        self._save_adapter(model, Path(out_dir))
        return SpinResult(losses=losses, tokens_trained=schedule.tokens, steps=len(losses),
                          wall_s=time.perf_counter() - started, stopped_at_budget=schedule.stopped_at_budget,
                          reward_accuracy=accuracy, reward_margin=margins)

    def _save_adapter(self, model: torch.nn.Module, out_dir: Path) -> None:
        """Writes the adapter atomically (a kill never leaves half of one) and records its hash as the active one."""
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
        try:
            with no_loading_bars():
                model.save_pretrained(staging)
            (staging / "README.md").unlink(missing_ok=True)  # peft's model card template: noise in the hash
            if out_dir.exists():
                old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old."))
                os.replace(out_dir, old / "adapter")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._adapter_hash = hash_dir(out_dir)


def load_backend(spec: ModelSpec | str, device: str | None = None) -> HFModel:
    """An HFModel for a ModelSpec or anything `resolve_model` accepts."""
    return HFModel(resolve_model(spec) if isinstance(spec, str) else spec, device=device)


__all__ = ["Generation", "HFModel", "SpinResult", "TrainResult", "load_backend"]
