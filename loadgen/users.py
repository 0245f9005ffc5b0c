"""The simulated clients (Locust FastHttpUsers). Imports locust: only Locust loads this.

Every request carries a Locust `context` with what the timeline needs (`kind`,
`residency`, and `client`/`seq` or `expected`) and is named by its kind in Locust's stats.
`configure` applies a profile: weights, per-user rates, residency mix, timeouts.
"""

from __future__ import annotations

import random
import time
import uuid

from locust import FastHttpUser, task

from loadgen.payload import write_body
from loadgen.profile import Profile

__all__ = ["DEFAULT_HOST", "CanaryUser", "PredictUser", "WriterUser", "configure", "profile"]

# The router of `gameday testbed up` with its default ports.
DEFAULT_HOST = "http://127.0.0.1:18080"

_active = Profile()
_golden_ids: list[str] = []


def profile() -> Profile:
    """The profile the users follow now."""
    return _active


def configure(new: Profile) -> None:
    """Follow `new` from now on (call before users spawn: weights and timeouts are read
    when Locust creates users)."""
    global _active, _golden_ids
    _active = new
    _golden_ids = sorted(new.golden_scores)
    for cls in (PredictUser, WriterUser, CanaryUser):
        cls.weight = new.weight(cls.kind)
        cls.network_timeout = new.timeout_s
        cls.connection_timeout = new.connect_timeout_s


_assigned: dict[str, dict[str, int]] = {}


def _residency_for(kind: str) -> str:
    """A new user's residency: whichever jurisdiction is furthest below its share among
    this kind's users so far, so even a handful of users splits as the mix says."""
    counts = _assigned.setdefault(kind, {"us": 0, "eu": 0})
    total = counts["us"] + counts["eu"] + 1
    eu_deficit = _active.eu_share * total - counts["eu"]
    us_deficit = (1 - _active.eu_share) * total - counts["us"]
    choice = "eu" if eu_deficit > us_deficit else "us"
    counts[choice] += 1
    return choice


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


class PredictUser(_GamedayUser):
    """Predictions for random entities (`us-<n>`/`eu-<n>`, n below `entities`), the
    residency drawn once per user from the profile's mix: a user stuck on a request to
    a dying jurisdiction must not thin out the other jurisdiction's traffic."""

    kind = "predict"
    weight = 8

    def on_start(self) -> None:
        self.residency = _residency_for(self.kind)

    @task
    def predict(self) -> None:
        self._last_task = time.monotonic()
        residency = self.residency
        self.client.post(
            "/v1/predict",
            json={"entity_id": f"{residency}-{random.randrange(_active.entities)}"},
            headers={"X-Residency": residency},
            name="predict",
            context={"kind": "predict", "residency": residency},
        )


class WriterUser(_GamedayUser):
    """One client per simulated user (id `w-<12 hex>`, residency drawn once), writing
    `seq` 1, 2, 3, ... (never reused, also after a failed write)."""

    kind = "write"
    weight = 2

    def on_start(self) -> None:
        self.client_id = f"w-{uuid.uuid4().hex[:12]}"
        self.residency = _residency_for(self.kind)
        self.seq = 0

    @task
    def write(self) -> None:
        self._last_task = time.monotonic()
        self.seq += 1
        self.client.post(
            "/v1/events",
            json=write_body(self.client_id, self.seq),
            headers={"X-Residency": self.residency},
            name="write",
            context={
                "kind": "write",
                "residency": self.residency,
                "client": self.client_id,
                "seq": self.seq,
            },
        )


class CanaryUser(_GamedayUser):
    """Predictions for golden entities whose correct score is known; the residency is
    drawn once per user (as for predictions) and the entity among that jurisdiction's
    golden ones. Off (weight 0) without golden scores."""

    kind = "canary"
    weight = 1  # Locust drops classes whose weight is 0 when it loads them; configure sets it

    def on_start(self) -> None:
        self.residency = _residency_for(self.kind)

    @task
    def canary(self) -> None:
        self._last_task = time.monotonic()
        if not _golden_ids:
            return
        mine = [e for e in _golden_ids if e.split("-", 1)[0] == self.residency]
        entity = random.choice(mine or _golden_ids)
        residency = entity.split("-", 1)[0]
        self.client.post(
            "/v1/predict",
            json={"entity_id": entity},
            headers={"X-Residency": residency},
            name="canary",
            context={
                "kind": "canary",
                "residency": residency,
                "expected": _active.golden_scores[entity],
            },
        )
