"""A recording stand-in for the Kubernetes API server, on a free 127.0.0.1 port.

It answers the calls the kubernetes driver makes as the API does (objects, Status
errors, strategic-merge PATCH, the exec websocket with the v4 channel protocol) and
records every request. Every body it stores is checked against the official schema of
`SCHEMA_VERSION` with kubernetes-validate --strict; a body that fails is answered 422
and kept in `invalid`, so a test sees it.

It is a contract check, not a cluster: no controller runs, scaling a Deployment does
not change its pods, a NetworkPolicy blocks nothing.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import yaml

SCHEMA_VERSION = "1.32.0"
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_APPS = re.compile(
    r"^/apis/apps/v1/namespaces/([^/]+)/(deployments|statefulsets)/([^/]+)(/scale)?$"
)
_POLICIES = re.compile(
    r"^/apis/networking\.k8s\.io/v1/namespaces/([^/]+)/networkpolicies(?:/([^/]+))?$"
)
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/exec)?$")
_CRDS = re.compile(r"^/apis/apiextensions\.k8s\.io/v1/customresourcedefinitions/([^/]+)$")
_CHAOS = re.compile(
    r"^/apis/chaos-mesh\.org/v1alpha1/namespaces/([^/]+)/networkchaos(?:/([^/]+))?$"
)
_PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json")


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any

    @property
    def line(self) -> str:
        """`METHOD path`, the form the contract tests compare sequences in."""
        return f"{self.method} {self.path}"


@dataclass
class Cluster:
    """The objects the fake API holds, by (resource, namespace, name)."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    execs: list[dict[str, Any]] = field(default_factory=list)

    def add(self, obj: dict[str, Any]) -> None:
        """Store a Deployment, StatefulSet or CRD; workloads get their pods too."""
        kind = obj["kind"]
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        resource = {
            "Deployment": "deployments",
            "StatefulSet": "statefulsets",
            "CustomResourceDefinition": "crds",
            "NetworkPolicy": "networkpolicies",
        }[kind]
        self.objects[(resource, namespace, meta["name"])] = copy.deepcopy(obj)
        if kind in ("Deployment", "StatefulSet"):
            template = obj["spec"]["template"]
            for index in range(int(obj["spec"].get("replicas", 1))):
                name = f"{meta['name']}-{index}"
                self.objects[("pods", namespace, name)] = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": dict(template["metadata"]["labels"]),
                    },
                    "spec": copy.deepcopy(template["spec"]),
                    "status": {"phase": "Running"},
                }

    def of(self, resource: str, namespace: str) -> list[dict[str, Any]]:
        """Every stored object of one resource in one namespace, by name."""
        return [
            obj
            for (res, ns, _), obj in sorted(self.objects.items())
            if res == resource and ns == namespace
        ]

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One stored object, or None."""
        return self.objects.get((resource, namespace, name))


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "reason": reason,
        "message": message,
        "code": code,
    }


def _merge(base: Any, patch: Any) -> Any:
    # The strategic merge of what the driver sends: nested maps merge, the rest replaces.
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = value if value is None else _merge(base.get(key), value)
        return {k: v for k, v in merged.items() if v is not None}
    return copy.deepcopy(patch)


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeKubeAPI:
    """The server: `start()`, `url`, `requests`, `invalid`, `stop()`."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.requests: list[Request] = []
        self.invalid: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL (always loopback)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def lines(self) -> list[str]:
        """Every request so far as `METHOD path`."""
        with self._lock:
            return [r.line for r in self.requests]

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def check(self, obj: dict[str, Any]) -> str | None:
        """The schema error of `obj`, or None when kubernetes-validate accepts it."""
        try:
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            error = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}: {exc.message}"
            with self._lock:
                self.invalid.append(error)
            return error
        return None

    def write_kubeconfig(self, path: Path, contexts: dict[str, str]) -> Path:
        """A kubeconfig whose every context (name -> namespace) points at this server."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "contract-test"}}],
            "contexts": [
                {"name": name, "context": {"cluster": "fake", "user": "tester", "namespace": ns}}
                for name, ns in contexts.items()
            ],
            "current-context": next(iter(contexts)),
        }
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        return path


def _handler(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else None

        def _send(self, code: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            body = self._body() if method in ("POST", "PATCH", "PUT", "DELETE") else None
            request = Request(
                method,
                parts.path,
                parse_qs(parts.query),
                self.headers.get("Content-Type", ""),
                body,
            )
            api.record(request)
            code, answer = self._route(request)
            if code == 101:
                return
            self._send(code, answer)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _route(self, r: Request) -> tuple[int, Any]:
            cluster = api.cluster
            if m := _APPS.match(r.path):
                ns, resource, name, scale = m.groups()
                obj = cluster.get(resource, ns, name)
                if obj is None:
                    return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
                if r.method == "GET" and scale:
                    return 200, {
                        "apiVersion": "autoscaling/v1",
                        "kind": "Scale",
                        "metadata": {"name": name, "namespace": ns},
                        "spec": {"replicas": obj["spec"].get("replicas", 1)},
                        "status": {"replicas": obj["spec"].get("replicas", 1)},
                    }
                if r.method == "PATCH" and not scale:
                    if r.content_type not in _PATCH_TYPES:
                        return 415, _status(415, "UnsupportedMediaType", r.content_type)
                    merged = _merge(obj, r.body)
                    if error := api.check(merged):
                        return 422, _status(422, "Invalid", error)
                    cluster.objects[(resource, ns, name)] = merged
                    return 200, merged
            elif m := _POLICIES.match(r.path):
                ns, name = m.groups()
                if r.method == "POST" and name is None:
                    body = dict(r.body or {})
                    meta = body.setdefault("metadata", {})
                    meta.setdefault("namespace", ns)
                    if error := api.check(body):
                        return 422, _status(422, "Invalid", error)
                    key = ("networkpolicies", ns, meta.get("name", ""))
                    if key in cluster.objects:
                        return 409, _status(409, "AlreadyExists", f"{key[2]} already exists")
                    cluster.objects[key] = body
                    return 201, body
                if r.method == "GET" and name is None:
                    items = cluster.of("networkpolicies", ns)
                    return 200, {
                        "apiVersion": "networking.k8s.io/v1",
                        "kind": "NetworkPolicyList",
                        "metadata": {},
                        "items": items,
                    }
                if r.method == "DELETE" and name:
                    if cluster.objects.pop(("networkpolicies", ns, name), None) is None:
                        return 404, _status(404, "NotFound", f'networkpolicies "{name}" not found')
                    return 200, _status(200, "", "deleted") | {"status": "Success"}
            elif m := _PODS.match(r.path):
                ns, name, exec_ = m.groups()
                if r.method == "GET" and name is None:
                    selector = (r.query.get("labelSelector") or [""])[0]
                    items = [
                        p
                        for p in cluster.of("pods", ns)
                        if _matches(p["metadata"].get("labels", {}), selector)
                    ]
                    return 200, {
                        "apiVersion": "v1",
                        "kind": "PodList",
                        "metadata": {},
                        "items": items,
                    }
                pod = cluster.get("pods", ns, name or "")
                if pod is None:
                    return 404, _status(404, "NotFound", f'pods "{name}" not found')
                if exec_ and r.method == "GET":
                    self._exec(r, pod)
                    return 101, None
                if r.method == "DELETE" and not exec_:
                    del cluster.objects[("pods", ns, name or "")]
                    return 200, pod
            elif m := _CRDS.match(r.path):
                crd = cluster.get("crds", "", m.group(1))
                if crd is None:
                    return 404, _status(
                        404, "NotFound", f'customresourcedefinitions "{m.group(1)}" not found'
                    )
                return 200, crd
            elif m := _CHAOS.match(r.path):
                ns, name = m.groups()
                if cluster.get("crds", "", "networkchaos.chaos-mesh.org") is None:
                    return 404, _status(
                        404, "NotFound", "the server could not find the requested resource"
                    )
                if r.method == "POST":
                    cluster.objects[("networkchaos", ns, r.body["metadata"]["name"])] = r.body
                    return 201, r.body
                if r.method == "DELETE" and name:
                    gone = cluster.objects.pop(("networkchaos", ns, name), None)
                    if gone is None:
                        return 404, _status(404, "NotFound", f'networkchaos "{name}" not found')
                    return 200, gone
            return 405, _status(405, "MethodNotAllowed", f"{r.method} {r.path}")

        def _exec(self, r: Request, pod: dict[str, Any]) -> None:
            key = self.headers.get("Sec-WebSocket-Key", "")
            offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
            accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
            containers = [c["name"] for c in pod["spec"]["containers"]]
            container = (r.query.get("container") or [""])[0]
            api.cluster.execs.append(
                {
                    "pod": pod["metadata"]["name"],
                    "container": container,
                    "command": r.query.get("command", []),
                }
            )
            if "v4.channel.k8s.io" not in offered or container not in containers:
                self._send(400, _status(400, "BadRequest", "exec: protocol or container"))
                return
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
            self.end_headers()
            status = json.dumps({"metadata": {}, "status": "Success"}).encode()
            for channel, payload in ((1, b"damaged\n"), (3, status)):
                self._frame(0x2, bytes([channel]) + payload)
            self._frame(0x8, b"\x03\xe8")
            self.wfile.flush()
            self.close_connection = True

        def _frame(self, opcode: int, payload: bytes) -> None:
            header = bytes([0x80 | opcode])
            if len(payload) < 126:
                header += bytes([len(payload)])
            else:
                header += bytes([126]) + len(payload).to_bytes(2, "big")
            self.wfile.write(header + payload)

    return Handler
