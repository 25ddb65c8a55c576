"""The post-migration hook that makes PostgREST reload its schema cache.

PostgREST LISTENs on its ``db-channel`` (default ``pgrst``); the payload
``reload schema`` makes it rebuild the schema cache. PostgreSQL delivers a NOTIFY
sent inside a transaction only at commit, and never when the transaction rolls
back, so the hook sends it as the last statement of the run's transaction: a
failed run sends nothing, a successful one exactly one notification.

Use from env.py::

    hook = ReloadHook.from_options(run_options)  # chatdb.deploy.run_options.RunOptions
    context.configure(..., on_version_apply=hook.on_version_apply)
    with context.begin_transaction():
        context.run_migrations()
        hook.send_if_applied(context)
    hook.report_sent()
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from chatdb.deploy.run_options import DEFAULT_CHANNEL, RunOptions

log = logging.getLogger("chatdb.deploy.reload")

PAYLOAD = "reload schema"
_SIMPLE_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]*$")


def quote_channel(channel: str) -> str:
    """The channel as a SQL identifier: bare when PostgreSQL would fold it unchanged."""
    if _SIMPLE_IDENTIFIER.match(channel):
        return channel
    return '"' + channel.replace('"', '""') + '"'


def notify_statement(channel: str) -> str:
    """``NOTIFY <channel>, 'reload schema'`` with the channel quoted as needed."""
    return f"NOTIFY {quote_channel(channel)}, '{PAYLOAD}'"


@dataclass
class ReloadHook:
    """Counts applied revisions and sends one reload notification if there were any."""

    channel: str = DEFAULT_CHANNEL
    enabled: bool = True
    applied: list[str] = field(default_factory=list)
    sent: bool = False

    @classmethod
    def from_options(cls, run_options: RunOptions) -> ReloadHook:
        """Built from ``-x pgrst_channel=..``/``-x pgrst_reload=..`` and PGRST_DB_CHANNEL,
        as RunOptions read them."""
        return cls(channel=run_options.pgrst_channel, enabled=run_options.pgrst_reload)

    def on_version_apply(self, *, step: Any, **_: Any) -> None:
        """Alembic's on_version_apply callback: remember each applied (not stamped) step."""
        if not step.is_stamp:
            self.applied.append(step.up_revision_id)

    def send_if_applied(self, context: Any) -> bool:
        """Emit the NOTIFY through the migration context, inside the run's transaction.

        Online it runs on the connection, so PostgreSQL delivers it at commit; with
        ``--sql`` it becomes the last statement of the script.
        """
        if not (self.enabled and self.applied):
            return False
        context.execute(notify_statement(self.channel))
        self.sent = True
        return True

    def report_sent(self) -> None:
        """The one log line, written once the transaction that carries the NOTIFY committed."""
        if self.sent:
            log.info(
                "PostgREST schema reload sent: NOTIFY on channel %r with payload %r",
                self.channel,
                PAYLOAD,
            )
        elif self.enabled:
            log.info("No revision applied: no PostgREST schema reload sent")
        else:
            log.info("PostgREST schema reload disabled (-x pgrst_reload=false)")
