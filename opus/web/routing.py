"""Typed route declarations: each route says, beside its handler, what it is in OpenAPI.

::

    @route(app, "GET", "/rest/<activity>/<job_id>/phase", operation=Operation(
        "getPhase", "the phase", responses(...), parameters=(JOB_ID,), per_activity=True))
    def get_phase(activity: str, job_id: str) -> HTTPResponse: ...

:func:`route` is ``app.route(path, method, handler, errors=..., operation=...)``: bottle
keeps both keywords in the route's ``config``, where :mod:`opus.web.errors` reads
``errors`` (``"uws"`` or ``"dali"``) and :mod:`opus.web.openapi` reads ``operation`` to
build ``/openapi.json``. Unlike bottle's own decorators it keeps the handler's type.

A route without an operation is not described; only the runner's callback under
``/internal/`` may be one (``tests/test_json.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import bottle

from opus.activities.model import ActivityDescription

F = TypeVar("F", bound=Callable[..., Any])

#: A piece of an OpenAPI document (a Parameter, Request Body... Object).
Part = Mapping[str, Any]
#: A piece computed for the activity a per-activity operation is spelled out for.
PerActivity = Callable[[ActivityDescription], Part]


@dataclass(frozen=True)
class Operation:
    """What OpenAPI says about one route: an Operation Object, its pieces built with
    :mod:`opus.web.openapi_schemas`.

    A ``per_activity`` operation belongs to a generic UWS route (``/rest/<activity>...``)
    and is spelled out once per activity (``/rest/sleep...``): its operationId is prefixed
    with the activity's component key (``sleep.getPhase``), it is tagged ``jobs: <name>``,
    ``{activity}`` in its summary becomes the name, and its description, parameters and
    request body may be functions of the :class:`ActivityDescription`.
    """

    operation_id: str
    summary: str
    responses: Part
    tags: tuple[str, ...] = ()
    parameters: Sequence[Part | PerActivity] = ()
    request_body: Part | PerActivity | None = None
    description: str | Callable[[ActivityDescription], str] | None = None
    deprecated: bool = False
    per_activity: bool = False

    def __post_init__(self) -> None:
        computed = [p for p in (*self.parameters, self.request_body, self.description)
                    if callable(p)]
        if computed and not self.per_activity:
            raise ValueError(f"{self.operation_id}: only a per-activity operation has "
                             f"parts computed per activity")


def route(app: bottle.Bottle, method: str, path: str, *, operation: Operation | None,
          errors: str = "uws", session: bool = False) -> Callable[[F], F]:
    """Install the decorated handler as ``method path`` of ``app``, described by
    ``operation`` (None: undocumented, internal routes only), its errors written in the
    ``errors`` format of :mod:`opus.web.errors`. ``session``: a page of the web client,
    whose forms may act with the browser's session cookie (:mod:`opus.web.sessions`)."""

    def decorator(handler: F) -> F:
        app.route(path, method, handler, errors=errors, operation=operation,
                  session=session)
        return handler

    return decorator
