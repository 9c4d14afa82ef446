"""Parameters that name a path on the server, and the folders such a path must lie in.

A parameter whose value is a file or folder of the server (gammapy_maps' ``datastore``) is
declared so in its description, with the VOTable ``xtype`` :data:`SERVER_PATH_XTYPE`::

    <PARAM name="datastore" datatype="char" arraysize="*" xtype="opus:serverpath" .../>

Its value must then be an absolute path that, resolved (``..`` removed, symlinks
followed), lies in one of the folders of the setting ``data_roots``. The server checks it
when the job is created or its parameters change, before anything runs: an activity would
otherwise tell any client whether ``/root`` or ``/etc/passwd`` exists, in its error and in
the provenance record. Every refused value gets the same answer, whether the path exists
or not.

Why an xtype: the description is where an activity says what its values are (VOTable 1.4
section 4.1: xtype, the value's extended type), so a server path is refused everywhere it is
declared without a setting per activity and parameter; a UCD says what a value means in
science, not how the server must treat it. The xtype is OPUS's own (prefixed ``opus:``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from opus.activities.model import ActivityDescription, ParameterDescription
from opus.errors import ParameterError

SERVER_PATH_XTYPE = "opus:serverpath"


def is_server_path(parameter: ParameterDescription) -> bool:
    return (parameter.xtype or "").strip().lower() == SERVER_PATH_XTYPE


def under_a_root(value: str, roots: Sequence[Path]) -> bool:
    """Whether ``value`` is an absolute path inside one of ``roots``, once resolved."""
    if not value.startswith("/") or "\0" in value:
        return False
    real = Path(os.path.realpath(value))
    return any(real.is_relative_to(os.path.realpath(root)) for root in roots)


def check_server_paths(activity: ActivityDescription, values: Mapping[str, str],
                       roots: Sequence[Path]) -> None:
    """A ParameterError for the first server-path value outside ``roots``; the message
    depends only on the settings, never on what exists."""
    for parameter in activity.parameters:
        value = values.get(parameter.name)
        if not is_server_path(parameter) or value is None or value == "":
            continue
        if not under_a_root(value, roots):
            if roots:
                rule = ("must be an absolute path in a data folder of this server: "
                        + ", ".join(str(root) for root in roots))
            else:
                rule = "no data folder of this server is open to jobs (setting data_roots)"
            raise ParameterError(parameter.name, rule)
