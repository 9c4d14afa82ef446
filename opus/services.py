"""The long-lived objects of one OPUS process, and how they are wired together.

Both the web application (:mod:`opus.app`) and the scheduler (:mod:`opus.execution.scheduler`)
start from :func:`build_services`; nothing here knows about HTTP. This is also where the
UWS core is connected to provenance: the job store calls the provenance store in the
transactions that end a job (its record), that delete or archive one (its entities
invalidated) and that publish or withdraw one (its run and products follow), so the UWS
modules never import the provenance ones.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from opus.activities.registry import ActivityRegistry
from opus.auth import AccessPolicy, Authenticator
from opus.config import Settings
from opus.storage.claims import leader_alive
from opus.storage.engine import DATABASE_UNAVAILABLE, make_engine
from opus.storage.jobs import JobStore
from opus.storage.provenance import ProvenanceStore
from opus.storage.provtap import ProvTapStore
from opus.storage.tap_jobs import TapJobStore
from opus.storage.users import UserStore
from opus.storage.events import JobEvents, make_events
from opus.tap.async_jobs import TapAsync
from opus.tap.service import ProvTap
from opus.uws.models import utcnow
from opus.uws.reports import RunnerReports
from opus.uws.service import JobService

log = logging.getLogger("opus")


@dataclass(frozen=True)
class Services:
    """What one process holds for its whole life. Route modules take the few of these
    they need, never the container."""

    settings: Settings
    store: JobStore
    events: JobEvents
    registry: ActivityRegistry
    provenance: ProvenanceStore
    users: UserStore
    policy: AccessPolicy
    jobs: JobService
    reports: RunnerReports
    authenticate: Authenticator
    provtap: ProvTap
    tap_async: TapAsync
    #: Why jobs cannot run now (no active scheduler), or None: VOSI availability.
    scheduler_problem: Callable[[], str | None] = field(default=lambda: None)


def scheduler_problem(settings: Settings, alive: Callable[[dt.datetime], bool]
                      ) -> Callable[[], str | None]:
    """The check behind ``/availability``: an active scheduler has sent its heartbeat in
    the last ``scheduler_timeout`` seconds (it is in the database: every web node sees
    it)."""
    def problem() -> str | None:
        since = utcnow() - dt.timedelta(seconds=settings.scheduler_timeout)
        try:
            if alive(since):
                return None
        except DATABASE_UNAVAILABLE:
            return "the database is unreachable: jobs can be neither accepted nor run"
        return (f"no active scheduler has sent a heartbeat in the last "
                f"{settings.scheduler_timeout:g} s: jobs are accepted but do not run")
    return problem


def build_services(settings: Settings) -> Services:
    """Open the database, load the activities and wire the stores and services."""
    engine = make_engine(settings.effective_database_url)
    events = make_events(engine, settings.run_dir)
    provenance = ProvenanceStore(engine, namespace=settings.provenance_namespace,
                                 templates_dir=settings.provenance_templates_dir)
    store = JobStore(engine, events, on_end=provenance.record_run,
                     on_remove=provenance.invalidate_job, on_publish=provenance.publish_job)
    registry = ActivityRegistry.load(settings.activities_dir)
    for path, problem in registry.problems.items():
        log.error("activity description %s skipped: %s", path, problem)
    users = UserStore(engine)
    policy = AccessPolicy()
    jobs = JobService(settings, store, registry, provenance, policy)
    provtap = ProvTap(settings, ProvTapStore(engine))
    return Services(settings=settings, store=store, events=events, registry=registry,
                    provenance=provenance, users=users, policy=policy, jobs=jobs,
                    reports=RunnerReports(jobs, store),
                    authenticate=authenticator(settings, users),
                    provtap=provtap, tap_async=TapAsync(settings, provtap, provtap.store,
                                                        TapJobStore(engine), policy),
                    scheduler_problem=scheduler_problem(
                        settings, functools.partial(leader_alive, engine)))


def authenticator(settings: Settings, users: UserStore) -> Authenticator:
    """The :class:`Authenticator` the settings ask for (README, Security: Identity)."""
    issuer = settings.auth_token_issuer
    return Authenticator(users.identity_for_token, settings.auth_cache_ttl,
                         user=users.identity_for_name, basic=settings.auth_basic,
                         proxy_header=settings.proxy_user_header,
                         token_issuer=(issuer.standard_id, issuer.access_url)
                         if issuer is not None else None)
