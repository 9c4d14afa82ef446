"""Settings of one OPUS instance, typed and documented in one place: the class ``Settings``.

Sources, lowest precedence first:

1. the defaults below, which let ``opus serve`` run on a fresh machine (SQLite under ./var,
   the local manager, the activities in ./activity_descriptions);
2. the YAML file named by the environment variable ``OPUS_CONFIG`` (keys: the setting names);
3. environment variables ``OPUS_<NAME>`` (any case), one per setting; a setting of a
   structured type (``resources``, ``slurm_sbatch_args``) takes JSON text there;
4. keyword overrides given to ``load_settings`` (tests, ``opus serve --port``...).

A key of the YAML file or an ``OPUS_*`` variable that is not a setting stops start-up with
a ``SettingsError`` naming it and the closest setting (a typo must not be silently ignored),
and so does a value of the wrong type or outside the allowed choices.

Why pydantic-settings: it is the maintained, widely used companion of pydantic for exactly
this job; the fields' type annotations drive the validation and conversion of every value
(numbers, booleans, paths, literals, nested mappings), whatever the source; and it ships the
environment source (prefix, case-insensitive names, JSON for structured values); the YAML
file, read with PyYAML, goes through the same validation. This module only adds the
unknown-key check and readable messages.
``Settings(...)`` built in code reads no environment and no file: only ``load_settings``
does (``opus.config.loading``), from the mapping it is given (tests pass a dict), so an
instance never depends on the process environment behind its caller's back.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

#: The project checkout (parent of the package); activities and scripts live there.
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

#: Environment variables of settings start with this; ``OPUS_CONFIG`` names the YAML file.
ENV_PREFIX = "OPUS_"
CONFIG_VARIABLE = "OPUS_CONFIG"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting is unknown or has a value the server cannot use."""


class ActivityResources(BaseModel):
    """Cluster resources of the jobs of one activity (an entry of the setting ``resources``).
    The SLURM manager turns them into sbatch options; the local manager ignores them."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    cpus: int | None = Field(default=None, ge=1)
    """CPUs per job (``--cpus-per-task``)."""
    memory: int | None = Field(default=None, ge=1)
    """Memory per job in MB (``--mem``)."""
    partition: str | None = None
    """SLURM partition, instead of the setting ``slurm_partition``."""
    account: str | None = None
    """SLURM account, instead of the setting ``slurm_account``."""


class TokenIssuer(BaseModel):
    """Where clients obtain Bearer tokens (the setting ``auth_token_issuer``), announced in
    an ``ivoa_bearer`` challenge (SSO 2.x WD section 2.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    standard_id: str = Field(pattern=r"^ivo://\S+$")
    """How to obtain a token there: an SSO mechanism, e.g.
    ``ivo://ivoa.net/sso#tls-with-password`` (POST username and password, the token comes
    back in ``x-vo-bearer``)."""
    access_url: str = Field(pattern=r"^https?://[^\s\"]+$")
    """Where to obtain it, e.g. ``https://sso.example.org/login``."""


class Settings(BaseSettings):
    """All knobs of one OPUS instance. Two instances with different ``data_dir`` and port
    run side by side on one machine. Immutable: ``replace`` returns a changed copy."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        validate_default=True,
        use_attribute_docstrings=True,
    )

    data_dir: Path = Path("var")
    """Jobs, runtime files and the default SQLite database live here (made absolute)."""
    database_url: str = ""
    """SQLAlchemy URL of the database; empty: SQLite file ``opus.sqlite`` in ``data_dir``."""
    base_url: str = "http://127.0.0.1:8000"
    """Public URL of the service (without trailing slash), used in every link and by the
    runners to report; ``opus serve --port`` derives it from host and port unless it was
    set explicitly."""
    activities_dir: Path = PROJECT_ROOT / "activity_descriptions"
    """Folder of the activity descriptions (XML) the service offers."""
    manager: Literal["local", "slurm"] = "local"
    """Where jobs run: ``local`` (processes of this machine) or ``slurm`` (batch jobs)."""
    concurrency: int = Field(default=0, ge=0)
    """Jobs the local manager runs at once (0: number of cores)."""
    wait_max: float = Field(default=60.0, ge=0)
    """WAIT=-1 and any larger WAIT are capped to this many seconds (UWS 1.1, 2.2.1.2)."""
    default_execution_duration: int = Field(default=3600, ge=0)
    """executionDuration (seconds) given to a job whose activity declares none; 0 means
    unlimited."""
    max_execution_duration: int = Field(default=86400, ge=0)
    """Largest executionDuration (seconds) a job of an activity that declares none may
    have; an activity's own executionDuration is its maximum. A larger request is lowered
    (UWS 1.1 section 2.2.3.4)."""
    default_destruction: int = Field(default=7 * 86400, ge=0)
    """Destruction time of a new job, in seconds from now."""
    max_destruction: int = Field(default=30 * 86400, ge=0)
    """Latest destruction time a client may ask for, in seconds from now."""
    destruction_policy: Literal["delete", "archive"] = "delete"
    """What happens at destruction time: ``delete`` (job and files) or ``archive`` (phase
    ARCHIVED, results deleted, metadata kept; UWS 1.1, 2.1.3)."""
    scheduler_interval: float = Field(default=5.0, gt=0)
    """Seconds between the scheduler's periodic passes (reconciliation, destruction,
    executionDuration backstop); phase changes wake it at once in between."""
    kill_grace: float = Field(default=10.0, ge=0)
    """Seconds a job may run past its executionDuration before the scheduler kills it (the
    runner enforces the limit itself; this is the backstop)."""
    workers: int = Field(default=2, ge=1)
    """gunicorn worker processes."""
    threads: int = Field(default=256, ge=1)
    """Threads per gunicorn worker with ``worker_class: gthread`` (a WAIT holds one)."""
    keepalive: int = Field(default=75, ge=0)
    """Seconds an idle keep-alive connection is kept open (gunicorn ``keepalive``)."""
    host: str = "127.0.0.1"
    """Address ``opus serve`` listens on."""
    port: int = Field(default=8000, ge=0, le=65535)
    """Port ``opus serve`` listens on."""
    max_body: int = Field(default=100 * 1024 * 1024, ge=0)
    """Largest request body accepted (bytes); larger gets 413."""

    # Identity (README, Security: Identity)
    auth_cache_ttl: float = Field(default=30.0, ge=0)
    """Seconds a web worker trusts a credential it has checked (token, Basic pair, proxy
    user) before asking the database again: a revoked or expired token, or a removed user,
    stops working within this time (0: ask every time)."""
    auth_basic: bool = True
    """Accept HTTP Basic authentication (``ivo://ivoa.net/sso#BasicAA``): the user name and
    one of the user's tokens as the password. It travels in clear: use TLS."""
    auth_token_issuer: TokenIssuer | None = None
    """Where clients obtain tokens, announced in an ``ivoa_bearer`` challenge, e.g.
    ``{"standard_id": "ivo://ivoa.net/sso#tls-with-password", "access_url":
    "https://sso.example.org/login"}``; unset: no ``ivoa_bearer`` challenge (tokens come
    from the operator's ``opus users token add``, which has no URL)."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks (``10.0.0.0/8``, ``::1``) of the reverse proxies whose
    ``X-Forwarded-For``, ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and identity header
    (``proxy_user_header``) are believed; from any other peer they are ignored (JSON list in
    ``OPUS_TRUSTED_PROXIES``)."""
    proxy_user_header: str = Field(default="", pattern=r"^[A-Za-z0-9-]*$")
    """Header in which a trusted authenticating proxy names the user, e.g.
    ``X-Remote-User``; the user must exist (``opus users add``). Empty: none."""

    # SLURM manager
    slurm_login_host: str = ""
    """Host where the SLURM commands run (through ssh); empty: this machine."""
    slurm_partition: str = ""
    """Partition of every job (an activity's ``resources`` entry may override it)."""
    slurm_account: str = ""
    """Account of every job (an activity's ``resources`` entry may override it)."""
    slurm_sbatch_args: tuple[str, ...] = ()
    """Extra sbatch options for every job, e.g. ``["--qos=normal"]`` (one string in YAML
    is one option; JSON list in ``OPUS_SLURM_SBATCH_ARGS``)."""
    slurm_login_environment: bool | None = None
    """Give jobs the user's login environment on the node (``--export=NONE``, about 2.5 s
    per job) rather than the server's basic variables; unset: only with a login host."""
    resources: dict[str, ActivityResources] = Field(default_factory=dict)
    """Cluster resources per activity name, ``"*"`` for every activity (the activity's
    entry overrides it key by key), e.g. ``{"*": {"partition": "short"}, "gammapy_maps":
    {"cpus": 4, "memory": 8000}}``; keys: cpus, memory (MB), partition, account."""
    runner_python: str = ""
    """Python used to start the runner on the cluster (must see the opus package); empty:
    the server's own interpreter."""

    # Inputs given by URL, fetched by the runner
    fetch_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=0)
    """Largest input fetched from a URL (bytes)."""
    fetch_timeout: float = Field(default=300.0, gt=0)
    """Seconds a URL input may take to fetch."""
    fetch_block_private: bool = True
    """Refuse input URLs of private, loopback and link-local addresses (server-side
    request forgery)."""
    data_roots: tuple[Path, ...] = ()
    """Folders of this server whose contents clients may name: a parameter declared as a
    server path (``xtype="opus:serverpath"``, such as gammapy_maps' ``datastore``) must lie
    under one of them once resolved (symlinks followed), or the job is refused with a 400;
    empty: every server path is refused. JSON list in ``OPUS_DATA_ROOTS``."""

    # Provenance
    provenance_namespace: str = "ivo://opus.local/provenance#"
    """Namespace of provenance identifiers (prefix ``opus:`` in documents); keep it stable
    for the life of the archive, whatever the server's URL."""
    provenance_templates_dir: Path = PROJECT_ROOT / "provenance_templates"
    """Folder of the activities' PROV-Templates (``<activity>.provn``)."""
    provsap_max_nodes: int = Field(default=10000, ge=1)
    """ProvSAP stops a walk at this many nodes (DEPTH=ALL on a huge record)."""
    graph_timeout: float = Field(default=10.0, gt=0)
    """Seconds a graph layout (SVG/PNG) may take before the fallback layout is used."""
    # ProvTAP (/tap, PostgreSQL only)
    tap_default_rows: int = Field(default=1000, ge=0)
    """Rows of a TAP result when the query gives no MAXREC."""
    tap_max_rows: int = Field(default=100000, ge=1)
    """Most rows of a TAP result (a larger MAXREC is lowered to this)."""
    tap_timeout: float = Field(default=30.0, gt=0)
    """Seconds a TAP query may run (statement_timeout)."""
    log_level: str = "INFO"
    """Python logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL."""
    # Disk space (issue 13: a full disk)
    min_free_space: int = Field(default=64 << 20, ge=0)
    """Bytes that must stay free in the data dir: below it, job creation and uploads are
    refused with 507 (RFC 4918 section 11.5) and the scheduler holds QUEUED jobs until
    space returns. 0: no check."""
    space_reserve: int = Field(default=4 << 20, ge=0)
    """SQLite only (its database is on the data dir): bytes kept in each of two files,
    ``DATA_DIR/run/space-reserve.deletion`` and ``.report``, the first given up when a
    DELETE finds the disk full (so that space can still be freed through the API), the
    second when the report that ends a job does; made again once the data dir has
    ``min_free_space`` besides. 0: none."""

    # One active scheduler, supervised (issue 13)
    scheduler_timeout: float = Field(default=10.0, gt=0)
    """Seconds without a heartbeat of the active scheduler after which ``/availability``
    says the service is unavailable (VOSI 1.1 section 2.2), and after which a standby
    scheduler on SQLite takes over the leadership lease (PostgreSQL: an advisory lock, freed
    as soon as the leader's connection goes). Heartbeats come every quarter of it."""
    claim_timeout: float = Field(default=60.0, gt=0)
    """Seconds after which a claimed job with no cluster id recorded (lost in a database
    blip or a crash during submission) is recovered: queued again if nothing was submitted,
    ended in ERROR otherwise; never left holding a slot."""
    # Limits that keep the service up (README, Limits)
    wait_per_client: int = Field(default=16, ge=0)
    """Blocking WAITs one client (a user; an anonymous caller by its address) may hold at
    once in one web worker process; a WAIT past it answers at once with the current job
    (UWS 1.1 section 2.2.1.1). 0: no WAIT blocks."""
    max_active_jobs: int = Field(default=20, ge=0)
    """QUEUED and EXECUTING jobs one owner may have (all anonymous callers are one owner);
    PHASE=RUN past it is answered 429 with ``Retry-After``. 0: no limit."""
    max_parameter_length: int = Field(default=64 * 1024, ge=1)
    """Longest parameter value (UTF-8 bytes) a client may give (a description may declare
    less through its arraysize); longer is a 400, and a non-multipart body far past it a
    413 before it is read."""
    quota_bytes: int = Field(default=10 * 1024**3, ge=0)
    """Disk space (bytes) of one owner's uploads and results together; an upload past it
    is answered 413, a job whose results would pass it ends in ERROR. 0: no quota."""

    # Serving (opus/serving.py): what a connection and a held WAIT cost
    worker_class: Literal["gevent", "gthread"] = "gevent"
    """gunicorn worker class: ``gevent`` (a WAIT or an idle connection costs a socket and a
    greenlet; psycopg made cooperative) or ``gthread`` (each costs one of ``threads``)."""
    connections_per_client: int = Field(default=256, ge=1)
    """Connections one client address may hold open in one worker process; more are
    answered 503 with Retry-After (behind a proxy, the proxy is the client)."""
    connections_max: int = Field(default=4096, ge=1)
    """Connections one worker process holds open in all; more are answered 503 with
    Retry-After rather than left waiting in the listen queue."""
    # ProvTAP async (/tap/async)
    tap_async_workers: int = Field(default=2, ge=1)
    """Async TAP queries one web process runs at once (its pool's threads); the others wait
    QUEUED."""
    tap_async_timeout: float = Field(default=600.0, gt=0)
    """Seconds an async TAP query may run (its executionDuration and statement_timeout)."""
    tap_async_lifetime: int = Field(default=7 * 86400, ge=60)
    """Seconds an async TAP job is kept after its creation (its destruction time)."""
    # Science gateway: forms from an ObsCore dataset, SAMP hand-off (issue 14)
    obscore_tap_url: str = Field(default="", pattern=r"^(https?://[A-Za-z0-9.:\[\]-]+(/\S*)?)?$")
    """Base URL of the TAP service whose ObsCore table resolves an ``obs_publisher_did``
    for a form opened from a dataset (``.../ui/activities/{name}?obs_publisher_did=...``);
    empty: only the ObsCore fields themselves can be passed."""
    obscore_table: str = Field(default="ivoa.obscore", pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")
    """The ObsCore table of that service (ObsCore 1.1 names it ``ivoa.obscore``)."""
    obscore_timeout: float = Field(default=10.0, gt=0)
    """Seconds the ObsCore TAP service may take to answer."""
    samp_hub_url: str = Field(default="http://localhost:21012/",
                              pattern=r"^https?://[A-Za-z0-9.:\[\]-]+(/\S*)?$")
    """Where the pages reach a SAMP hub's Web Profile (SAMP 1.3 section 5: port 21012 of
    the user's own machine); the pages' Content-Security-Policy allows connections there."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the values given: load_settings() reads the file and the environment.
        return (init_settings,)

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("activities_dir", "provenance_templates_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is no IP address or network") from None
        return value

    @field_validator("slurm_sbatch_args", mode="before")
    @classmethod
    def _one_option(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return value.upper()

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

    @property
    def base_url_is_explicit(self) -> bool:
        """Whether a source (YAML, ``OPUS_BASE_URL``, an override) set ``base_url``."""
        return "base_url" in self.model_fields_set

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied, validated like any other source. The settings
        that were set explicitly stay so (``model_fields_set``), plus the changed ones."""
        from opus.config.loading import _unknown, _validate  # the loader imports this module

        unknown = _unknown(changes, "replace()")
        if unknown:
            raise SettingsError(unknown)
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(changes)
        validated = _validate(values, dict.fromkeys(changes, "replace()"))
        return type(self).model_construct(
            _fields_set=self.model_fields_set | set(changes), **dict(validated))

    def listening_on(self, host: str | None = None, port: int | None = None) -> Settings:
        """These settings with ``opus serve --host/--port`` applied. A given port also
        makes ``base_url`` ``http://HOST:PORT``, unless ``base_url`` was set explicitly
        (YAML file, ``OPUS_BASE_URL`` or an override): then it is kept."""
        changes: dict[str, Any] = {key: value for key, value in
                                   {"host": host, "port": port}.items() if value is not None}
        if port is not None and not self.base_url_is_explicit:
            changes["base_url"] = f"http://{changes.get('host', self.host)}:{port}"
        return self.replace(**changes) if changes else self
