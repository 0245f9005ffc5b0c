"""The simulated clients (Locust FastHttpUsers). Imports locust: only Locust loads this.

Every request is built from the platform file (`infra.platform`): its jurisdictions,
entity ids, API shape, jurisdiction header and write path; nothing here assumes the
reference platform. Every request carries a Locust `context` with what the timeline
needs (`kind`, `residency`, `reader` (how to read the answer), and `client`/`seq` or
`expected`) and is named by its kind in Locust's stats. `configure` applies a profile
and a platform: weights, per-user rates, residency mix, timeouts.
"""

from __future__ import annotations

import random
import time
import uuid

from locust import FastHttpUser, task

from infra.local.describe import REFERENCE_PLATFORM
from infra.platform import Platform, load_platform
from infra.shapes import AnswerReader, predict_request
from loadgen.payload import write_body
from loadgen.profile import Profile

__all__ = [
    "DEFAULT_HOST",
    "CanaryUser",
    "PredictUser",
    "WriterUser",
    "configure",
    "platform",
    "profile",
]

# The router of `gameday testbed up` with its default ports.
DEFAULT_HOST = "http://127.0.0.1:18080"

_active = Profile()
_platform: Platform | None = None
_reader: AnswerReader | None = None
_shares: dict[str, float] = {}
_golden: dict[str, list[str]] = {}


def profile() -> Profile:
    """The profile the users follow now."""
    return _active


def platform() -> Platform:
    """The platform the users drive (the reference platform until configured)."""
    global _platform, _reader
    if _platform is None:
        _platform = load_platform(REFERENCE_PLATFORM)
        _reader = AnswerReader.of(_platform)
    return _platform


def configure(new: Profile, target: Platform | None = None) -> None:
    """Follow `new` (and drive `target`) from now on (call before users spawn: weights
    and timeouts are read when Locust creates users). Raises LoadConfigError when the
    profile names a residency the platform does not have."""
    global _active, _platform, _reader, _shares, _golden
    if target is not None:
        _platform, _reader = target, AnswerReader.of(target)
    current = platform()
    _shares = new.shares(list(current.jurisdictions))
    golden: dict[str, list[str]] = {}
    for entity in sorted(new.golden_scores):
        jurisdiction = current.entity_jurisdiction(entity)
        if jurisdiction is not None:
            golden.setdefault(jurisdiction, []).append(entity)
    _active, _golden = new, golden
    for cls in (PredictUser, WriterUser, CanaryUser):
        cls.weight = new.weight(cls.kind)
        cls.network_timeout = new.timeout_s
        cls.connection_timeout = new.connect_timeout_s
    if current.writes is None:
        WriterUser.weight = 0
    if not golden:
        CanaryUser.weight = 0


_assigned: dict[str, dict[str, int]] = {}


def _residency_for(kind: str, shares: dict[str, float] | None = None) -> str:
    """A new user's residency: whichever jurisdiction is furthest below its share among
    this kind's users so far, so even a handful of users splits as the mix says."""
    shares = shares if shares is not None else _shares
    counts = _assigned.setdefault(kind, {})
    total = sum(counts.values()) + 1
    choice = max(shares, key=lambda j: shares[j] * total - counts.get(j, 0))
    counts[choice] = counts.get(choice, 0) + 1
    return choice


def _url(jurisdiction: str, path: str) -> str:
    """`path` on the jurisdiction's own base URL when the platform gives one (an absolute
    URL), else relative to the Locust host."""
    current = platform()
    if jurisdiction in current.traffic.urls:
        return current.url_for(jurisdiction) + path
    return path


class _GamedayUser(FastHttpUser):
    abstract = True
    host = DEFAULT_HOST
    kind = ""
    network_timeout = 5.0
    connection_timeout = 2.0
    _last_task = 0.0

    def wait_time(self) -> float:
        """Constant throughput: the profile's `rate` tasks per second per user (0: none)."""
        rate = _active.mix[self.kind].rate
        if rate <= 0:
            return 0.0
        period = 1.0 / rate
        wait = self._last_task + period - time.monotonic()
        # A user that fell behind (a slow answer, a stall of the event loop) resumes at
        # a random point of its period rather than at once: otherwise every late user
        # fires together and the users fall into lockstep, which coarsens the timeline.
        return wait if wait > 0 else random.uniform(0.0, period / 2)

    def _predict(self, name: str, residency: str, entity: str, **context: object) -> None:
        request = predict_request(platform(), residency, entity)
        self.client.request(
            request.method,
            _url(residency, request.path),
            json=request.body,
            headers=request.headers,
            name=name,
            context={"kind": name, "residency": residency, "reader": _reader, **context},
        )


class PredictUser(_GamedayUser):
    """Predictions for random entities (the platform's entity ids, n below `entities`),
    the residency drawn once per user from the profile's mix: a user stuck on a request
    to a dying jurisdiction must not thin out the other jurisdictions' traffic."""

    kind = "predict"
    weight = 8

    def on_start(self) -> None:
        self.residency = _residency_for(self.kind)

    @task
    def predict(self) -> None:
        self._last_task = time.monotonic()
        entity = platform().entity(self.residency, random.randrange(_active.entities))
        self._predict("predict", self.residency, entity)


class WriterUser(_GamedayUser):
    """One client per simulated user (id `w-<12 hex>`, residency drawn once), writing
    `seq` 1, 2, 3, ... (never reused, also after a failed write) to the platform's
    write path. Off (weight 0) when the platform declares no writes."""

    kind = "write"
    weight = 2

    def on_start(self) -> None:
        self.client_id = f"w-{uuid.uuid4().hex[:12]}"
        self.residency = _residency_for(self.kind)
        self.seq = 0

    @task
    def write(self) -> None:
        self._last_task = time.monotonic()
        current = platform()
        if current.writes is None:
            return
        self.seq += 1
        headers = {}
        if current.traffic.jurisdiction_header:
            headers[current.traffic.jurisdiction_header] = self.residency
        self.client.post(
            _url(self.residency, current.writes.path),
            json=write_body(self.client_id, self.seq),
            headers=headers,
            name="write",
            context={
                "kind": "write",
                "residency": self.residency,
                "reader": _reader,
                "client": self.client_id,
                "seq": self.seq,
            },
        )


class CanaryUser(_GamedayUser):
    """Predictions for golden entities whose correct score is known; the residency is
    drawn once per user (as for predictions) among the jurisdictions that have golden
    entities. Off (weight 0) without golden scores."""

    kind = "canary"
    weight = 1  # Locust drops classes whose weight is 0 when it loads them; configure sets it

    def on_start(self) -> None:
        shares = {j: s for j, s in _shares.items() if j in _golden} or dict.fromkeys(_golden, 1.0)
        self.residency = _residency_for(self.kind, shares) if shares else ""

    @task
    def canary(self) -> None:
        self._last_task = time.monotonic()
        mine = _golden.get(self.residency)
        if not mine:
            return
        entity = random.choice(mine)
        self._predict("canary", self.residency, entity, expected=_active.golden_scores[entity])
