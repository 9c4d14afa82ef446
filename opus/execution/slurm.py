"""Run OPUS jobs on a SLURM cluster.

:class:`SlurmManager` submits a :class:`~opus.execution.manager.JobTemplate` with
``sbatch``, asks ``squeue`` / ``scontrol`` / ``sacct`` (or the ``jobcomp/filetxt`` log) what
became of it, and cancels it with ``scancel``. Every command is an argument vector handed to
:mod:`subprocess`; nothing taken from a job is ever pasted into shell text.

State mapping
-------------
SLURM job states become UWS phases as the table of :mod:`opus.execution.slurm_states` says
(TIMEOUT or NODE_FAIL, for example, become ERROR; CANCELLED becomes ABORTED); that module
also reads what SLURM's commands print. :meth:`SlurmManager.status` asks, in order:
``squeue`` (live jobs), ``scontrol show job`` (live and recently finished jobs, with the exit
code), ``sacct`` when the cluster has accounting, and the ``jobcomp/filetxt`` log when the
cluster writes one (as the development cluster of ``scripts/slurm_cluster.sh`` does). Only
when none of them knows the job is the phase UNKNOWN; the scheduler then relies on the
runner's outcome file.

Time limit
----------
The runner enforces executionDuration itself and reports it as an ERROR that says so. The
SLURM limit (``--time``, in whole minutes) is the backstop: executionDuration plus
``time_margin`` (60 s by default: time for the runner to stop the activity, hash the outputs
and report) rounded up to minutes; :meth:`SlurmManager.effective_time_limit` gives it and the
scheduler records it as the job's ``time_limit``. A job SLURM ends with TIMEOUT (or
NODE_FAIL, OUT_OF_MEMORY...) becomes ERROR with an errorSummary naming the SLURM state
(:meth:`SlurmManager.describe`).

Status queries
--------------
The scheduler's periodic pass calls :meth:`SlurmManager.statuses` with every submitted job:
one ``squeue -j ID,ID,...`` call; only jobs that squeue no longer shows as live are then
asked about one by one (once per finished job).

How a job is submitted
----------------------
The manager writes a fixed batch script, ``#!/bin/sh`` + ``exec "$@"``, into the job's working
directory and runs ``sbatch --parsable [options] SCRIPT ARG1 ARG2 ...``: SLURM hands the
arguments after the script to it as ``$1 .. $n``, so the command reaches the compute node as
an argument vector, never as text.

The job environment is written, NUL-separated, to a private file (mode 0600) in the working
directory and passed as ``--export-file=FILE`` (names are checked to be identifiers; values
never appear on any command line, and SLURM's NUL-separated format allows commas, quotes and
newlines in them). This works the same locally and through ssh, since the file is read by
sbatch on the submission host; it is deleted as soon as sbatch returns. Two modes:

* ``login_environment=False`` (the default without a login host): ``--export=ALL``. With an
  export file, sbatch gives the job exactly the file's variables (plus ``SLURM_*``), never
  its own environment (the scheduler's, which may hold a database password). The file holds
  the template's variables and ``PATH``, ``HOME``, ``USER``, ``LOGNAME``, ``LANG``,
  ``LC_ALL``, ``TZ`` of the scheduler (:data:`BASE_ENVIRONMENT`), which suits nodes that
  share the scheduler's machine set-up.
* ``login_environment=True`` (the default with a login host): ``--export=NONE,NAME1,...``:
  SLURM gives the job the submitting user's login environment on the node (it sets
  ``SLURM_GET_USER_ENV=1`` and runs the login shell there), plus the template's variables,
  which take precedence. Right for remote nodes, but slurmd spends about 2.5 s per job
  getting that environment (measured on the test cluster, where the default mode starts a
  job in under 0.1 s).

The command should be an absolute path. Jobs are submitted with ``--no-requeue``: a UWS job
runs once.

Pointing OPUS at an existing cluster
------------------------------------
On a host where the SLURM client commands work (``sinfo`` shows the cluster), use the manager
as is, with the ``partition`` / ``account`` your site requires, and a job directory on a
file system shared with the compute nodes. Otherwise give ``login_host``: every command is
then run through ssh (:mod:`opus.execution.slurm_commands`), and the job directories must be
visible at the same path on the login host and the compute nodes (the batch script, the
environment file and the outputs are all there). Extra site options (QOS, constraints,
reservations) go in ``extra_sbatch_args``, e.g. ``("--qos=short",)``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from opus.execution.manager import JobTemplate, Manager, ManagerError, NativeStatus
from opus.execution.slurm_commands import command_argv, error_text, is_invalid_job, run_command
from opus.execution.slurm_states import (
    describe_end,
    jobcomp_status,
    sacct_status,
    scontrol_status,
    squeue_live,
    squeue_status,
)

log = logging.getLogger("opus.slurm")

#: Content of the batch script: run the arguments given after the script, as they are.
BATCH_SCRIPT = '#!/bin/sh\nexec "$@"\n'
BATCH_SCRIPT_NAME = "opus-slurm-job.sh"

#: Variables of the scheduler's environment a job gets when ``login_environment`` is off.
BASE_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
_NATIVE_ID = re.compile(r"^[0-9]+(_[0-9]+)?(\+[0-9]+)?$")
#: Job ids per squeue call in :meth:`SlurmManager.statuses` (keeps the command line short).
SQUEUE_CHUNK = 500
_ALREADY_DONE = ("already completing or completed", "invalid job id", "job not found")


def _minutes(seconds: int) -> int:
    return max(1, -(-int(seconds) // 60))


def _escape_filename(path: Path | str) -> str:
    """sbatch expands ``%j``, ``%u``... in --output/--error; ``%%`` is a literal ``%``."""
    return str(path).replace("%", "%%")


class SlurmManager(Manager):
    """A SLURM cluster, reached through its client commands, locally or over ssh."""

    name = "slurm"
    time_granularity = 60

    def __init__(self, *, login_host: str | None = None,
                 ssh_command: tuple[str, ...] = ("ssh", "-o", "BatchMode=yes"),
                 partition: str | None = None, account: str | None = None,
                 extra_sbatch_args: tuple[str, ...] = (), max_active: int = 1000,
                 command_timeout: float = 30.0, time_margin: int = 60,
                 outcome_grace: float = 5.0, login_environment: bool | None = None) -> None:
        self.login_host = login_host
        self.login_environment = bool(login_host) if login_environment is None \
            else login_environment
        self.time_margin = time_margin
        self.outcome_grace = outcome_grace
        self.ssh_command = tuple(ssh_command)
        self.partition = partition
        self.account = account
        self.extra_sbatch_args = tuple(extra_sbatch_args)
        self.max_active = max_active
        self.command_timeout = command_timeout
        self._config: dict[str, str] | None = None

    # ------------------------------------------------------------------ commands

    def command_argv(self, argv: Sequence[str]) -> list[str]:
        """The argument vector really executed for a SLURM command ``argv``."""
        return command_argv(argv, self.login_host, self.ssh_command)

    def _run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return run_command(argv, login_host=self.login_host, ssh_command=self.ssh_command,
                           timeout=self.command_timeout)

    def cluster_config(self) -> dict[str, str]:
        """``scontrol show config`` as a dict (cached; empty if it cannot be read)."""
        if self._config is None:
            config: dict[str, str] = {}
            try:
                proc = self._run(["scontrol", "show", "config"])
            except ManagerError:
                return config
            if proc.returncode == 0:
                for line in proc.stdout.splitlines():
                    key, sep, value = line.partition("=")
                    if sep:
                        config[key.strip()] = value.strip()
                self._config = config
            return config
        return self._config

    # ------------------------------------------------------------------ submit

    def sbatch_argv(self, template: JobTemplate, script: Path,
                    export_file: Path | None = None) -> list[str]:
        """The ``sbatch`` argument vector for ``template`` (without any ssh prefix)."""
        if not template.command:
            raise ManagerError(f"job {template.job_id}: empty command")
        resources = dict(template.resources or {})
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(template.job_id))[:100]
        argv = ["sbatch", "--parsable", f"--job-name=opus-{name}",
                f"--chdir={template.working_directory}", "--no-requeue"]
        if template.stdout_path is not None:
            argv.append(f"--output={_escape_filename(template.stdout_path)}")
        if template.stderr_path is not None:
            argv.append(f"--error={_escape_filename(template.stderr_path)}")
        if template.time_limit:
            argv.append(f"--time={_minutes(template.time_limit)}")
        cpus = resources.get("cpus")
        if cpus not in (None, ""):
            argv.append(f"--cpus-per-task={self._positive_int('cpus', cpus, template)}")
        memory = resources.get("memory")
        if memory not in (None, ""):
            argv.append(f"--mem={self._positive_int('memory', memory, template)}M")
        for key, default in (("partition", self.partition), ("account", self.account)):
            value = resources.get(key) or default
            if value:
                if not _SLURM_NAME.match(str(value)):
                    raise ManagerError(f"job {template.job_id}: invalid SLURM {key} {value!r}")
                argv.append(f"--{key}={value}")
        argv.extend(self.extra_sbatch_args)
        names = [self._env_name(key) for key in (template.environment or {})]
        if self.login_environment:
            # the user's login environment on the node, plus the template's variables, by
            # name (the values are in the --export-file, never on this command line)
            argv.append("--export=" + ",".join(["NONE", *names]))
        else:
            argv.append("--export=ALL")  # with --export-file: exactly the file's variables
        if export_file is not None:
            argv.append(f"--export-file={export_file}")
        argv.append(str(script))
        argv.extend(str(a) for a in template.command)
        return argv

    @staticmethod
    def _positive_int(key: str, value: object, template: JobTemplate) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            number = 0
        if number < 1:
            raise ManagerError(f"job {template.job_id}: resource {key} must be a positive "
                               f"integer, not {value!r}")
        return number

    @staticmethod
    def _env_name(key: object) -> str:
        key = str(key)
        if not _ENV_NAME.match(key):
            raise ManagerError(f"invalid environment variable name {key!r}")
        return key

    def job_environment(self, template: JobTemplate) -> dict[str, str]:
        """The variables written to the export file (see the module notes)."""
        environment: dict[str, str] = {}
        if not self.login_environment:
            environment.update({name: os.environ[name] for name in BASE_ENVIRONMENT
                                if name in os.environ and not self.login_host})
        environment.update(template.environment or {})
        return environment

    @classmethod
    def environment_file_content(cls, environment: dict[str, str]) -> bytes:
        """``NAME=value`` records separated by NUL, as ``sbatch --export-file`` reads them."""
        records = []
        for key, value in environment.items():
            key, value = cls._env_name(key), str(value)
            if "\0" in value:
                raise ManagerError(f"environment variable {key} contains a NUL character")
            records.append(f"{key}={value}".encode())
        return b"".join(r + b"\0" for r in records)

    def write_batch_script(self, directory: Path) -> Path:
        script = directory / BATCH_SCRIPT_NAME
        if not (script.is_file() and script.read_text() == BATCH_SCRIPT):
            tmp = directory / f".{BATCH_SCRIPT_NAME}.{os.getpid()}.tmp"
            tmp.write_text(BATCH_SCRIPT)
            tmp.chmod(0o755)
            tmp.replace(script)
        return script

    def submit(self, template: JobTemplate) -> str:
        directory = Path(template.working_directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            script = self.write_batch_script(directory)
            content = self.environment_file_content(self.job_environment(template))
            fd, name = tempfile.mkstemp(prefix=".opus-slurm-env.", dir=directory)  # mode 0600
        except OSError as exc:
            raise ManagerError(f"job {template.job_id}: cannot prepare {directory}: {exc}") from exc
        export_file = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            proc = self._run(self.sbatch_argv(template, script, export_file))
        finally:
            try:
                export_file.unlink()
            except OSError:
                pass
        if proc.returncode != 0:
            raise ManagerError(f"sbatch refused job {template.job_id}: {error_text(proc)}")
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        native_id = lines[-1].split(";")[0] if lines else ""
        if not _NATIVE_ID.match(native_id):
            raise ManagerError(f"sbatch gave no job id for job {template.job_id}: "
                               f"{proc.stdout.strip()!r} {proc.stderr.strip()!r}")
        return native_id

    # ------------------------------------------------------------------ status

    @staticmethod
    def _check_id(native_id: str) -> str:
        native_id = str(native_id).strip()
        if not _NATIVE_ID.match(native_id):
            raise ManagerError(f"not a SLURM job id: {native_id!r}")
        return native_id


    def status(self, native_id: str) -> NativeStatus:
        native_id = self._check_id(native_id)
        for query in (self._status_squeue, self._status_scontrol, self._status_sacct,
                      self._status_jobcomp):
            status = query(native_id)
            if status is not None:
                return status
        return NativeStatus("UNKNOWN")

    def statuses(self, native_ids: Iterable[str]) -> dict[str, NativeStatus]:
        """One ``squeue`` call for every live job (in chunks of :data:`SQUEUE_CHUNK` ids);
        only the jobs squeue does not show as live are then asked about one by one
        (``scontrol``, ``sacct``, jobcomp), which happens once per finished job."""
        ids = list(dict.fromkeys(self._check_id(i) for i in native_ids))
        found: dict[str, NativeStatus] = {}
        for start in range(0, len(ids), SQUEUE_CHUNK):
            chunk = ids[start:start + SQUEUE_CHUNK]
            try:
                found.update(self._squeue_many(chunk))
            except ManagerError as error:
                log.warning("squeue failed for %d jobs: %s", len(chunk), error)
                return found  # the cluster does not answer: ask again at the next pass
        for native_id in ids:
            if native_id not in found:
                try:
                    found[native_id] = self.status(native_id)
                except ManagerError as error:
                    log.warning("cannot query SLURM job %s: %s", native_id, error)
        return found

    def _squeue_many(self, ids: list[str]) -> dict[str, NativeStatus]:
        """Live jobs among ``ids``, as squeue shows them."""
        proc = self._run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%r"])
        if proc.returncode != 0:
            if is_invalid_job(proc):
                return {}  # none of them is known any more (squeue fails only then)
            raise ManagerError(f"squeue failed: {error_text(proc)}")
        return squeue_live(proc.stdout, ids)

    def describe(self, native_id: str, status: NativeStatus) -> str:
        """``SLURM job 42 ended as NODE_FAIL (its node failed or stopped answering)``."""
        return describe_end(native_id, status)

    def _status_squeue(self, native_id: str) -> NativeStatus | None:
        proc = self._run(["squeue", "-h", "-j", native_id, "-o", "%T|%r"])
        if proc.returncode != 0:
            if is_invalid_job(proc):
                return None
            raise ManagerError(f"squeue failed for job {native_id}: {error_text(proc)}")
        return squeue_status(proc.stdout)

    def _status_scontrol(self, native_id: str) -> NativeStatus | None:
        proc = self._run(["scontrol", "show", "job", "-o", native_id])
        if proc.returncode != 0:
            if is_invalid_job(proc):
                return None
            raise ManagerError(f"scontrol failed for job {native_id}: {error_text(proc)}")
        return scontrol_status(proc.stdout, native_id)

    def _status_sacct(self, native_id: str) -> NativeStatus | None:
        storage = self.cluster_config().get("AccountingStorageType", "")
        if not storage or storage == "accounting_storage/none":
            return None
        proc = self._run(["sacct", "-n", "-P", "-X", "-j", native_id, "-o", "JobID,State,ExitCode"])
        if proc.returncode != 0:
            return None
        return sacct_status(proc.stdout, native_id)

    def _status_jobcomp(self, native_id: str) -> NativeStatus | None:
        config = self.cluster_config()
        location = config.get("JobCompLoc", "")
        if config.get("JobCompType") != "jobcomp/filetxt" or not location.startswith("/"):
            return None
        if self.login_host:
            proc = self._run(["cat", "--", location])
            if proc.returncode != 0:
                return None
            text = proc.stdout
        else:
            try:
                text = Path(location).read_text(errors="replace")
            except OSError:
                return None
        return jobcomp_status(text, native_id)

    # ------------------------------------------------------------------ terminate

    def terminate(self, native_id: str) -> None:
        native_id = self._check_id(native_id)
        proc = self._run(["scancel", native_id])
        text = error_text(proc).lower() if (proc.returncode or proc.stderr.strip()) else ""
        if proc.returncode != 0 and not any(marker in text for marker in _ALREADY_DONE):
            raise ManagerError(f"scancel failed for job {native_id}: {error_text(proc)}")
