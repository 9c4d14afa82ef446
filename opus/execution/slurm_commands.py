"""Run SLURM's client commands, on this host or on a login host through ssh.

Every command is an argument vector handed to :mod:`subprocess` (never a shell); nothing
taken from a job is ever pasted into shell text. With a login host, the vector becomes
``ssh -o BatchMode=yes -- LOGIN_HOST 'sbatch' '--parsable' ...``, each argument quoted with
:func:`shlex.quote`: ssh joins its arguments into one line for the remote shell, which
splits it back into the same vector. Key-based, non-interactive ssh must work for the
account that runs the scheduler.

A command that cannot be started, or does not answer within the timeout, raises
:class:`~opus.execution.manager.ManagerError`; what a command that ran and failed means is
for :class:`~opus.execution.slurm.SlurmManager` to judge (:func:`error_text`,
:func:`is_invalid_job`).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

from opus.execution.manager import ManagerError

#: What SLURM's commands print about a job id they do not know (or no longer know).
_INVALID_JOB = ("invalid job id", "job not found", "unknown job")


def command_argv(argv: Sequence[str], login_host: str | None,
                 ssh_command: Sequence[str]) -> list[str]:
    """The argument vector really executed for a SLURM command ``argv``."""
    argv = [str(a) for a in argv]
    if not login_host:
        return argv
    # ssh joins everything after the host into one line for the remote shell: quote.
    return [*ssh_command, "--", login_host, " ".join(shlex.quote(a) for a in argv)]


def run_command(argv: Sequence[str], *, login_host: str | None, ssh_command: Sequence[str],
                timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (through ssh with a login host); its output is text, stdin is empty."""
    full = command_argv(argv, login_host, ssh_command)
    try:
        return subprocess.run(full, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise ManagerError(f"{argv[0]}: command not found ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise ManagerError(f"{argv[0]} did not answer within {timeout:g} s") from exc
    except OSError as exc:
        raise ManagerError(f"{argv[0]}: {exc}") from exc


def error_text(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed command said (stderr, else stdout, else its exit status)."""
    text = (proc.stderr or "").strip() or (proc.stdout or "").strip()
    return text or f"exit status {proc.returncode}"


def is_invalid_job(proc: subprocess.CompletedProcess[str]) -> bool:
    """Whether a command failed because SLURM does not know the job id (any more)."""
    text = f"{proc.stderr} {proc.stdout}".lower()
    return any(marker in text for marker in _INVALID_JOB)
