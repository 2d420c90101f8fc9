"""What harness/train needs from the `hf` backend: a trainable LoRA copy of the model, token rows with their
loss masks, log-probabilities with and without gradients, a memory check, and saving what it learned.
`HFModel` inherits it; inference never calls it."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch

from harness.errors import HarnessError
from harness.hashing import hash_dir
from harness.progress import no_loading_bars


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for a block without disturbing anyone else's random stream."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


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



class TrainingSupport:
    """Mixed into HFModel (which provides _base, model, device, encode, continuation_logprobs, _use and
    _drop_adapter)."""

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

    def training_rows(self, pairs: list[tuple[str, str]], max_seq_len: int) -> list[tuple[list[int], int]]:
        """(token ids, number of completion tokens) per pair, cut to max_seq_len from the right.

        Prompt and completion are encoded separately, so the loss mask sits exactly on the completion.
        A pair whose prompt alone fills max_seq_len has nothing to learn from and is dropped.
        """
        rows = []
        for prompt, completion in pairs:
            prompt_ids = self.encode(prompt)
            ids = (prompt_ids + self.encode(completion, special=False))[:max_seq_len]
            n = min(len(ids) - len(prompt_ids), len(ids) - 1)  # the first token has no prediction
            if n > 0:
                rows.append((ids, n))
        return rows

    def trainable(self, rank: int, seed: int, init_adapter: Path | None) -> torch.nn.Module:
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

    def row_logprob_sums(self, model: torch.nn.Module, rows: Sequence[tuple[list[int], int]]) -> torch.Tensor:
        """Summed log-probability of each row's scored tokens, one value per row."""
        logprobs = self.continuation_logprobs(model, rows)
        return torch.stack([chunk.sum() for chunk in logprobs.split([n for _ids, n in rows])])

    def frozen_row_logprob_sums(self, rows: Sequence[tuple[list[int], int]], adapter: Path | None,
                                batch_size: int) -> torch.Tensor:
        """`row_logprob_sums` under a frozen model (base + `adapter`), without gradients, in batches."""
        self._use(adapter)
        sums = []
        with torch.inference_mode():
            for start in range(0, len(rows), max(1, batch_size)):
                sums.append(self.row_logprob_sums(self.model, rows[start:start + max(1, batch_size)]))
        return torch.cat(sums) if sums else torch.zeros(0)

    def adopt_adapter(self, out_dir: Path) -> None:
        """Records the adapter another process saved from the same weights as this process's model (data-parallel
        training: only the main process writes)."""
        self._adapter_hash = hash_dir(out_dir)

    def save_adapter(self, model: torch.nn.Module, out_dir: Path) -> None:
        """Writes the adapter atomically (a kill never leaves half of one) and records its hash as the active one."""
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
        try:
            with no_loading_bars():
                model.save_pretrained(staging)
            (staging / "README.md").unlink(missing_ok=True)  # peft's model card template: noise in the hash
            if out_dir.exists():
                old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old.", suffix=".tmp"))
                os.replace(out_dir, old / "adapter")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._adapter_hash = hash_dir(out_dir)
