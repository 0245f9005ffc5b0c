"""A Locust load shape that follows the profile's `shape` (constant, step, soak).

Add it to the locustfile list: `locust -f loadgen/locustfile.py,loadgen/shapefile.py
--load-profile step.yaml`. It ends the run after the profile's `duration_s`. Kept apart
from the locustfile so that the locustfile alone keeps Locust's own user count and spawn
rate controls (a shape class disables them).
"""

from __future__ import annotations

from locust import LoadTestShape

from loadgen.profile import target_at
from loadgen.users import profile

__all__ = ["ProfileShape"]


class ProfileShape(LoadTestShape):
    """Users over time from `loadgen.profile.target_at`."""

    def tick(self) -> tuple[int, float] | None:
        return target_at(profile(), self.get_run_time())  # type: ignore[no-untyped-call]
