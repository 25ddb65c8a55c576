"""``chatdb calls scan|check``: registered by chatdb.cli.build_parser."""

from __future__ import annotations

import argparse

from chatdb.calls import check, scan


def add_parser(sub: argparse._SubParsersAction) -> None:
    calls = sub.add_parser(
        "calls",
        help="the backend's PostgREST calls on the chat tables: read them from its code "
        "(scan), run them against a database (check)",
    )
    commands = calls.add_subparsers(dest="calls_command", required=True)
    scan.add_arguments(
        commands.add_parser(
            "scan",
            help="list the PostgREST calls on the chat tables in the backend's Python source",
        )
    )
    check.add_arguments(
        commands.add_parser(
            "check",
            help="run a calls file's calls as PostgREST runs them against DATABASE_URL, else "
            "the running local cluster, in a transaction that is rolled back",
        )
    )
