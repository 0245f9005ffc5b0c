"""The HTTP read-back of the ledger, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.local.describe import REFERENCE_PLATFORM
from infra.platform import parse_platform
from infra.types import write_key
from probes.readback import HttpWriteStore, stores_from_platform
from probes.rpo import StoreUnavailable

PRESENT = frozenset({("w-1", "1"), ("w-1", "2")})
BROKEN = frozenset({("w-1", "9")})
SEEN_HEADERS: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")  # v1/events/<client>/<seq>
        key = (parts[2], parts[3])
        SEEN_HEADERS.append(self.headers.get("X-Residency", ""))
        code = 500 if key in BROKEN else 200 if key in PRESENT else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_200_is_present_and_404_absent(server: str) -> None:
    store = HttpWriteStore(server + "/v1/events/{client}/{seq}", {"X-Residency": "eu"})
    keys = [write_key("w-1", 1), write_key("w-1", 2), write_key("w-1", 3)]
    assert store.present(keys) == {write_key("w-1", 1), write_key("w-1", 2)}
    assert set(SEEN_HEADERS) == {"eu"}
    assert store.describe() == {
        "store": "http read-back",
        "url": server + "/v1/events/{client}/{seq}",
    }


def test_a_5xx_makes_the_read_back_unavailable(server: str) -> None:
    store = HttpWriteStore(server + "/v1/events/{client}/{seq}")
    with pytest.raises(StoreUnavailable, match=r"w-1/9: http 500"):
        store.present([write_key("w-1", 1), write_key("w-1", 9)])


def test_a_dead_server_makes_the_read_back_unavailable() -> None:
    store = HttpWriteStore("http://127.0.0.1:9/v1/events/{client}/{seq}", timeout=0.5)
    with pytest.raises(StoreUnavailable, match="read-back GET"):
        store.present([write_key("w-1", 1)])


def _doc() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(REFERENCE_PLATFORM.read_text()))


def test_stores_from_the_platform_file() -> None:
    doc = _doc()
    doc["writes"]["readback"] = {"http": "/v1/events/{client}/{seq}"}
    stores = stores_from_platform(parse_platform(doc, Path("p.yaml")), ["us", "eu"])
    assert stores is not None
    eu = stores["eu"]
    assert isinstance(eu, HttpWriteStore)
    assert eu.url == "http://10.200.0.2:8080/v1/events/{client}/{seq}"
    assert eu.headers == {"X-Residency": "eu"}


def test_no_read_back_is_none() -> None:
    doc = _doc()
    del doc["writes"]["readback"]
    assert stores_from_platform(parse_platform(doc, Path("p.yaml")), ["us"]) is None
    del doc["writes"]
    assert stores_from_platform(parse_platform(doc, Path("p.yaml")), ["us"]) is None
    # Sentinel read-back without the world's addresses: none either.
    assert stores_from_platform(parse_platform(_doc(), Path("p.yaml")), ["us"], world={}) is None
