"""Alembic environment of the chat schema: a thin script.

Behaviour lives in named modules: the connection and its failures in
``chatdb.runtime``, the PostgREST reload in ``chatdb.reload``, what autogenerate
compares in ``chatdb.autogen``. Options come from ``-x key=value`` and the
environment (DATABASE_URL, PGRST_DB_CHANNEL).
"""

from logging.config import fileConfig

from alembic import context

from chatdb import autogen, runtime
from chatdb.reload import ReloadHook
from models import Base

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

x_args = context.get_x_argument(as_dictionary=True)
reload_hook = ReloadHook.from_options(x_args)
config.attributes["reload_hook"] = reload_hook

common_options = dict(
    target_metadata=Base.metadata,
    on_version_apply=reload_hook.on_version_apply,
    **autogen.configure_options(),
)


def run_migrations_offline() -> None:
    """``--sql``: write the script; it ends with the reload NOTIFY when it applies anything."""
    context.configure(
        url=runtime.offline_url(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **common_options,
    )
    with context.begin_transaction():
        context.run_migrations()
        reload_hook.send_if_applied(context)


def run_migrations_online() -> None:
    """One transaction for the whole run; the NOTIFY is its last statement."""
    with runtime.migration_connection(config.attributes) as connection:
        context.configure(connection=connection, **common_options)
        with context.begin_transaction():
            context.run_migrations()
            reload_hook.send_if_applied(context)
    reload_hook.report_sent()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
