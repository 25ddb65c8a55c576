"""Alembic environment of the chat schema: a thin script.

Behaviour lives in named modules: the connection, the migration lock, the run's
timeouts and lock retries, and failures in ``chatdb.deploy.runtime`` (see
docs/deploying.md); the online path for large tables, the data-loss and access
guards in ``chatdb.deploy.run``; the PostgREST reload in ``chatdb.deploy.reload``; what
autogenerate compares in ``chatdb.schema.autogen``. Options come from ``-x key=value``
and the environment (DATABASE_URL, PGRST_DB_CHANNEL), read once into one
``RunOptions`` (``chatdb.deploy.run_options``: a mistyped name or value stops the run)
that every part of the run gets from here.
"""

import io
from logging.config import fileConfig
from pathlib import Path

from alembic import context

from chatdb import failures
from chatdb.deploy import locking, online, runtime  # noqa: F401 - online: operations
from chatdb.deploy.reload import ReloadHook
from chatdb.deploy.run_options import RunOptions
from chatdb.schema import autogen
from models import Base

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations_offline() -> None:
    """``--sql``: write the script. It starts with the run's timeouts and ends with the
    reload NOTIFY when it applies anything."""
    run_options.online.refuse_offline()
    context.configure(
        url=runtime.offline_url(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **common_options,
    )
    with context.begin_transaction():
        for statement in locking.timeout_statements(run_options.deploy):
            context.execute(statement)
        context.run_migrations()
        reload_hook.send_if_applied(context)


def run_without_database() -> None:
    """``alembic history`` and a hand-written ``alembic revision`` with no DATABASE_URL:
    Alembic's script-only mode (as_sql, nothing written), so they need no database."""
    context.configure(
        url=runtime.offline_url(), as_sql=True, output_buffer=io.StringIO(), **common_options
    )
    context.run_migrations()


def run_migrations_online() -> None:
    """Under the migration lock: the online steps of large tables first, then one
    transaction for the whole run, retried whole after a lock timeout
    (chatdb.deploy.runtime). Each attempt counts its own revisions; the NOTIFY is the
    last statement of the attempt that commits, and chatdb up reads that attempt's hook."""

    def attempt(connection, run) -> None:
        hook = config.attributes["reload_hook"] = ReloadHook.from_options(run_options)
        run.prepare(context)
        context.configure(
            connection=connection,
            **{**common_options, "on_version_apply": hook.on_version_apply},
            **run.context_options(),
        )
        run.attach(context)
        with context.begin_transaction():
            run.lock_tables()  # the tables it works on, without making clients queue long
            context.run_migrations()
            hook.send_if_applied(context)  # delivered at commit, never on a rollback
            run.before_commit(applied=bool(hook.applied))

    runtime.run_online(config.attributes, run_options, attempt)
    config.attributes["reload_hook"].report_sent()


with failures.exit_codes(config):
    project = Path(config.config_file_name).parent if config.config_file_name else None
    run_options = RunOptions.from_x(context.get_x_argument(as_dictionary=True), project=project)
    reload_hook = ReloadHook.from_options(run_options)
    config.attributes["reload_hook"] = reload_hook
    common_options = dict(
        target_metadata=Base.metadata,
        on_version_apply=reload_hook.on_version_apply,
        chatdb_options=run_options,
        **autogen.configure_options(),
    )
    if context.is_offline_mode():
        run_migrations_offline()
    elif runtime.reads_scripts_only(config.cmd_opts):
        run_without_database()
    else:
        run_migrations_online()
