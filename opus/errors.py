"""One exception per kind of client mistake, each carrying its HTTP status, and one for
the faults of the server that a client should retry.

The services raise these; :mod:`opus.web.errors` maps them to a response in one place, in
the error format of the route (plain text or JSON for UWS, a DALI VOTable for DataLink).
UWS 1.1 section 2.2: 404 for a resource that does not exist, 403 for a request illegal in
the job's current state; DALI 1.1 section 4.3: a bad parameter value is reported with a
message. A :class:`ServiceUnavailableError` (and a database that cannot be reached) is
logged and answered 503 with ``Retry-After`` (RFC 9110 section 15.6.4). Anything else that
escapes is a bug: logged with its traceback and answered 500.
"""

from __future__ import annotations


class ClientError(Exception):
    """A request the client can fix. ``status`` is the HTTP status it is answered with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ParameterError(ClientError):
    """A parameter value breaks a rule of the activity description or of UWS.

    The message always names the parameter and the rule, for example
    ``duration: must be at most 3600 (got 7200)``.
    """

    status = 400

    def __init__(self, parameter: str, rule: str) -> None:
        super().__init__(f"{parameter}: {rule}")
        self.parameter = parameter
        self.rule = rule


class NotFoundError(ClientError):
    """No such job, activity, result or parameter (or not visible to this identity)."""

    status = 404


class PhaseError(ClientError):
    """The action is not allowed in the job's current phase (UWS 1.1 section 2.2)."""

    status = 403


class PermissionDeniedError(ClientError):
    """The identity may not act on this resource (UWS 1.1 section 3)."""

    status = 403


class AuthenticationError(ClientError):
    """Credentials were sent but are not valid."""

    status = 401


class PayloadTooLargeError(ClientError):
    """An upload or request body exceeds the configured limit."""

    status = 413


class UnsupportedFormatError(ClientError):
    """A requested response format is not one the server can produce."""

    status = 415


class ConflictError(ClientError):
    """The state of the server, not the request, is in the way (409)."""

    status = 409


class TooManyRequestsError(ClientError):
    """The caller is past one of its limits (``max_active_jobs``): 429 with
    ``Retry-After: retry_after`` seconds (RFC 6585 section 4), since waiting helps."""

    status = 429

    def __init__(self, message: str, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailableError(Exception):
    """A fault of the server that may pass (a graph too large to draw in time, a database
    restarting): 503 with ``Retry-After: retry_after`` seconds, and logged."""

    status = 503

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class InsufficientStorageError(ServiceUnavailableError):
    """No space is left where the server keeps jobs (the data dir, or SQLite's database
    on it): 507 Insufficient Storage (RFC 4918 section 11.5, a condition the RFC calls
    temporary) with ``Retry-After``. Raised before anything is accepted, so a refused
    creation leaves no job behind."""

    status = 507
