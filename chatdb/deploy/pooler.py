"""Refuse Supabase's transaction-mode pooler (port 6543) unless told otherwise.

In transaction mode (Supavisor or PgBouncer) each transaction may run on another
server session: the session-level migration lock, the ``SET lock_timeout`` /
``SET statement_timeout`` of the run, and LISTEN/NOTIFY do not survive, so
concurrent deploys would not be serialized and the timeouts would not apply.
Migrations belong on the direct connection (``db.<project>.supabase.co:5432``) or
the session pooler (port 5432 of the pooler host).
"""

from __future__ import annotations

from sqlalchemy.engine import URL

from chatdb.deploy import run_options
from chatdb.failures import BadInput
from chatdb.urls import mask_url

TRANSACTION_POOLER_PORT = 6543
OVERRIDE = run_options.ALLOW_TRANSACTION_POOLER


def refuse_transaction_pooler(url: URL, allowed: bool) -> None:
    """Raise BadInput for a URL on port 6543 unless ``-x allow_transaction_pooler=true``
    (``allowed``)."""
    if url.port != TRANSACTION_POOLER_PORT or allowed:
        return
    raise BadInput(
        f"DATABASE_URL ({mask_url(url.set(drivername='postgresql'))}) uses port "
        f"{TRANSACTION_POOLER_PORT}, Supabase's transaction-mode pooler, where the migration "
        "lock, SET lock_timeout/statement_timeout and LISTEN/NOTIFY do not survive from one "
        "transaction to the next; nothing was changed: use the direct connection "
        "(db.<project>.supabase.co:5432) or the session pooler (port 5432), or pass "
        f"-x {OVERRIDE}=true if port {TRANSACTION_POOLER_PORT} is not a transaction pooler."
    )
