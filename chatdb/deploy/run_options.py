"""Every ``-x`` option of a run, read once into one object that env.py hands down.

env.py reads Alembic's ``-x key=value`` arguments once (:meth:`RunOptions.from_x`):
names checked (:func:`chatdb.deploy.options.canonical`), every value parsed, so that a
mistyped option or value stops the run before it connects. What each part of a run
needs is a field of the result: the connection (the pooler check), the migration
lock and timeouts (``deploy``), the online path (``online``), the guards (``allow_*``)
and the reload hook (``pgrst_*``). Nothing below env.py reads the raw arguments again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chatdb.calls.check import CALLS_FILE, read_calls_file  # in the project's folder
from chatdb.calls.model import Call
from chatdb.deploy import options
from chatdb.deploy.locking import DeployOptions
from chatdb.deploy.online.settings import OnlineOptions
from chatdb.failures import BadInput

DEFAULT_CHANNEL = "pgrst"
CHANNEL_ENV = "PGRST_DB_CHANNEL"

# The overrides of the guards, each an explicit -x the operator gives (docs/deploying.md).
ALLOW_DATA_LOSS = "allow_data_loss"
ALLOW_WIDER_ACCESS = "allow_wider_access"
ALLOW_BREAKING_CALLS = "allow_breaking_calls"
ALLOW_TRANSACTION_POOLER = "allow_transaction_pooler"


@dataclass(frozen=True)
class RunOptions:
    """The options of one run (``alembic upgrade``/``downgrade``, ``chatdb plan``)."""

    deploy: DeployOptions = field(default_factory=lambda: DeployOptions.from_x({}))
    online: OnlineOptions = field(default_factory=OnlineOptions)
    allow_data_loss: bool = False
    allow_wider_access: bool = False
    allow_breaking_calls: bool = False
    allow_transaction_pooler: bool = False
    pgrst_channel: str = DEFAULT_CHANNEL
    pgrst_reload: bool = True
    # The backend's calls a run keeps working (chatdb.deploy.calls_guard), read from the
    # calls file before anything connects, and where they were read from.
    calls: tuple[Call, ...] = ()
    calls_source: str = ""  # the file as the operator names it (relative to the project)

    @classmethod
    def from_x(
        cls,
        x_args: Mapping[str, str],
        environ: Mapping[str, str] | None = None,
        project: Path | None = None,
    ) -> RunOptions:
        """Read ``-x`` arguments (``context.get_x_argument(as_dictionary=True)``) and
        the environment (PGRST_DB_CHANNEL); an unknown name or a bad value is a BadInput
        naming it. ``project``: the folder of alembic.ini, where the calls file is
        (``-x calls_file=PATH`` names another, relative to it)."""
        environ = os.environ if environ is None else environ
        x = options.canonical(x_args)
        calls_file, calls_source = None, ""
        if "calls_file" in x:
            calls_source = x["calls_file"]
            calls_file = (project or Path.cwd()) / x["calls_file"]
            if not calls_file.is_file():
                raise BadInput(f"-x calls_file={x['calls_file']!r}: no such file ({calls_file}).")
        elif project is not None and (project / CALLS_FILE).is_file():
            calls_file, calls_source = project / CALLS_FILE, str(CALLS_FILE)
        return cls(
            deploy=DeployOptions.from_x(x),
            online=OnlineOptions.from_x(x),
            allow_data_loss=options.flag(x, ALLOW_DATA_LOSS),
            allow_wider_access=options.flag(x, ALLOW_WIDER_ACCESS),
            allow_breaking_calls=options.flag(x, ALLOW_BREAKING_CALLS),
            allow_transaction_pooler=options.flag(x, ALLOW_TRANSACTION_POOLER),
            pgrst_channel=x.get("pgrst_channel") or environ.get(CHANNEL_ENV) or DEFAULT_CHANNEL,
            pgrst_reload=options.flag(x, "pgrst_reload", default=True),
            calls=tuple(read_calls_file(calls_file).calls) if calls_file else (),
            calls_source=calls_source,
        )


def of_context(migration_context: object) -> RunOptions:
    """The run's options, from inside a revision (``op.get_context()``): env.py passes
    them to ``context.configure`` as ``chatdb_options``; a context configured elsewhere
    (a tool that embeds Alembic with its own env.py) has the defaults."""
    found = getattr(migration_context, "opts", {}).get("chatdb_options")
    return found if isinstance(found, RunOptions) else RunOptions()
