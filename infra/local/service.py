"""The per-region inference service (an ASGI app served by uvicorn).

Endpoints:
- `POST /v1/predict {"entity_id": "us-42"}`: reads the entity's features from the
  region's *local* store replica and scores them; answers carry `X-Region` and
  `X-Model-Digest` (the digest of the model bytes actually loaded).
- `POST /v1/events {"client": "c1", "seq": 1, "payload": {...}}`: writes to the
  jurisdiction's *primary* (found through Sentinel) and answers 201 only after the
  primary acknowledged.
- `POST /v2/models/gameday-reference/infer`: the same prediction in the Open Inference
  Protocol v2 (one BYTES input holding the entity id; output `score`, FP64), with
  `GET /v2/models/gameday-reference` (metadata) and `GET /v2/health/ready`.
- `GET /v1/events/{client}/{seq}`: read a write back from the primary (200 present,
  404 absent): the HTTP read-back of the RPO ledger.
- `GET /healthz`: 200 only when the model passed its digest check and the local store
  answers; 503 with the reasons otherwise.
- `GET /metrics`: Prometheus metrics, including `gameday_replication_lag_seconds`.

The primary's service writes its clock to `gameday:heartbeat` every 100 ms; a replica's
service reads the replicated value to export its lag (the pt-heartbeat technique).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.local import model as modelmod
from infra.types import write_key

HEARTBEAT_KEY = "gameday:heartbeat"
FEATURE_PREFIX = "feat:"
#: The model's name on the Open Inference Protocol v2 routes.
OIP_MODEL = "gameday-reference"
_CLIENT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class ServiceConfig:
    """Everything a region's service needs, written by the supervisor as JSON."""

    region: str
    jurisdiction: str
    host: str
    port: int
    redis_password: str
    sentinels: list[tuple[str, int]]
    model_path: str
    registry: str
    verify_model_digest: bool = True
    verify_features: bool = True
    redis_port: int = 6379
    heartbeat_interval: float = 0.1
    redis_timeout: float = 0.5

    @classmethod
    def from_file(cls, path: Path) -> ServiceConfig:
        raw = json.loads(path.read_text())
        raw["sentinels"] = [(str(h), int(p)) for h, p in raw["sentinels"]]
        return cls(**raw)


class PrimaryConnection(SentinelManagedConnection):
    """A connection to a data group's primary that asks Sentinel where the primary is
    whenever it (re)connects, the reconnect of a retried command included.

    redis-py (8.1; redis/redis-py#3874) reconnects a retried command to the address the
    connection last had. When Sentinel demotes that store (a healed partition: REPLICAOF,
    then CLIENT KILL of its clients), a write caught in flight was retried against the
    demoted store, got READONLY and failed with a 503 ("The previous master is now a
    slave") about 10 s after the heal.
    """

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
        await super().send_packed_command(command, check_health)


@dataclass
class _State:
    config: ServiceConfig
    registry: CollectorRegistry
    model: modelmod.Classifier | None = None
    model_digest: str = ""
    model_error: str = ""
    local: aioredis.Redis | None = None
    primary: aioredis.Redis | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Keys found damaged: the region stays unready until they read back clean.
    corrupt_keys: set[str] = field(default_factory=set)


def create_app(config: ServiceConfig) -> Starlette:
    """Build the ASGI app for one region."""
    registry = CollectorRegistry()
    state = _State(config=config, registry=registry)
    labels = {"region": config.region, "jurisdiction": config.jurisdiction}
    requests = Counter(
        "gameday_service_requests",
        "Requests answered by the inference service.",
        ["region", "jurisdiction", "endpoint", "code"],
        registry=registry,
    )
    latency = Histogram(
        "gameday_service_request_duration_seconds",
        "Time to answer, by endpoint.",
        ["region", "jurisdiction", "endpoint"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        registry=registry,
    )
    ready_gauge = Gauge(
        "gameday_service_ready",
        "1 when /healthz answers ready.",
        ["region", "jurisdiction"],
        registry=registry,
    )
    model_ok = Gauge(
        "gameday_model_loaded",
        "1 when a model is loaded (verified, unless verification is off).",
        ["region", "jurisdiction", "verify"],
        registry=registry,
    )
    lag_gauge = Gauge(
        "gameday_replication_lag_seconds",
        "Age of the primary's heartbeat as seen in this region's store (0 on the primary).",
        ["region", "jurisdiction"],
        registry=registry,
    )

    def answer(
        endpoint: str,
        started: float,
        body: dict[str, Any],
        code: int,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        requests.labels(**labels, endpoint=endpoint, code=str(code)).inc()
        latency.labels(**labels, endpoint=endpoint).observe(time.perf_counter() - started)
        merged = {"X-Region": config.region}
        merged.update(headers or {})
        return JSONResponse(body, status_code=code, headers=merged)

    async def heartbeat() -> None:
        # Only the primary accepts the write; on a replica Redis answers READONLY.
        assert state.local is not None
        while True:
            with contextlib.suppress(RedisError, OSError):
                await state.local.set(HEARTBEAT_KEY, repr(time.time()))
            await asyncio.sleep(config.heartbeat_interval)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            manifest = modelmod.read_manifest(Path(config.registry))
            state.model, state.model_digest = modelmod.load_model(
                Path(config.model_path), manifest, config.verify_model_digest
            )
        except modelmod.ModelIntegrityError as exc:
            state.model_error = str(exc)
        model_ok.labels(**labels, verify=str(config.verify_model_digest).lower()).set(
            0 if state.model is None else 1
        )
        # redis-py retries timeouts with backoff by default: a dead primary must show as
        # a failed request, not as a slow one, so a timeout is never retried. A closed
        # connection is retried once, at once, on a fresh connection: Sentinel closes
        # every client connection of a store it promotes or demotes (CLIENT KILL TYPE
        # normal), and without the retry each idle pooled connection would fail one
        # request seconds after the failover had completed. READONLY from a demoted
        # primary arrives as a closed connection too (redis-py's Sentinel connection).
        # For the primary, the fresh connection goes where Sentinel says
        # (PrimaryConnection). Retrying a write is safe: it is a SET of the key of one
        # client's sequence number to the value computed once, so a first attempt that
        # did land leaves the same record, never a second one.
        timeouts: dict[str, Any] = {
            "socket_timeout": config.redis_timeout,
            "socket_connect_timeout": config.redis_timeout,
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        }
        state.local = aioredis.Redis(
            host="127.0.0.1", port=config.redis_port, password=config.redis_password, **timeouts
        )
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            config.sentinels,
            sentinel_kwargs={"password": config.redis_password, **timeouts},
            password=config.redis_password,
            **timeouts,
        )
        state.primary = sentinel.master_for(
            config.jurisdiction, connection_class=PrimaryConnection, **timeouts
        )
        state.tasks.append(asyncio.create_task(heartbeat()))
        try:
            yield
        finally:
            for task in state.tasks:
                task.cancel()
            await state.local.aclose()
            await state.primary.aclose()

    async def healthz(_request: Request) -> Response:
        started = time.perf_counter()
        reasons = []
        if state.model is None:
            reasons.append(f"model: {state.model_error or 'not loaded'}")
        try:
            assert state.local is not None
            await state.local.ping()
            if state.corrupt_keys:
                await _recheck_corrupt()
        except (RedisError, OSError) as exc:
            reasons.append(f"local store: {exc}")
        if state.corrupt_keys:
            reasons.append(f"local store: {len(state.corrupt_keys)} damaged feature records")
        ready_gauge.labels(**labels).set(0 if reasons else 1)
        if reasons:
            return answer("healthz", started, {"status": "unready", "reasons": reasons}, 503)
        return answer(
            "healthz", started, {"status": "ready", "model_digest": state.model_digest}, 200
        )

    async def _recheck_corrupt() -> None:
        assert state.local is not None
        for key in list(state.corrupt_keys):
            raw = await state.local.get(key)
            try:
                if raw is not None:
                    modelmod.parse_feature_record(raw, verify=True)
                state.corrupt_keys.discard(key)
            except (modelmod.FeatureChecksumError, ValueError):
                continue

    async def _json(request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None

    async def _score(entity: Any) -> tuple[int, dict[str, Any]]:
        """(status, body) of scoring `entity`: the body holds `score` on 200, `error`
        otherwise (shared by the reference API and the Open Inference Protocol)."""
        if not isinstance(entity, str) or "-" not in entity:
            return 400, {"error": 'the entity id must look like "us-42"'}
        if entity.split("-", 1)[0] != config.jurisdiction:
            # Residency: this region's store holds only its jurisdiction's entities.
            return 404, {
                "error": f"entity {entity!r} is not stored in jurisdiction {config.jurisdiction!r}"
            }
        if state.model is None:
            return 503, {"error": "model not loaded"}
        try:
            assert state.local is not None
            raw = await state.local.get(FEATURE_PREFIX + entity)
        except (RedisError, OSError) as exc:
            return 503, {"error": f"local store: {exc}"}
        if raw is None:
            return 404, {"error": f"unknown entity {entity!r}"}
        try:
            features = modelmod.parse_feature_record(raw, config.verify_features)
        except modelmod.FeatureChecksumError:
            # Never answer from a damaged copy: refuse, and leave the router until the
            # store has been repaired (healthz re-reads the damaged keys).
            state.corrupt_keys.add(FEATURE_PREFIX + entity)
            return 503, {"error": f"damaged feature record for {entity!r}"}
        except ValueError:
            return 503, {"error": f"unreadable features for {entity!r}"}
        return 200, {"score": modelmod.score(state.model, features)}

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        body = await _json(request)
        code, result = await _score(body.get("entity_id") if body else None)
        if code != 200:
            return answer("predict", started, result, code)
        return answer(
            "predict",
            started,
            {
                "entity_id": body["entity_id"] if body else None,
                "score": result["score"],
                "region": config.region,
                "model_digest": state.model_digest,
            },
            200,
            {"X-Model-Digest": state.model_digest},
        )

    async def oip_infer(request: Request) -> Response:
        """Open Inference Protocol v2: one BYTES input holding the entity id."""
        started = time.perf_counter()
        name = request.path_params["model"]
        if name != OIP_MODEL:
            return answer("infer", started, {"error": f"unknown model {name!r}"}, 404)
        body = await _json(request)
        inputs = body.get("inputs") if body else None
        data = inputs[0].get("data") if isinstance(inputs, list) and inputs else None
        if not isinstance(inputs[0] if inputs else None, dict) or not isinstance(data, list):
            return answer("infer", started, {"error": "expected inputs[0].data"}, 400)
        code, result = await _score(data[0] if data else None)
        if code != 200:
            return answer("infer", started, result, code)
        return answer(
            "infer",
            started,
            {
                "model_name": OIP_MODEL,
                "model_version": state.model_digest,
                "outputs": [
                    {"name": "score", "shape": [1], "datatype": "FP64", "data": [result["score"]]}
                ],
                "parameters": {"region": config.region},
            },
            200,
            {"X-Model-Digest": state.model_digest},
        )

    async def oip_model(request: Request) -> Response:
        started = time.perf_counter()
        if request.path_params["model"] != OIP_MODEL:
            return answer("model", started, {"error": "unknown model"}, 404)
        metadata = {
            "name": OIP_MODEL,
            "versions": [state.model_digest] if state.model_digest else [],
            "platform": "scikit-learn",
            "inputs": [{"name": "entity_id", "datatype": "BYTES", "shape": [1]}],
            "outputs": [{"name": "score", "datatype": "FP64", "shape": [1]}],
        }
        return answer("model", started, metadata, 200)

    async def oip_ready(request: Request) -> Response:
        response = await healthz(request)
        return Response(status_code=response.status_code, headers={"X-Region": config.region})

    async def read_event(request: Request) -> Response:
        """Read back one write from the jurisdiction's primary: 200 present, 404 absent."""
        started = time.perf_counter()
        client, seq = request.path_params["client"], request.path_params["seq"]
        if not _CLIENT.match(client):
            return answer("read", started, {"error": "bad client id"}, 400)
        try:
            assert state.primary is not None
            value = await state.primary.get(write_key(client, int(seq)))
        except (RedisError, OSError) as exc:
            return answer("read", started, {"error": f"primary unavailable: {exc}"}, 503)
        if value is None:
            return answer("read", started, {"error": "absent"}, 404)
        return answer("read", started, {"client": client, "seq": int(seq)}, 200)

    async def events(request: Request) -> Response:
        started = time.perf_counter()
        body = await _json(request)
        if (
            body is None
            or not isinstance(body.get("client"), str)
            or not _CLIENT.match(body["client"])
            or not isinstance(body.get("seq"), int)
            or isinstance(body.get("seq"), bool)
            or body["seq"] < 0
        ):
            return answer(
                "events",
                started,
                {"error": 'body must be {"client": str, "seq": int >= 0, "payload": {...}}'},
                400,
            )
        key = write_key(str(body["client"]), int(body["seq"]))
        value = json.dumps(
            {"payload": body.get("payload"), "region": config.region, "t": time.time()}
        )
        try:
            assert state.primary is not None
            await state.primary.set(key, value)
        except ResponseError as exc:
            # READONLY: Sentinel still names a primary that has been demoted.
            return answer("events", started, {"error": f"primary refused: {exc}"}, 503)
        except (RedisError, OSError) as exc:
            return answer("events", started, {"error": f"primary unavailable: {exc}"}, 503)
        return answer("events", started, {"ok": True, "key": key, "region": config.region}, 201)

    async def metrics(_request: Request) -> Response:
        try:
            assert state.local is not None
            role = (await state.local.execute_command("ROLE"))[0]  # type: ignore[no-untyped-call]
            if role in (b"master", "master"):
                lag_gauge.labels(**labels).set(0.0)
            else:
                beat = await state.local.get(HEARTBEAT_KEY)
                if beat is not None:
                    lag_gauge.labels(**labels).set(max(0.0, time.time() - float(beat)))
        except (RedisError, OSError, ValueError):
            pass  # a missing sample is honest; a stale one would not be
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/v1/predict", predict, methods=["POST"]),
            Route("/v1/events", events, methods=["POST"]),
            Route("/v1/events/{client}/{seq:int}", read_event, methods=["GET"]),
            Route("/v2/models/{model}/infer", oip_infer, methods=["POST"]),
            Route("/v2/models/{model}", oip_model, methods=["GET"]),
            Route("/v2/health/ready", oip_ready, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point used by the supervisor: `python -m infra.local.service --config FILE`."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    config = ServiceConfig.from_file(args.config)
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
