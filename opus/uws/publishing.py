"""Publishing a job: ``POST /{jobs}/{job-id}/access`` with ``ACCESS=public`` or ``private``.

A user's job is private to its owner (:class:`opus.auth.AccessPolicy`). Published, anyone
may read it (its document, parameters, uploads and results, and its provenance) and use its
products as inputs of their own jobs, as an observatory releases data; only its owner (or
an admin) changes it, and may withdraw it again. Publishing is one transaction for the job
and its provenance record (:meth:`opus.storage.jobs.JobStore.publish`, whose hook sets the
flag of the run and of the entities it generated or brought in); a job published before it
ends has its run recorded public. Withdrawing stops new uses at once and a chained job not
yet dispatched at dispatch (the scheduler checks each input for the job's owner).

An anonymous job is in the shared space: anyone may read it already, so it is ``public``
and cannot be made private (409): sign in to keep data private.
"""

from __future__ import annotations

from opus.auth import Identity
from opus.errors import ConflictError, NotFoundError, ParameterError
from opus.uws import params
from opus.uws.models import Job
from opus.uws.service import JobService

#: The values of ACCESS (and of ``GET .../access``).
ACCESS = ("public", "private")


def set_access(service: JobService, identity: Identity, activity: str, job_id: str,
               text: str) -> Job:
    """Publish (``public``) or withdraw (``private``) the job; the job as it was."""
    job = service.get(identity, activity, job_id, with_results=False)
    service.policy.check_modify(identity, job)
    value = text.strip().lower()
    if value not in ACCESS:
        raise ParameterError("ACCESS", f"must be public or private (got {params.shown(text)})")
    if value == "private" and job.owner_key is None:
        raise ConflictError(f"job {job_id} is an anonymous job, readable by anyone; it cannot "
                            f"be made private (sign in to keep jobs private)")
    if not service.store.publish(job_id, value == "public"):
        raise NotFoundError(f"no job {params.shown(job_id)} in {activity}")  # deleted meanwhile
    return job
