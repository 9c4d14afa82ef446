"""The scheduler's heartbeat and leadership thread.

Every ``scheduler_timeout / 4`` seconds the thread renews this process's claim to lead
(:class:`opus.storage.claims.Leadership`) and writes its heartbeat; the scheduler loop
works only while it leads. The claims are atomic anyway, so a short overlap of two
leaders (a paused process waking up) cannot run a job twice. A database that cannot be
reached is logged once per outage by :mod:`opus.storage.health`, not here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from opus.storage.claims import Leadership
from opus.storage.health import DATABASE_UNAVAILABLE, health_of
from opus.uws.models import utcnow

log = logging.getLogger("opus.scheduler")


class Heartbeat:
    """Renews the leadership every ``interval`` seconds until ``stop``; calls
    ``on_lead`` when this process becomes the leader."""

    def __init__(self, leadership: Leadership, interval: float,
                 on_lead: Callable[[], None]) -> None:
        self.leadership = leadership
        self.interval = interval
        self.on_lead = on_lead
        self.leading = threading.Event()
        self.health = health_of(leadership.engine)
        self._said_standby = False
        self._said_failure = False

    def beat(self) -> None:
        try:
            leading = self.leadership.renew(utcnow())
        except DATABASE_UNAVAILABLE:  # logged once per outage by opus.storage.health
            leading = False
        except Exception:  # a schema not migrated, a bug: said once, retried
            if not self._said_failure:
                log.exception("scheduler heartbeat failed; retrying")
            self._said_failure = True
            leading = False
        else:
            self._said_failure = False
        if leading and not self.leading.is_set():
            log.info("scheduler %s is the active scheduler", self.leadership.id)
            self.leading.set()
            self.on_lead()
        elif not leading and self.leading.is_set():
            log.warning("scheduler %s is no longer the active scheduler; standing by",
                        self.leadership.id)
            self.leading.clear()
        elif (not leading and not self.health.down and not self._said_failure
              and not self._said_standby):
            self._said_standby = True
            log.info("scheduler %s standing by (another one is active)",
                     self.leadership.id)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.beat()
            stop.wait(self.interval)
        self.leading.clear()
        self.leadership.resign()

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), daemon=True,
                                  name="scheduler-heartbeat")
        thread.start()
        return thread
