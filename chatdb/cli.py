"""The chatdb command: a local throwaway database and migration helpers.

chatdb up      migrate DATABASE_URL to head; without DATABASE_URL, start (or reuse)
               a local PostgreSQL in .chatdb/ and migrate that
chatdb down    stop the local PostgreSQL (--delete also removes its data)
chatdb access  what anon, authenticated and service_role can do (chatdb.inspect.access)
chatdb drift   how DATABASE_URL differs from the models (chatdb.inspect.drift)
chatdb plan    what `alembic upgrade head` would do, run and rolled back (chatdb.deploy.plan)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from alembic import command
from alembic.util import CommandError

from chatdb.deploy import plan
from chatdb.inspect import access, drift
from chatdb.local import throwaway as local
from chatdb.local.server import LocalPgError
from chatdb.project import alembic_config
from chatdb.urls import ENV_VAR, DatabaseUrlError, database_url_from_env, mask_url

log = logging.getLogger("chatdb")


def cmd_up(args: argparse.Namespace) -> int:
    if os.environ.get(ENV_VAR, "").strip():
        url = database_url_from_env()
        where = "DATABASE_URL"
    else:
        cluster = local.ensure_running()
        local.ensure_database(cluster)
        os.environ[ENV_VAR] = cluster.url(local.DBNAME)
        url = database_url_from_env()
        where = f"the local PostgreSQL in {cluster.datadir}"
    config = alembic_config(x_args=args.x)
    command.upgrade(config, "head")
    hook = config.attributes["reload_hook"]
    print(f"Database: {mask_url(url.set(drivername='postgresql'))}  ({where})")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CommandError, DatabaseUrlError, LocalPgError) as exc:
        print(f"chatdb: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
