"""What SLURM says about a job, as UWS: state mapping and the parsing of SLURM's answers.

Pure functions over the text that ``squeue``, ``scontrol``, ``sacct`` and the
``jobcomp/filetxt`` log print; :class:`~opus.execution.slurm.SlurmManager` runs the commands
and uses these to give the scheduler a :class:`~opus.execution.manager.NativeStatus` (UWS
1.1 section 2.1.3, Execution Phase).

State mapping
-------------
SLURM job states become UWS phases as in the table of the issue "SLURM work cluster":

=====================================================  ==========  ===========================
SLURM state                                            UWS phase   ``NativeStatus.reason``
=====================================================  ==========  ===========================
PENDING, CONFIGURING, REQUEUED, RESIZING               QUEUED
PENDING with Reason JobHeldUser or JobHeldAdmin,       HELD
REQUEUE_HOLD, SPECIAL_EXIT
RUNNING, COMPLETING, SIGNALING, STAGE_OUT              EXECUTING
COMPLETED                                              COMPLETED
FAILED, NODE_FAIL, OUT_OF_MEMORY, TIMEOUT, BOOT_FAIL,  ERROR       the SLURM state, "TIMEOUT"
DEADLINE, PREEMPTED
CANCELLED (also "CANCELLED by 0")                      ABORTED
SUSPENDED, STOPPED                                     SUSPENDED
job no longer known to SLURM                           UNKNOWN
=====================================================  ==========  ===========================

An ERROR or ABORTED job gets an errorSummary from :func:`describe_end` that names the SLURM
state and what it means (``SLURM job 42 ended as NODE_FAIL (its node failed ...)``).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from opus.execution.manager import NativeStatus

_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "RESIZING", "RESV_DEL_HOLD"}
_HELD = {"REQUEUE_HOLD", "SPECIAL_EXIT"}
_EXECUTING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"}
_ERROR = {"FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
_ABORTED = {"CANCELLED"}
_SUSPENDED = {"SUSPENDED", "STOPPED"}
_HELD_REASONS = {"JobHeldUser", "JobHeldAdmin"}
#: Phases of a job SLURM still holds or runs (squeue shows it).
LIVE_PHASES = ("QUEUED", "HELD", "EXECUTING", "SUSPENDED")
#: Why SLURM may end a job, for errorSummary.
_EXPLANATIONS = {
    "TIMEOUT": "it reached its SLURM time limit",
    "NODE_FAIL": "its node failed or stopped answering the controller",
    "OUT_OF_MEMORY": "it used more memory than it was allocated",
    "BOOT_FAIL": "its node could not be booted",
    "DEADLINE": "it reached its deadline",
    "PREEMPTED": "it was preempted",
    "CANCELLED": "it was cancelled outside OPUS",
}


def normalise_state(state: str) -> str:
    """``"CANCELLED by 0"`` -> ``"CANCELLED"``, ``"CANCELLED+"`` -> ``"CANCELLED"``."""
    words = state.strip().split()
    return words[0].rstrip("+").upper() if words else ""


def map_slurm_state(state: str, reason: str | None = None,
                    exit_code: int | None = None) -> NativeStatus:
    """Express a SLURM job state (and pending reason) as a UWS phase (see the module notes)."""
    name = normalise_state(state)
    if reason in ("", "None", "(null)"):
        reason = None
    if name == "PENDING" and reason in _HELD_REASONS:
        return NativeStatus("HELD", reason, exit_code)
    if name in _QUEUED:
        return NativeStatus("QUEUED", None, exit_code)
    if name in _HELD:
        return NativeStatus("HELD", name, exit_code)
    if name in _EXECUTING:
        return NativeStatus("EXECUTING", None, exit_code)
    if name == "COMPLETED":
        return NativeStatus("COMPLETED", None, exit_code)
    if name in _ERROR:
        return NativeStatus("ERROR", name, exit_code)
    if name in _ABORTED:
        return NativeStatus("ABORTED", None, exit_code)
    if name in _SUSPENDED:
        return NativeStatus("SUSPENDED", None, exit_code)
    return NativeStatus("UNKNOWN", name or None, exit_code)


def parse_exit_code(text: str | None) -> int | None:
    """SLURM's ``CODE:SIGNAL`` -> the exit status (128 + signal when killed by a signal)."""
    if not text:
        return None
    code, _, signal = text.strip().partition(":")
    try:
        code_n = int(code)
        signal_n = int(signal) if signal else 0
    except ValueError:
        return None
    return 128 + signal_n if signal_n and not code_n else code_n


def parse_key_values(line: str) -> dict[str, str]:
    """Parse a one-line ``Key=Value Key=Value`` record (``scontrol -o``, jobcomp/filetxt).

    Values may contain spaces (``Reason=...`` rarely does, ``Command=`` may): a token
    without ``=`` or whose key is not an identifier is appended to the previous value.
    """
    fields: dict[str, str] = {}
    key = None
    for token in line.strip().split(" "):
        name, sep, value = token.partition("=")
        if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9_:/]*", name):
            key = name
            fields[key] = value
        elif key is not None:
            fields[key] += " " + token
    return fields



def squeue_live(output: str, ids: Collection[str]) -> dict[str, NativeStatus]:
    """The live jobs among ``ids`` in ``squeue -h -j ID,ID... -o '%i|%T|%r'`` output."""
    found = {}
    for line in output.splitlines():
        native_id, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        status = map_slurm_state(state, reason)
        if native_id in ids and status.phase in LIVE_PHASES:
            found[native_id] = status
    return found


def squeue_status(output: str) -> NativeStatus | None:
    """The job of ``squeue -h -j ID -o '%T|%r'`` output if it is live, else None."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return None
    state, _, reason = lines[0].partition("|")
    status = map_slurm_state(state, reason)
    if status.phase in LIVE_PHASES:
        return status
    return None  # finished: scontrol also knows the exit code


def scontrol_status(output: str, native_id: str) -> NativeStatus | None:
    """Job ``native_id`` in ``scontrol show job -o`` output (None: not there)."""
    for line in output.splitlines():
        fields = parse_key_values(line)
        if fields.get("JobId") == native_id.split("+")[0] and "JobState" in fields:
            return map_slurm_state(fields["JobState"], fields.get("Reason"),
                                   parse_exit_code(fields.get("ExitCode")))
    return None


def sacct_status(output: str, native_id: str) -> NativeStatus | None:
    """Job ``native_id`` in ``sacct -n -P -X -o JobID,State,ExitCode`` output."""
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0] == native_id:
            return map_slurm_state(parts[1], None, parse_exit_code(parts[2]))
    return None


def jobcomp_status(text: str, native_id: str) -> NativeStatus | None:
    """Job ``native_id`` in a ``jobcomp/filetxt`` log."""
    marker = f"JobId={native_id} "
    for line in reversed(text.splitlines()):
        if line.startswith(marker):  # the newest record wins (ids restart with new state)
            fields = parse_key_values(line)
            return map_slurm_state(fields.get("JobState", ""), None,
                                   parse_exit_code(fields.get("ExitCode")))
    return None

def describe_end(native_id: str, status: NativeStatus) -> str:
    """The errorSummary text of a job SLURM ended: ``SLURM job 42 ended as NODE_FAIL (its
    node failed or stopped answering the controller)``."""
    state = status.reason or ("CANCELLED" if status.phase == "ABORTED" else status.phase)
    text = f"SLURM job {native_id} ended as {state}"
    explanation = _EXPLANATIONS.get(state)
    if state == "FAILED" and status.exit_code is not None:
        explanation = f"the batch job exited with status {status.exit_code}"
    if status.phase == "UNKNOWN":
        text = f"SLURM no longer knows job {native_id}"
        explanation = None
    return f"{text} ({explanation})" if explanation else text
