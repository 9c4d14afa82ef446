"""The ``opus`` command: serve, scheduler, db upgrade, activities check, users (and their
tokens), provenance template."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from opus.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from opus.storage.users import UserStore

log = logging.getLogger("opus")


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


#: Files OPUS creates are the server account's alone (job folders, uploads, results, the
#: SQLite database and its -wal, -shm and lock files): folders 0700, files 0600.
PRIVATE_UMASK = 0o077


def private_data_dir(settings: Settings) -> None:
    """The process umask and the data folders of a server process, private to its
    account (an existing folder open to others is closed); the process not dumpable."""
    from opus.execution.sandbox import not_dumpable

    os.umask(PRIVATE_UMASK)
    not_dumpable()  # its environment (a database URL) is not for an activity to read
    for directory in (settings.data_dir, settings.jobs_dir, settings.run_dir):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = directory.stat().st_mode
        if mode & 0o077:
            log.info("closing %s to other accounts (was %o)", directory, mode & 0o777)
            directory.chmod(mode & 0o700)


def cmd_db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    from opus.storage.engine import make_engine, upgrade

    engine = make_engine(settings.effective_database_url)
    upgrade(engine)
    print(f"database at {engine.url.render_as_string(hide_password=True)} is up to date")
    return 0


def cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    """``opus scheduler``: the supervisor, which runs ``opus scheduler --worker`` and
    restarts it when it dies (opus/execution/supervisor.py)."""
    from opus.execution import supervisor

    private_data_dir(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.parent_pid:  # stop with the `opus serve` (or supervisor) that started us
        supervisor.watch_parent(args.parent_pid, stop)
    if not args.worker:
        code = supervisor.supervise([sys.executable, "-m", "opus.cli", "scheduler",
                                     "--worker", "--parent-pid", str(os.getpid())], stop)
        if code and args.parent_pid:
            stop.wait()  # under `opus serve`: exiting would only get us started again
        return code
    from opus.execution.scheduler import main_loop
    from opus.services import build_services

    refused = supervisor.check_start(settings, stop)
    if refused is not None:
        return refused
    main_loop(build_services(settings), stop)
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from opus.storage.engine import make_engine, upgrade

    # --port also moves base_url, unless the YAML file, OPUS_BASE_URL... set it explicitly.
    settings = settings.listening_on(host=args.host, port=args.port)
    if args.workers is not None:
        settings = settings.replace(workers=args.workers)
    private_data_dir(settings)
    engine = make_engine(settings.effective_database_url)
    upgrade(engine)
    from opus.storage.installation import DataDirMismatch, check_data_dir

    try:
        check_data_dir(engine, settings.data_dir)
    except DataDirMismatch as error:
        print(f"opus: {error}", file=sys.stderr)
        return 78  # EX_CONFIG
    environment = {**os.environ, "OPUS_HOST": settings.host, "OPUS_PORT": str(settings.port),
                   "OPUS_BASE_URL": settings.base_url, "OPUS_DATA_DIR": str(settings.data_dir)}
    stop = threading.Event()
    keeper = None
    if not args.no_scheduler:
        from opus.execution.supervisor import supervise

        # The scheduler's supervisor, started again if it is killed (issue 13).
        keeper = threading.Thread(
            target=supervise, name="scheduler-keeper", daemon=True,
            args=([sys.executable, "-m", "opus.cli", "scheduler",
                   "--parent-pid", str(os.getpid())], stop),
            kwargs={"env": environment, "name": "scheduler supervisor"})
        keeper.start()
    log.info("OPUS serving on http://%s:%s (data in %s)", settings.host, settings.port,
             settings.data_dir)
    try:
        from opus.serving import serve

        serve(settings)
    finally:
        stop.set()
        if keeper is not None:
            keeper.join(20)
    return 0


def cmd_activities_check(_settings: Settings, args: argparse.Namespace) -> int:
    from opus.activities.check import check_files

    return check_files([Path(p) for p in args.files])


def cmd_provenance_template(settings: Settings, args: argparse.Namespace) -> int:
    """Print an activity's PROV-Template (its .provn file, or the default one)."""
    from opus.activities.registry import ActivityRegistry
    from opus.provenance.templates import TemplateSyntaxError, template_provn

    registry = ActivityRegistry.load(settings.activities_dir)
    if args.activity not in registry:
        known = ", ".join(registry.names()) or "none"
        print(f"opus: no activity named {args.activity!r} in {settings.activities_dir} "
              f"(known: {known})", file=sys.stderr)
        return 1
    directory = args.directory or settings.provenance_templates_dir
    try:
        text = template_provn(registry.get(args.activity), directory,
                              namespace=settings.provenance_namespace)
    except TemplateSyntaxError as error:
        print(f"opus: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    """`opus users add|remove|list|token ...`: clients then send ``Authorization: Bearer
    TOKEN`` (or Basic with their name and a token)."""
    from opus.errors import ClientError
    from opus.storage.engine import make_engine, upgrade
    from opus.storage.users import UserStore

    engine = make_engine(settings.effective_database_url)
    upgrade(engine)
    users = UserStore(engine)
    if args.users == "token":
        return _tokens(users, args)
    if args.users == "add":
        try:
            print(users.add(args.name, role="admin" if args.admin else "user"))
        except ClientError as error:
            print(error.message, file=sys.stderr)
            return 1
    elif args.users == "remove":
        if not users.remove(args.name):
            print(f"no user {args.name!r}", file=sys.stderr)
            return 1
    else:
        for name in users.names():
            print(name)
    return 0


def _tokens(users: UserStore, args: argparse.Namespace) -> int:
    """`opus users token add|list|revoke NAME ...`."""
    from opus.errors import ClientError
    from opus.uws.models import utcnow

    if users.identity_for_name(args.name) is None:
        print(f"no user {args.name!r}", file=sys.stderr)
        return 1
    now = utcnow()
    if args.token == "add":
        try:
            expires = None if args.expires is None else _expiry(args.expires, now)
            print(users.add_token(args.name, label=args.label, expires=expires))
        except (ClientError, ValueError) as error:
            print(error.message if isinstance(error, ClientError) else error, file=sys.stderr)
            return 1
    elif args.token == "revoke":
        if not users.revoke_token(args.name, args.id):
            print(f"user {args.name!r} has no live token {args.id}", file=sys.stderr)
            return 1
    else:
        print(f"{'ID':>5}  {'STATUS':<8} {'CREATED':<20} {'EXPIRES':<20} LABEL")
        for token in users.tokens_of(args.name):
            status = ("revoked" if token.revoked else
                      "expired" if token.expires and token.expires <= now else "active")
            print(f"{token.id:>5}  {status:<8} {_when(token.created):<20} "
                  f"{_when(token.expires) or 'never':<20} {token.label or ''}")
    return 0


def _expiry(text: str, now: dt.datetime) -> dt.datetime:
    """``--expires``: a number of days from now, or an ISO 8601 date or time (UTC unless it
    says otherwise); as a naive UTC datetime (what the store keeps), in the future."""
    try:
        expires = now + dt.timedelta(days=float(text))
    except ValueError:
        try:
            given = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--expires {text!r}: expected a number of days or an ISO "
                             f"8601 date or time, e.g. 30 or 2030-01-31T12:00Z") from None
        expires = (given.astimezone(dt.timezone.utc).replace(tzinfo=None)
                   if given.tzinfo else given)
    except OverflowError:
        raise ValueError(f"--expires {text!r}: too far away") from None
    if expires <= now:
        raise ValueError(f"--expires {text!r}: not in the future")
    return expires


def _when(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="opus", description="OPUS job server")
    commands = top.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the web server and the scheduler")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--no-scheduler", action="store_true",
                       help="web server only (run `opus scheduler` elsewhere)")
    serve.set_defaults(handler=cmd_serve)
    scheduler = commands.add_parser("scheduler", help="run the scheduler alone")
    scheduler.add_argument("--parent-pid", type=int, default=0, help=argparse.SUPPRESS)
    scheduler.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    scheduler.set_defaults(handler=cmd_scheduler)
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db",
                                                                          required=True)
    db.add_parser("upgrade", help="create or migrate the schema").set_defaults(
        handler=cmd_db_upgrade)
    activities = commands.add_parser("activities", help="activity descriptions")
    activity_commands = activities.add_subparsers(dest="activities", required=True)
    check = activity_commands.add_parser("check", help="report problems in description files")
    check.add_argument("files", nargs="+")
    check.set_defaults(handler=cmd_activities_check)
    provenance = commands.add_parser("provenance", help="provenance templates")
    provenance_commands = provenance.add_subparsers(dest="provenance", required=True)
    template = provenance_commands.add_parser(
        "template", help="print the PROV-Template of an activity (PROV-N)")
    template.add_argument("activity")
    template.add_argument("--directory", type=Path,
                          help="templates directory (default: provenance_templates/)")
    template.set_defaults(handler=cmd_provenance_template)
    people = commands.add_parser("users", help="users and their API tokens")
    user_commands = people.add_subparsers(dest="users", required=True)
    add = user_commands.add_parser("add", help="create a user and print its token (once)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true",
                     help="an administrator: sees and changes every job and record")
    add.set_defaults(handler=cmd_users)
    remove = user_commands.add_parser("remove", help="remove a user (its token stops working)")
    remove.add_argument("name")
    remove.set_defaults(handler=cmd_users)
    user_commands.add_parser("list", help="list the users").set_defaults(handler=cmd_users)
    token = user_commands.add_parser("token", help="a user's API tokens")
    token_commands = token.add_subparsers(dest="token", required=True)
    token_add = token_commands.add_parser("add", help="give a user another token and print "
                                                      "it (once)")
    token_add.add_argument("name")
    token_add.add_argument("--expires", metavar="DAYS|ISO",
                           help="expiry: days from now, or an ISO 8601 date or time (UTC "
                                "unless given); default: never")
    token_add.add_argument("--label", help="what the token is for (shown by list)")
    token_list = token_commands.add_parser("list", help="list a user's tokens (never the "
                                                        "tokens themselves)")
    token_list.add_argument("name")
    token_revoke = token_commands.add_parser("revoke", help="revoke one token (running "
                                             "workers forget it within auth_cache_ttl)")
    token_revoke.add_argument("name")
    token_revoke.add_argument("id", type=int, help="its ID, as list shows it")
    for command in (token_add, token_list, token_revoke):
        command.set_defaults(handler=cmd_users)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:  # a typo or bad value in the YAML file or OPUS_*
        print(f"opus: {error}", file=sys.stderr)
        return 2
    _logging(settings)
    return int(args.handler(settings, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
