"""What the runner records of the machine and software a job ran with (stdlib only).

The execution context (host, platform, CPUs, memory, Python, the installed packages of the
activity's environment, an allow-listed set of environment variables) goes into the
outcome file; the server stores each distinct context once. Listing packages costs tens of
milliseconds, so it is cached in a file keyed by the environment's site directories and
their modification times (installing a package changes them).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any, cast

#: Environment variables worth recording; everything else may hold secrets and is never
#: recorded.
RECORDED_ENVIRONMENT = (
    "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_JOB_PARTITION", "SLURM_CLUSTER_NAME",
    "SLURMD_NODENAME", "SLURM_CPUS_PER_TASK", "SLURM_MEM_PER_NODE", "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
)


def _site_directories() -> list[str]:
    """Where distributions are installed: ``sys.path`` without the working directory,
    which ``python -m`` puts first. The runner runs in the job's folder, whose time
    changes as the job writes, so with it the cache never held (150 ms of every job's
    end spent listing the environment again; issue 15)."""
    here = os.getcwd()
    return [entry for entry in sys.path
            if entry and os.path.isdir(entry) and os.path.abspath(entry) != here]


def installed_packages(cache_file: Path | None = None) -> dict[str, str]:
    """{distribution name: version} of this Python environment, cached on disk."""
    directories = _site_directories()
    key = hashlib.sha256(json.dumps(
        [sys.executable] + [[d, os.stat(d).st_mtime_ns] for d in directories]
    ).encode()).hexdigest()
    if cache_file is not None:
        try:
            cached = json.loads(cache_file.read_text())
            if cached.get("key") == key:
                # JSON this function wrote: {"key": ..., "packages": {name: version}}.
                return cast(dict[str, str], cached["packages"])
        except (OSError, ValueError, AttributeError):
            pass
    from importlib import metadata

    packages = {}
    for distribution in metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            packages[name] = distribution.version
    packages = dict(sorted(packages.items(), key=lambda item: item[0].lower()))
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = cache_file.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps({"key": key, "packages": packages}))
            os.replace(temporary, cache_file)
        except OSError:
            pass
    return packages


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def execution_context(cache_file: Path | None = None) -> dict[str, Any]:
    """The machine and software of this run (ProvenanceDM: the activity's context)."""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "packages": installed_packages(cache_file),
        "environment": {name: os.environ[name] for name in RECORDED_ENVIRONMENT
                        if name in os.environ},
    }


def context_id(context: dict[str, Any]) -> str:
    """Content address of a context: identical contexts get the same id."""
    canonical = json.dumps(context, sort_keys=True, separators=(",", ":"))
    return "ctx-" + hashlib.sha256(canonical.encode()).hexdigest()
