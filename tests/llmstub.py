"""An OpenAI-compatible chat server on loopback with a fixed latency, for engine tests.

Each answer is valid JSON for the tiny conditions schema of ``tests/realserver.py``: one
condition whose name and evidence are the first words of the chunk's text (so the record is
grounded), or none for a text without words. It counts requests by chunk text, and can hold
every request from the ``hold_from``-th on until ``release()`` -- a test kills a process while
the pipeline waits for an answer, then lets it go on -- or fail each text's first request
with a 503 (``fail_first``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LLMStub:
    def __init__(self, latency: float = 0.05, hold_from: int | None = None, fail_first: bool = False) -> None:
        self.latency = latency
        self.hold_from = hold_from
        #: answer each text's first request with HTTP 503 (a retryable failure)
        self.fail_first = fail_first
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.arrived = 0  # requests received
        self.texts: Counter[str] = Counter()  # requests per chunk text
        self.in_flight = 0
        self.max_in_flight = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                text = body["messages"][-1]["content"] if body.get("messages") else ""
                text = text.split("Text:", 1)[-1].strip()
                with stub.lock:
                    stub.arrived += 1
                    n = stub.arrived
                    stub.texts[text] += 1
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    if stub.hold_from is not None and n >= stub.hold_from:
                        stub.released.wait(120)
                    time.sleep(stub.latency)
                    if stub.fail_first and stub.texts[text] == 1:
                        payload = b'{"error": {"message": "overloaded", "type": "stub", "code": 503}}'
                        self.send_response(503)
                    else:
                        payload = json.dumps(_completion(answer(text))).encode()
                        self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client went away (a killed process)
                    pass
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> LLMStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def answer(text: str) -> dict[str, Any]:
    """One condition quoting the text's first words; the same text gets the same answer."""
    words = re.findall(r"\w[\w-]*", text)
    if not words:
        return {"conditions": []}
    first = re.search(re.escape(words[0]) + r".{0,40}?(?=\s|$)", text, re.S)
    evidence = first.group(0) if first else words[0]
    return {"conditions": [{"name": words[0][:60], "evidence": evidence[:120]}]}


def _completion(content: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "stub",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": json.dumps(content)}}
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
    }
