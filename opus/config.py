"""Settings: embedded defaults, then a YAML file named by ``OPUS_CONFIG``, then ``OPUS_*``.

Every setting has a default that lets ``opus serve`` run on a fresh machine (SQLite under
./var, the local manager, the activities in ./activity_descriptions). An environment
variable ``OPUS_<NAME>`` overrides the YAML key ``<name>``; values from the environment are
converted to the type of the default.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

#: The project checkout (parent of the package); activities and scripts live there.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    """All knobs of one OPUS instance. Two instances with different ``data_dir`` and port
    run side by side on one machine."""

    data_dir: Path = Path("var")
    database_url: str = ""  # default: sqlite under data_dir
    base_url: str = "http://127.0.0.1:8000"
    activities_dir: Path = PROJECT_ROOT / "activity_descriptions"
    manager: str = "local"  # local | slurm
    #: Jobs the local manager runs at once (0: number of cores).
    concurrency: int = 0
    #: WAIT=-1 and any larger WAIT are capped to this many seconds (UWS 1.1, 2.2.1.2).
    wait_max: float = 60.0
    #: executionDuration given to a job whose activity declares none; 0 means unlimited.
    default_execution_duration: int = 3600
    max_execution_duration: int = 86400
    #: Destruction time of a new job, and the latest a client may ask for (seconds from now).
    default_destruction: int = 7 * 86400
    max_destruction: int = 30 * 86400
    #: What happens at destruction time: "delete" (job and files) or "archive"
    #: (phase ARCHIVED, results deleted, metadata kept; UWS 1.1, 2.1.3).
    destruction_policy: str = "delete"
    #: Seconds between the scheduler's periodic passes (reconciliation, destruction,
    #: executionDuration backstop); phase changes wake it at once in between.
    scheduler_interval: float = 5.0
    #: Seconds a job may run past its executionDuration before the scheduler kills it
    #: (the runner enforces the limit itself; this is the backstop).
    kill_grace: float = 10.0
    #: gunicorn: worker processes and threads per worker (a WAIT holds a thread).
    workers: int = 2
    threads: int = 256
    #: Seconds an idle keep-alive connection is kept open (gunicorn ``keepalive``).
    keepalive: int = 75
    host: str = "127.0.0.1"
    port: int = 8000
    #: Largest request body accepted (bytes); larger gets 413.
    max_body: int = 100 * 1024 * 1024
    # SLURM manager
    slurm_login_host: str = ""
    slurm_partition: str = ""
    slurm_account: str = ""
    #: Python used to start the runner on the cluster (must see the opus package).
    runner_python: str = ""
    #: Inputs given by URL, fetched by the runner: size and time limits, and whether
    #: private, loopback and link-local addresses are refused (server-side request forgery).
    fetch_max_bytes: int = 1024 * 1024 * 1024
    fetch_timeout: float = 300.0
    fetch_block_private: bool = True
    #: Namespace of provenance identifiers (prefix ``opus:`` in documents); keep it stable
    #: for the life of the archive, whatever the server's URL.
    provenance_namespace: str = "ivo://opus.local/provenance#"
    #: ProvSAP stops a walk at this many nodes (DEPTH=ALL on a huge record).
    provsap_max_nodes: int = 10000
    #: Seconds a graph layout (SVG/PNG) may take before the fallback layout is used.
    graph_timeout: float = 10.0
    log_level: str = "INFO"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'opus.sqlite').resolve()}"

    @property
    def effective_concurrency(self) -> int:
        return self.concurrency or os.cpu_count() or 1

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def run_dir(self) -> Path:
        """Sockets and other per-instance runtime files (SQLite wake-up signal)."""
        return self.data_dir / "run"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def _convert(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name}: expected a boolean, got {value!r}")
    if isinstance(default, (int, float)):
        try:
            return type(default)(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(default, Path):
        return Path(str(value)).expanduser()
    return value


def load_settings(
    environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build the settings: defaults < YAML (``OPUS_CONFIG``) < environment < ``overrides``."""
    environ = os.environ if environ is None else environ
    defaults = Settings()
    values: dict[str, Any] = {}
    known = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(Settings)}
    config_file = environ.get("OPUS_CONFIG")
    if config_file:
        with open(config_file, encoding="utf-8") as stream:
            loaded = yaml.safe_load(stream) or {}
        if not isinstance(loaded, dict):
            raise SettingsError(f"{config_file}: expected a mapping of settings")
        extra = {}
        for key, value in loaded.items():
            if key in known and key != "extra":
                values[key] = _convert(key, value, known[key])
            else:
                extra[key] = value
        values["extra"] = extra
    for key, default in known.items():
        env_value = environ.get(f"OPUS_{key.upper()}")
        if env_value is not None and key != "extra":
            values[key] = _convert(key, env_value, default)
    values.update(overrides)
    settings = dataclasses.replace(defaults, **values)
    if settings.manager not in {"local", "slurm"}:
        raise SettingsError(f"manager: expected 'local' or 'slurm', got {settings.manager!r}")
    if settings.destruction_policy not in {"delete", "archive"}:
        raise SettingsError("destruction_policy: expected 'delete' or 'archive'")
    data_dir = settings.data_dir.resolve()
    return dataclasses.replace(
        settings, data_dir=data_dir, base_url=settings.base_url.rstrip("/")
    )
