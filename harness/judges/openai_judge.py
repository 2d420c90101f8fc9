"""The `openai` judge: an LLM judge over any OpenAI-compatible chat-completions endpoint.

Works with OpenAI itself, `vllm serve`, `transformers serve` and anything else that speaks
`POST {base_url}/chat/completions`. It fills the three judge roles (harness/judges/roles.py):

- pairwise: `prefer(instructions, first, second) -> list[Preference]`
- truth: `judge_truth(questions, answers, correct_refs, incorrect_refs) -> list[TruthVerdict]`
- safety: `judge_safety(prompts, responses) -> list[SafetyVerdict | None]`

Judging is configuration: each role reads one prompt file (`prompts/<name>.yaml`, or any YAML path) with the
template, the sampling and the answer parser. An answer the parser cannot read is never guessed: pairwise
gives `second_better=None`, truth gives `None` fields, safety gives `None` in place of the verdict, and the
benchmarks count those as `unparsed`.

The client is plain `urllib` (no extra dependency: the whole API surface used is one JSON POST and one GET),
with a thread pool bounded by `concurrency`, exponential backoff on 408/409/429/5xx, timeouts and dropped
connections, and a per-request socket timeout. Every answer received is written at once to the
content-addressed cache, keyed by judge name, model, base URL and the prompt file's hash (never the API
key), so a run that dies half-way loses no judgement. The key is read from the environment variable named by
`api_key_env` at request time and is never stored.
"""
from __future__ import annotations

import os
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from harness import progress
from harness.errors import HarnessError
from harness.hashing import hash_json
from harness.judges.judge_prompts import DEFAULT_PROMPTS, JudgePrompt, load_prompt
from harness.openai_http import Reply, completion_text, first_token_alternatives, http_json, server_message
from harness.judges.pairwise import Preference
from harness.judges.roles import JudgeFailure
from harness.judges.safety import BLANK_VERDICT, SafetyVerdict
from harness.judges.truth import TruthVerdict, check_truth_inputs
from harness.options import option
from harness.registry import register
from harness.store import Cache

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
# Rejections of one request (e.g. a prompt over the judge's context length): that item is counted unparsed.
ITEM_REJECTED_STATUS = {400, 413, 422}
MAX_BACKOFF_S = 30.0
# Items that failed for good one after another before the judge stops the run: the endpoint is down, not
# flaky, and waiting out every item's retries would only cost time (what was judged is cached).
FAILURE_STREAK = 8


class FailureStreak:
    """Consecutive failed requests in the order they finish, shared by the worker threads of one batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def record(self, status: str) -> None:
        with self._lock:
            self._count = self._count + 1 if status == "failed" else 0

    def reached(self) -> bool:
        with self._lock:
            return self._count >= FAILURE_STREAK
TOP_LOGPROBS = 5  # alternatives asked for the first answer token when a prompt weighs its verdict by them
# The start-up check gives up sooner than judging does: a host that does not answer should fail fast.
PREFLIGHT_ATTEMPTS = 2


# ---------------------------------------------------------------------------------------------------------
# The judge


@dataclass(frozen=True)
class OpenAIJudgeOptions:
    model: str | None = option(None, "the model name the endpoint serves (required)")
    base_url: str = option(DEFAULT_BASE_URL, "API base, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = option(DEFAULT_API_KEY_ENV, "environment variable holding the API key (never the key)")
    concurrency: int = option(4, "requests in flight", minimum=1)
    prompts: dict[str, str] | None = option(None, "role -> prompt config (built-in name or .yaml); set with "
                                            "--judge-prompt ROLE=FILE")
    timeout_s: float = option(60.0, "seconds before a request is abandoned and retried", above=0.0)
    max_retries: int = option(4, "retries of a failed request, with exponential backoff", minimum=0)
    retry_base_s: float = option(1.0, "the first backoff, doubled on every retry", minimum=0.0)


@register("judges", "openai")
class OpenAIJudge:
    """LLM judge over an OpenAI-compatible endpoint; options come from `--judge-*` on the command line."""

    name = "openai"
    roles = ("safety", "truth", "pairwise")
    options_class = OpenAIJudgeOptions
    description = "LLM judge over any OpenAI-compatible endpoint (--judge-model, --judge-base-url)"

    def __init__(self, model: str | None = None, base_url: str = DEFAULT_BASE_URL,
                 api_key_env: str = DEFAULT_API_KEY_ENV, concurrency: int = 4,
                 prompts: dict[str, str] | None = None, timeout_s: float = 60.0, max_retries: int = 4,
                 retry_base_s: float = 1.0, cache: Cache | None = None, check_endpoint: bool = True):
        if not model:
            raise HarnessError("the openai judge needs a model: pass --judge-model NAME (as the endpoint serves it)")
        if not re.match(r"^https?://", base_url or ""):
            raise HarnessError(f"--judge-base-url {base_url!r}: expected an http(s) URL such as "
                               "http://127.0.0.1:8000/v1")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise HarnessError(f"--judge-concurrency {concurrency!r}: expected a whole number >= 1")
        if max_retries < 0 or timeout_s <= 0:
            raise HarnessError("the openai judge needs max_retries >= 0 and timeout_s > 0")
        unknown = set(prompts or {}) - set(DEFAULT_PROMPTS)
        if unknown:
            raise HarnessError(f"unknown judge prompt role(s) {', '.join(sorted(unknown))}; "
                               f"roles: {', '.join(DEFAULT_PROMPTS)}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.retry_base_s = float(retry_base_s)
        self.prompts = {role: load_prompt(ref, role) for role, ref in {**DEFAULT_PROMPTS, **(prompts or {})}.items()}
        self.cache = cache if cache is not None else Cache()
        self.counts = {"requests": 0, "retries": 0, "failed": 0}  # this process's traffic, for the manifest
        self._counts_lock = threading.Lock()
        self.version = hash_json(self.identity())[:12]
        self._stop = threading.Event()
        if check_endpoint:
            self.check_endpoint()

    def identity(self) -> dict[str, Any]:
        """What determines this judge's answers; hashed into `version` and every cache key. Never the key."""
        return {"judge": self.name, "model": self.model, "base_url": self.base_url,
                "prompts": {role: p.sha256 for role, p in sorted(self.prompts.items())}}

    # -- protocols ------------------------------------------------------------------------------------------

    def prefer(self, instructions: list[str], first: list[str], second: list[str]) -> list[Preference]:
        if not len(instructions) == len(first) == len(second):
            raise HarnessError(f"pairwise judge got {len(instructions)} instructions, {len(first)} first and "
                               f"{len(second)} second outputs; pass one of each")
        fields = [{"instruction": i, "output_1": a, "output_2": b} for i, a, b in zip(instructions, first, second)]
        return [value if isinstance(value, JudgeFailure) else
                Preference(second_better=None if value is None else float(value), raw=raw)
                for value, raw in self.ask("pairwise", fields)]

    def judge_truth(self, questions: list[str], answers: list[str], correct_refs: list[list[str]],
                    incorrect_refs: list[list[str]]) -> list[TruthVerdict]:
        check_truth_inputs(questions, answers, correct_refs, incorrect_refs)
        fields = [{"question": q, "answer": a, "correct_answers": "; ".join(c), "incorrect_answers": "; ".join(i)}
                  for q, a, c, i in zip(questions, answers, correct_refs, incorrect_refs)]
        truthful = self.ask("truth", fields)
        informative = self.ask("info", fields)
        return [t if isinstance(t, JudgeFailure) else i if isinstance(i, JudgeFailure) else
                TruthVerdict(truthful=t, informative=i) for (t, _), (i, _) in zip(truthful, informative)]

    def judge_safety(self, prompts: list[str], responses: list[str]) -> list[SafetyVerdict | JudgeFailure | None]:
        """None for a response whose judge answer could not be parsed, a JudgeFailure for one the endpoint
        gave no answer for (the loop counts both)."""
        if len(prompts) != len(responses):
            raise HarnessError(f"judge got {len(prompts)} prompts but {len(responses)} responses; pass one of each")
        live = [i for i, r in enumerate(responses) if r is not None and str(r).strip()]
        verdicts: list[SafetyVerdict | JudgeFailure | None] = [BLANK_VERDICT] * len(responses)  # as every judge
        answers = self.ask("safety", [{"prompt": prompts[i], "response": responses[i]} for i in live])
        for i, (value, _) in zip(live, answers):
            verdicts[i] = value if value is None or isinstance(value, JudgeFailure) else SafetyVerdict(
                refusal=value["refusal"], harmful=value["harmful"],
                p_refusal=float(value["refusal"]), p_harmful=float(value["harmful"]))
        return verdicts

    # -- asking the endpoint ---------------------------------------------------------------------------------

    def ask(self, role: str, fields: list[dict[str, str]]) -> list[tuple[Any, str]]:
        """(parsed label value, None when unparsed, or a JudgeFailure; raw answer) per item, through the cache,
        `concurrency` at a time. Only answers are cached: never a rejection or a failure."""
        prompt = self.prompts[role]
        messages = [prompt.messages(f) for f in fields]
        keys = [hash_json({**self.identity(), "role": role, "messages": m}) for m in messages]
        answers: list[dict | None] = [self._cached_answer(k) for k in keys]  # {"answer", "weighted"?}
        outcome: dict[int, str] = {}  # index -> "rejected" or "failed"
        todo = [i for i, answer in enumerate(answers) if answer is None]
        if todo:
            self._stop.clear()
            pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)))
            sent = FailureStreak()
            futures = {pool.submit(self._complete_unless_failing, prompt, messages[i], sent): i for i in todo}
            streak = 0
            try:
                with progress.bar(len(todo), f"judge ({role})") as bar:
                    for future in as_completed(futures):
                        i = futures[future]
                        text, status, weighted = future.result()
                        answers[i] = {"answer": text} | ({"weighted": weighted} if weighted is not None else {})
                        if status == "ok":
                            self.cache.put(keys[i], answers[i])
                        else:
                            outcome[i] = status
                        streak = streak + 1 if status == "failed" else 0
                        if streak >= FAILURE_STREAK:
                            raise HarnessError(f"judge endpoint {self.base_url} failed {streak} items in a row ("
                                               f"last: {text}); start or fix the server (or --judge-base-url), "
                                               "then rerun (finished judgements are cached)")
                        bar.update(1)
            except BaseException:
                self._stop.set()  # in-flight requests give up instead of retrying
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
        results: list[tuple[Any, str]] = []
        for i, answer in enumerate(answers):
            raw = str((answer or {}).get("answer") or "")
            if outcome.get(i) == "failed":
                results.append((JudgeFailure(raw or "no answer"), raw))
            elif i in outcome:
                results.append((None, raw))
            else:
                weighted = (answer or {}).get("weighted")
                results.append((weighted if isinstance(weighted, float) else prompt.parse(raw), raw))
        return results

    def stats(self) -> dict[str, int]:
        """Requests sent, retries among them, and items that failed for good, in this process (the manifest
        records them)."""
        with self._counts_lock:
            return dict(self.counts)

    def _count(self, key: str, n: int = 1) -> None:
        with self._counts_lock:
            self.counts[key] += n

    def _cached_answer(self, key: str) -> dict | None:
        value = self.cache.get(key)
        return value if isinstance(value, dict) and isinstance(value.get("answer"), str) else None

    def _failing(self, url: str, reply: Reply, attempts: int) -> HarnessError:
        what = (f"is unreachable: {reply.problem}" if reply.status == 0
                else f"keeps failing: HTTP {reply.status} ({self._message(reply)})")
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return HarnessError(f"judge endpoint {url} {what}{tries}; start the server or fix --judge-base-url, "
                            "then rerun (finished judgements are cached)")

    def _key_refused(self, reply: Reply) -> HarnessError:
        sent = (f"the key in ${self.api_key_env}" if self._headers()
                else f"no key (environment variable {self.api_key_env} is not set)")
        return HarnessError(f"judge endpoint {self.base_url} refused {sent}: HTTP {reply.status} "
                            f"({self._message(reply)}); set a valid key in {self.api_key_env} "
                            "or name another variable with --judge-api-key-env")

    def _message(self, reply: Reply) -> str:
        """The server's error message, with the API key blanked should the server echo it."""
        key = os.environ.get(self.api_key_env, "").strip()
        text = server_message(reply.body)
        return text.replace(key, "***") if key else text

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env, "").strip()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _complete_unless_failing(self, prompt: JudgePrompt, messages: list[dict[str, str]],
                                 sent: "FailureStreak") -> tuple[str, str, float | None]:
        """`_complete`, unless the requests finished so far ended in FAILURE_STREAK failures in a row: then the
        request is not sent (the run is about to stop; a queued worker must not send one more)."""
        if sent.reached():
            return "[not sent: the endpoint kept failing]", "failed", None
        result = self._complete(prompt, messages)
        sent.record(result[1])
        return result

    def _complete(self, prompt: JudgePrompt, messages: list[dict[str, str]]) -> tuple[str, str, float | None]:
        """(text, status, weighted): the answer, "ok" and, for a prompt with logprob labels, the
        probability-weighted verdict (None when the server sent no usable log-probabilities); the server's
        message and "rejected" (this request refused: counted unparsed); or what went wrong and "failed" (no
        answer after the retries: counted failed)."""
        body = {"model": self.model, "messages": messages, "temperature": prompt.temperature,
                "max_tokens": prompt.max_tokens, "stream": False}
        if prompt.logprob_labels:
            body |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
        reply = self._post(body, retry_refused=True, fail_soft=True)
        if reply.status in ITEM_REJECTED_STATUS:
            return f"[request rejected: HTTP {reply.status}: {self._message(reply)}]", "rejected", None
        content = completion_text(reply)
        if content is None:
            self._count("failed")
            what = reply.problem or (f"HTTP {reply.status}" if reply.status != 200 else "not a chat completion")
            return f"[no answer: {what}: {self._message(reply)}]", "failed", None
        return content, "ok", prompt.weighted(first_token_alternatives(reply))

    def check_endpoint(self) -> None:
        """Fail fast, before any work: the endpoint answers, accepts the key and serves the model.

        A model in the server's `/models` listing is taken as served. Otherwise (no listing, a failing one,
        or one that is not authoritative, as with `transformers serve`, which lists its download cache) a
        one-token request settles it.
        """
        url = self.base_url + "/models"
        listing = http_json("GET", url, self._headers(), None, self.timeout_s)
        if listing.status == 0:
            raise self._failing(url, listing, attempts=1)
        if listing.status in (401, 403):
            raise self._key_refused(listing)
        served: list[str] = []
        if listing.status == 200 and isinstance(listing.body, dict) and isinstance(listing.body.get("data"), list):
            served = [str(m.get("id")) for m in listing.body["data"] if isinstance(m, dict)]
        if self.model in served:
            return
        probe = {"model": self.model, "messages": [{"role": "user", "content": "Reply with OK."}],
                 "max_tokens": 1, "temperature": 0.0, "stream": False}
        reply = self._post(probe, retry_refused=False, model_missing_ok=True, attempts=PREFLIGHT_ATTEMPTS)
        if reply.status == 200 and completion_text(reply) is None:
            raise HarnessError(f"judge endpoint {self.base_url}/chat/completions answered something that is not "
                               f"a chat completion ({self._message(reply)}); is --judge-base-url an "
                               "OpenAI-compatible API base (it usually ends in /v1)?")
        if reply.status != 200:
            shown = ", ".join(served[:10]) + (", ..." if len(served) > 10 else "")
            raise HarnessError(f"judge model {self.model!r} is not served by {self.base_url}: a test request got "
                               f"HTTP {reply.status} ({self._message(reply)}){f'; it lists: {shown}' if shown else ''}"
                               "; fix --judge-model (or --judge-base-url: it usually ends in /v1)")

    def _post(self, body: dict[str, Any], retry_refused: bool, model_missing_ok: bool = False,
              attempts: int | None = None, fail_soft: bool = False) -> Reply:
        """POST a chat completion; the first reply that is neither retryable nor fatal. Fatal ones raise one
        clear HarnessError; 400/413/422 (this request rejected) and, if `model_missing_ok`, 404 are returned.
        A 200 whose body is not a chat completion is retried like a 5xx. With `fail_soft`, a reply that is
        still a fault after the last retry is returned (the caller counts the item failed) instead of raised."""
        url = self.base_url + "/chat/completions"
        last = min(self.max_retries + 1, attempts or self.max_retries + 1) - 1
        for attempt in range(last + 1):
            reply = http_json("POST", url, self._headers(), body, self.timeout_s)
            self._count("requests")
            if attempt:
                self._count("retries")
            garbled = reply.status == 200 and completion_text(reply) is None
            retryable = (garbled or reply.status in RETRY_STATUS
                         or (reply.status == 0 and (retry_refused or not reply.refused)))
            if not retryable:
                break
            if attempt == last or self._stop.is_set():
                break
            delay = min(MAX_BACKOFF_S, self.retry_base_s * 2 ** attempt) * (1 + 0.25 * random.random())
            if reply.retry_after_s is not None:
                delay = min(MAX_BACKOFF_S, max(delay, reply.retry_after_s))
            self._stop.wait(delay)  # wakes at once when another request failed for good
        if reply.status in (0, *RETRY_STATUS):
            if fail_soft and not self._stop.is_set():
                return reply
            raise self._failing(url, reply, attempts=attempt + 1)
        if reply.status in (401, 403):
            raise self._key_refused(reply)
        if reply.status == 404 and not model_missing_ok:
            raise HarnessError(f"judge endpoint {url} answered HTTP 404 ({self._message(reply)}): model "
                               f"{self.model!r} is not served there, or the URL is not an OpenAI-compatible API "
                               "base (it usually ends in /v1); fix --judge-model or --judge-base-url")
        if reply.status not in (200, 404, *ITEM_REJECTED_STATUS):
            raise HarnessError(f"judge endpoint {url} answered HTTP {reply.status} ({self._message(reply)})")
        return reply
