"""Load generation: Locust users, load shapes, the request timeline and the write ledger.

Only this package imports `locust` (and with it gevent's monkey patching), and only in
the modules Locust itself loads (`locustfile.py`, `users.py`, `shapefile.py`). Everything
else here (`runner`, `profile`, `timeline`, `stub`) is safe to import anywhere: the runner
starts Locust as subprocesses.
"""

from __future__ import annotations
