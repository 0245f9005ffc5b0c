"""A stand-in for the platform's API on 127.0.0.1: try the load generator without the
platform, and test and benchmark it against a real HTTP server.

`python -m loadgen.stub [--port 0] [--wrong-canary us-7] [--fail-every 50]` prints
`listening on http://127.0.0.1:PORT` and serves until SIGTERM/SIGINT:

- `POST /v1/predict {"entity_id": "us-42"}` -> 200 `{"score": score_of("us-42")}` with
  `X-Region` (us -> us-east, eu -> eu-west, from `X-Residency`) and `X-Model-Digest`;
  an entity given with `--wrong-canary` gets a score 0.25 off (a wrong answer);
- `POST /v2/models/stub/infer` (Open Inference Protocol v2, one BYTES input holding the
  entity id) -> 200 with the output `score`, the same headers;
- `POST /v1/events {"client", "seq", "payload"}` -> 201 `{"ok": true}` with `X-Region`;
- `GET /healthz` -> 200; `GET /stats` -> counts of what it answered;
- `--fail-every N`: every Nth request gets 503 (deterministic), to exercise failures.

A plain asyncio HTTP/1.1 server (keep-alive, Content-Length bodies): fast enough not to be
the bottleneck of a one-core load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MODEL_DIGEST", "REGIONS", "StubApp", "running_stub", "score_of"]

MODEL_DIGEST = "sha256:" + hashlib.sha256(b"gameday stub model").hexdigest()
REGIONS = {"us": "us-east", "eu": "eu-west"}
WRONG_OFFSET = 0.25
OIP_PATH = b"/v2/models/stub/infer"
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 503: "Unavailable"}


def score_of(entity_id: str) -> float:
    """The stub model's score of an entity: a fixed number in [0, 1) (golden files use it)."""
    return int(hashlib.sha256(entity_id.encode()).hexdigest()[:12], 16) / 16**12


@dataclass
class StubApp:
    """The stub's answers, kept apart from the socket code."""

    wrong: frozenset[str] = frozenset()
    fail_every: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"predict": 0, "events": 0, "503": 0})
    requests: int = 0

    def answer(
        self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, extra headers) for one request."""
        self.requests += 1
        residency = headers.get(b"x-residency", b"").decode()
        extra = {"X-Region": REGIONS[residency]} if residency in REGIONS else {}
        if self.fail_every and self.requests % self.fail_every == 0:
            self.counts["503"] += 1
            return 503, {"error": "unavailable (on purpose)"}, extra
        if method == b"GET" and path == b"/healthz":
            return 200, {"ok": True}, {}
        if method == b"GET" and path == b"/stats":
            return 200, dict(self.counts), {}
        if method != b"POST" or path not in (b"/v1/predict", b"/v1/events", OIP_PATH):
            return 404, {"error": "not found"}, {}
        if not extra:
            return 400, {"error": "X-Residency must be us or eu"}, {}
        try:
            data = json.loads(body)
        except ValueError:
            return 400, {"error": "body is not JSON"}, extra
        if path == b"/v1/events":
            if not isinstance(data.get("client"), str) or not isinstance(data.get("seq"), int):
                return 400, {"error": "client and seq required"}, extra
            self.counts["events"] += 1
            return 201, {"ok": True}, extra
        oip = path == OIP_PATH
        if oip:
            inputs = data.get("inputs") if isinstance(data, dict) else None
            first = inputs[0] if isinstance(inputs, list) and inputs else {}
            values = first.get("data") if isinstance(first, dict) else None
            entity = values[0] if isinstance(values, list) and values else None
        else:
            entity = data.get("entity_id")
        if not isinstance(entity, str):
            return 400, {"error": "entity_id required"}, extra
        self.counts["predict"] += 1
        score = score_of(entity) + (WRONG_OFFSET if entity in self.wrong else 0.0)
        answer: dict[str, Any] = {"score": score}
        if oip:
            output = {"name": "score", "shape": [1], "datatype": "FP64", "data": [score]}
            answer = {"model_name": "stub", "outputs": [output]}
        return 200, answer, {**extra, "X-Model-Digest": MODEL_DIGEST}


async def _serve_connection(
    app: StubApp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, path, _ = lines[0].split(b" ", 2)
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                if line:
                    key, _, value = line.partition(b":")
                    headers[key.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            body = await reader.readexactly(length) if length else b""
            status, payload, extra = app.answer(method, path.split(b"?", 1)[0], headers, body)
            content = json.dumps(payload).encode()
            head_out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
            head_out += [f"{k}: {v}" for k, v in extra.items()]
            head_out += ["Content-Type: application/json", f"Content-Length: {len(content)}"]
            writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode() + content)
            if headers.get(b"connection", b"").lower() == b"close":
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _serve(app: StubApp, host: str, port: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _serve_connection(app, r, w), host, port, backlog=1024
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadgen.stub", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--wrong-canary", action="append", default=[], metavar="ENTITY")
    parser.add_argument("--fail-every", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    app = StubApp(wrong=frozenset(args.wrong_canary), fail_every=args.fail_every)
    asyncio.run(_serve(app, args.host, args.port))
    return 0


@contextlib.contextmanager
def running_stub(*args: str, timeout_s: float = 10.0) -> Iterator[str]:
    """Run the stub in a subprocess for the duration of the block; yields its base URL.
    The process is always stopped and reaped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadgen.stub", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = ""
        while time.monotonic() < deadline and not line.startswith("listening on "):
            ready, _, _ = select.select(
                [proc.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            if not ready:
                break
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        if not line.startswith("listening on "):
            raise RuntimeError(f"stub server did not start (exit code {proc.poll()})")
        yield line.split("listening on ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
