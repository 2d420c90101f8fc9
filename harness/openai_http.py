"""The HTTP side of the `openai` judge and the `openai-server` backend: one JSON request that never raises for
network trouble or error statuses (the caller decides what to retry), and reading a chat-completion reply."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int  # 0 when no HTTP answer came (connection refused, timeout, dropped connection)
    body: Any  # parsed JSON, or the raw text when it is not JSON
    problem: str = ""  # what went wrong, in words, when status is 0
    retry_after_s: float | None = None
    refused: bool = False


def http_json(method: str, url: str, headers: dict[str, str], body: Any | None, timeout_s: float) -> Reply:
    """One HTTP request; never raises for network trouble or error statuses (the caller decides)."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return Reply(response.status, _decode(response.read()))
    except urllib.error.HTTPError as error:
        retry_after = error.headers.get("Retry-After") if error.headers else None
        try:
            retry_s = float(retry_after) if retry_after else None
        except ValueError:
            retry_s = None
        return Reply(error.code, _decode(error.read()), retry_after_s=retry_s)
    except urllib.error.URLError as error:
        reason = error.reason
        refused = isinstance(reason, ConnectionRefusedError)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return Reply(0, None, f"no answer within {timeout_s:g} s")
        return Reply(0, None, "connection refused" if refused else str(reason), refused=refused)
    except (TimeoutError, socket.timeout):
        return Reply(0, None, f"no answer within {timeout_s:g} s")
    except (ConnectionError, OSError) as error:  # reset or dropped mid-answer (http.client.RemoteDisconnected)
        return Reply(0, None, f"{type(error).__name__}: {error}")


def _decode(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def first_token_alternatives(reply: Reply) -> Any:
    """The `top_logprobs` of the answer's first token (OpenAI chat format), or None."""
    try:
        return reply.body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None


def completion_text(reply: Reply) -> str | None:
    """The answer text of a chat-completion reply; None when the body is not one."""
    try:
        content = reply.body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else ""


def server_message(body: Any) -> str:
    """The error message an OpenAI-compatible server put in its reply, on one short line."""
    message: Any = body
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message", body)))
        message = error.get("message", error) if isinstance(error, dict) else error
    text = " ".join(str(message).split())
    return text[:200] + ("..." if len(text) > 200 else "")
