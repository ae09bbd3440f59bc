"""A real HTTP relay in front of a JSON-RPC endpoint that counts the methods asked through it."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CountingRelay:
    """Forwards every POST to ``target`` and counts each JSON-RPC method (batches too)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.methods: Counter[str] = Counter()
        self.posts = 0  # HTTP requests (a batch is one)
        self._lock = threading.Lock()

    def note(self, body: bytes) -> None:
        request = json.loads(body)
        with self._lock:
            self.posts += 1
            for call in request if isinstance(request, list) else [request]:
                self.methods[call["method"]] += 1

    def forward(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.target, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())


@contextmanager
def counting_relay(target: str) -> Iterator[tuple[str, CountingRelay]]:
    """Yields the relay's URL and the relay, whose ``methods`` count what clients asked."""
    relay = CountingRelay(target)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            relay.note(body)
            answer = relay.forward(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", relay
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
