"""The chatdb command: a local throwaway database and migration helpers.

chatdb up      migrate DATABASE_URL to head; without DATABASE_URL, start (or reuse)
               a local PostgreSQL in .chatdb/ and migrate that
chatdb down    stop the local PostgreSQL (--delete also removes its data)
chatdb access  what anon, authenticated and service_role can do (chatdb.inspect.access)
chatdb drift   how the database differs from the models (chatdb.inspect.drift)
chatdb plan    what `alembic upgrade head` would do, run and rolled back (chatdb.deploy.plan)
chatdb calls   the backend's PostgREST calls on the chat tables: `scan` reads them from its
               code into a calls file, `check` runs them as PostgREST would (chatdb.calls)

drift, access and calls check read DATABASE_URL, else the running local cluster.

Every subcommand is a function of the parsed arguments that returns its exit code
(0, or 1 for a finding: drift found differences, plan found the deploy would fail) and
raises a :class:`chatdb.failures.Failure` when it fails: :func:`main` prints
``FAILED: <sentence>`` on stdout and exits with the kind's code, the same as
``alembic`` does (docs/failures.md).
"""

from __future__ import annotations

import argparse
import os
import sys

from alembic import command
from alembic.util import CommandError

from chatdb import database, failures
from chatdb.calls import command as calls
from chatdb.deploy import options, plan
from chatdb.inspect import access, drift
from chatdb.local import throwaway as local
from chatdb.project import alembic_config
from chatdb.urls import ENV_VAR


def cmd_up(args: argparse.Namespace) -> int:
    # A mistyped -x name is refused before anything happens (no cluster is started).
    options.canonical(options.from_list(args.x))
    if os.environ.get(ENV_VAR, "").strip():
        target = database.from_env()
        if target.cluster is not None:  # DATABASE_URL is the local cluster: start it
            local.ensure_running()
            local.ensure_database(target.cluster)
    else:
        cluster = local.ensure_running()
        local.ensure_database(cluster)
        target = database.local_target(cluster)
        os.environ[ENV_VAR] = cluster.url(local.DBNAME)
    # Said before connecting: nobody migrates a database without a line naming it.
    print(f"Migrating {target.shown}", flush=True)
    config = alembic_config(x_args=args.x)
    config.attributes["target"] = target
    command.upgrade(config, "head")
    hook = config.attributes["reload_hook"]
    if hook.applied:
        print("Applied revisions: " + ", ".join(hook.applied))
    else:
        print("Applied revisions: none (already at head)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    print(local.stop(delete=args.delete))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatdb", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="migrate to head (a local throwaway database by default)")
    up.add_argument("-x", action="append", default=[], help="passed to Alembic as -x")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop the local PostgreSQL")
    down.add_argument("--delete", action="store_true", help="also delete its data")
    down.set_defaults(func=cmd_down)
    access.add_parser(sub)
    drift.add_parser(sub)
    plan.add_parser(sub)
    calls.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as exc:  # a Failure of a kind; Alembic's own errors: 255
        return failures.report(exc)


if __name__ == "__main__":
    sys.exit(main())
