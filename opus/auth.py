"""Who is asking, and what they may do: the one place that decides access to jobs.

Today every request is anonymous (ownerId nil, UWS 1.1 section 2.1.8: the owner exists only
where access is authenticated) and anonymous users share the public job lists. When users
and tokens land, :func:`resolve_identity` learns to read credentials and
:class:`AccessPolicy` to compare owners; no route changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from opus.errors import PermissionDeniedError
from opus.uws.models import Job


@dataclass(frozen=True)
class Identity:
    """The caller of one request. ``owner_id`` None means anonymous."""

    owner_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.owner_id is None


ANONYMOUS = Identity()


def resolve_identity(headers: Mapping[str, str]) -> Identity:
    """The identity of a request, resolved once per request from its headers."""
    return ANONYMOUS


class AccessPolicy:
    """Decides who sees and changes which job (UWS 1.1 section 3)."""

    def owner_filter(self, identity: Identity) -> tuple[bool, str | None]:
        """(filter?, owner) for job lists: anonymous callers see the public jobs."""
        return (False, None) if identity.anonymous else (True, identity.owner_id)

    def check_read(self, identity: Identity, job: Job) -> None:
        """Raise if ``identity`` may not see ``job``: 403, as UWS 1.1 section 3 requires."""
        if job.owner_id is not None and job.owner_id != identity.owner_id:
            raise PermissionDeniedError(f"job {job.job_id} belongs to another user")

    def check_modify(self, identity: Identity, job: Job) -> None:
        self.check_read(identity, job)
