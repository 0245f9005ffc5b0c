"""A local HTTP server that fails for a known interval: ground truth for the RTO probes.

It serves the platform's API on 127.0.0.1 like `loadgen.stub` (`POST /v1/predict` -> 200
with a score, `POST /v1/events` -> 201, `X-Region` from `X-Residency`), and counts its
answers the way the router does, as `haproxy_backend_http_responses_total{proxy=
"jur_<residency>", code="2xx"|"5xx"}` on `GET /metrics` (every series present from the
start, as HAProxy exposes them).

`arm(delay, length, residency)` schedules one outage: `delay` seconds after the next API
request arrives, every request of that residency *arriving* in `[t0, t0 + length)` (the
server's own wall clock, `time.time()`) is answered 503; before and after, it is served.
`outage` is that interval once it is fixed, and `answered` logs every API answer since
the arming (arrival time, residency, status), so a test can check the server did what
it was told.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loadgen.stub import MODEL_DIGEST, REGIONS, score_of

__all__ = ["Answered", "OutageServer"]

CODES = ("2xx", "5xx")


@dataclass(frozen=True)
class Answered:
    """One API request as the server saw it."""

    at: float  # arrival: epoch s, when its status was decided and counted
    residency: str
    status: int  # 503 (the outage) or 200 (served; a write is answered 201)


class _Quiet(ThreadingHTTPServer):
    """Connections the load generator drops when it stops are not errors."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class OutageServer:
    """The server's state and its HTTP front end (a thread per connection, keep-alive)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {(r, c): 0 for r in REGIONS for c in CODES}
        self._delay: float | None = None
        self._length = 0.0
        self._residency = ""
        self._outage: tuple[float, float] | None = None
        self.answered: list[Answered] = []
        self._http = _Quiet(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def target(self) -> str:
        """host:port, for a Prometheus scrape config."""
        return f"127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    # ----------------------------------------------------------------- the outage
    def arm(self, delay: float, length: float, residency: str = "us") -> None:
        """Fail `residency` for `length` s, starting `delay` s after the next API request."""
        with self._lock:
            self._delay, self._length, self._residency = delay, length, residency
            self._outage = None
            self.answered = []

    @property
    def outage(self) -> tuple[float, float] | None:
        """`(t0, t0 + length)` on the server's clock, once the first request fixed it."""
        with self._lock:
            return self._outage

    def answer(self, residency: str) -> int:
        """Decide and count the status of one API request arriving now."""
        now = time.time()
        with self._lock:
            if self._outage is None and self._delay is not None:
                t0 = now + self._delay
                self._outage = (t0, t0 + self._length)
            failing = (
                self._outage is not None
                and residency == self._residency
                and self._outage[0] <= now < self._outage[1]
            )
            status = 503 if failing else 200
            if residency in REGIONS:
                self._counts[residency, "5xx" if failing else "2xx"] += 1
            self.answered.append(Answered(now, residency, status))
            return status

    def metrics(self) -> str:
        with self._lock:
            counts = dict(self._counts)
        lines = ["# TYPE haproxy_backend_http_responses_total counter"]
        lines += [
            f'haproxy_backend_http_responses_total{{proxy="jur_{r}",code="{c}"}} {n}'
            for (r, c), n in sorted(counts.items())
        ]
        return "\n".join(lines) + "\n"

    # ----------------------------------------------------------------- HTTP
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Locust's FastHttpUser expects

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, server.metrics().encode(), {"Content-Type": "text/plain"})
                else:
                    self._send(404, b"{}", {"Content-Type": "application/json"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                residency = self.headers.get("X-Residency", "")
                if self.path not in ("/v1/predict", "/v1/events") or residency not in REGIONS:
                    self._send(404, b"{}", {"Content-Type": "application/json"})
                    return
                status = server.answer(residency)
                headers = {"Content-Type": "application/json", "X-Region": REGIONS[residency]}
                payload: dict[str, Any]
                if status != 200:
                    payload = {"error": "unavailable (outage under test)"}
                elif self.path == "/v1/events":
                    status, payload = 201, {"ok": True}
                else:
                    entity = str(json.loads(raw or b"{}").get("entity_id", ""))
                    payload = {"score": score_of(entity)}
                    headers["X-Model-Digest"] = MODEL_DIGEST
                self._send(status, json.dumps(payload).encode(), headers)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        return Handler
