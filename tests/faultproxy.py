"""A fault-injecting HTTP proxy on loopback, between the pipeline and a real server.

Each request takes the next action from a script (then ``pass``):

- ``pass``: forward to the upstream server and relay its answer;
- ``status(code, retry_after=None)``: answer ``code`` with an OpenAI-style error body;
- ``hang(seconds)``: say nothing for ``seconds`` (past the client's timeout), then close;
- ``reset``: close the connection with a TCP reset, before any answer;
- ``truncate``: forward, then cut the model's message content in half;
- ``content(text)``: answer a completion whose message content is ``text`` (no upstream call);
- ``delay(seconds)``: wait, then forward.

With ``memo=True`` the proxy answers a request body it has already forwarded with the
upstream's earlier answer. The model is deterministic (temperature 0, fixed seed), so this
only saves CPU: a retry of the same request costs seconds, not another generation.

Everything is bounded: hangs end at their time or when the proxy stops, upstream requests
time out, and no loop runs without a limit.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Action:
    kind: str
    code: int = 0
    seconds: float = 0.0
    text: str = ""
    retry_after: str | None = None


PASS = Action("pass")
RESET = Action("reset")
TRUNCATE = Action("truncate")


def status(code: int, retry_after: str | None = None) -> Action:
    return Action("status", code=code, retry_after=retry_after)


def hang(seconds: float) -> Action:
    return Action("hang", seconds=seconds)


def content(text: str) -> Action:
    return Action("content", text=text)


def delay(seconds: float) -> Action:
    return Action("delay", seconds=seconds)


@dataclass
class Seen:
    """One request the proxy handled."""

    path: str
    action: str
    status: int | None
    authorization: str | None
    at: float = field(default_factory=time.monotonic)


class FaultProxy:
    def __init__(self, upstream: str, *, memo: bool = False, upstream_timeout: float = 300.0) -> None:
        u = urlsplit(upstream)
        assert u.hostname in ("127.0.0.1", "localhost"), "the proxy only forwards to loopback"
        self.upstream_host = u.hostname
        self.upstream_port = u.port or 80
        self.upstream_timeout = upstream_timeout
        self.memo_enabled = memo
        self.memo: dict[tuple[str, bytes], tuple[int, bytes]] = {}
        self.script: deque[Action] = deque()
        self.default = PASS
        self.seen: list[Seen] = []  # on answer (or on giving up)
        self.arrived: list[str] = []  # on arrival: paths of chat completions received so far
        self.upstream_calls = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]  # resets are on purpose
        self.thread = threading.Thread(target=self.server.serve_forever, name="faultproxy", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def plan(self, *actions: Action, default: Action = PASS) -> None:
        with self.lock:
            self.script = deque(actions)
            self.default = default
            self.seen.clear()
            self.arrived.clear()

    def completions(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path.endswith("/chat/completions")]

    # -- internals ---------------------------------------------------------------------

    def _next(self, path: str) -> Action:
        with self.lock:
            if not path.endswith("/chat/completions"):
                return PASS
            self.arrived.append(path)
            return self.script.popleft() if self.script else self.default

    def _record(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)

    def forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        key = (path, body)
        if self.memo_enabled and method == "POST":
            with self.lock:
                hit = self.memo.get(key)
            if hit is not None:
                return hit
        con = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.upstream_timeout)
        try:
            con.request(method, path, body=body or None, headers=headers)
            resp = con.getresponse()
            answer = (resp.status, resp.read())
        finally:
            con.close()
        with self.lock:
            self.upstream_calls += 1
            if self.memo_enabled and method == "POST" and answer[0] == 200:
                self.memo[key] = answer
        return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                auth = self.headers.get("authorization")
                action = proxy._next(self.path)
                if action.kind == "reset":
                    proxy._record(Seen(self.path, "reset", None, auth))
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if action.kind == "hang":
                    proxy._record(Seen(self.path, "hang", None, auth))
                    proxy.stopping.wait(action.seconds)
                    self.close_connection = True
                    return
                if action.kind == "status":
                    payload = json.dumps(
                        {"error": {"message": f"injected {action.code}", "type": "injected", "code": action.code}}
                    ).encode()
                    headers = {"Retry-After": action.retry_after} if action.retry_after else {}
                    proxy._record(Seen(self.path, f"status {action.code}", action.code, auth))
                    self._send(action.code, payload, headers)
                    return
                if action.kind == "content":
                    proxy._record(Seen(self.path, "content", 200, auth))
                    self._send(200, _completion(action.text))
                    return
                if action.kind == "delay":
                    proxy.stopping.wait(action.seconds)
                fwd = {"Content-Type": self.headers.get("content-type") or "application/json"}
                try:
                    code, payload = proxy.forward(method, self.path, body, fwd)
                except OSError as exc:
                    proxy._record(Seen(self.path, f"upstream failed: {exc}", 502, auth))
                    self._send(502, b'{"error": {"message": "upstream failed"}}')
                    return
                if code == 200 and action.kind == "truncate":
                    payload = _truncate(payload)
                proxy._record(Seen(self.path, action.kind, code, auth))
                self._send(code, payload)

            def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                with contextlib.suppress(OSError):  # the client may have given up already
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)

        return Handler


def _truncate(payload: bytes) -> bytes:
    data = json.loads(payload)
    message = data["choices"][0]["message"]
    text = message.get("content") or ""
    message["content"] = text[: len(text) // 2]
    return json.dumps(data).encode()


def _completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "injected",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "injected",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()
