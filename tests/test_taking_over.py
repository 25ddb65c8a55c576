"""Issue 12, item 4: the walkthrough of docs/taking-over-production.md, step by step, on a
database of each shape with rows in every table, standing in for production.

1. From "production": the schema of the chat tables and of websites/delivery_orders
   (pg_dump --schema-only, the exact command of the walkthrough), and the output of
   docs/takeover/platform.sql and docs/takeover/access.sql (psql -X -At);
2. into a fresh, empty database of another cluster (the plain one, standing in for the
   local cluster of ./dev up): platform.sql, the dump, access.sql, each with
   ON_ERROR_STOP in one transaction; the copy's catalog and access matrix are
   production's;
3. on the copy: chatdb plan, alembic upgrade head, chatdb drift;
4. on "production": chatdb plan, then the deploy, then chatdb drift: converged, every
   value kept, the backend's contract kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, pool

from chatdb.inspect import catalog
from chatdb.local.server import bindir
from tests import shapes, warm
from tests.convergence import (
    SHAPES_WIDENING,
    chatdb_run,
    contract_problems,
    drift_problems,
    value_problems,
)
from tests.pg import ROOT, alembic_cli

TABLES = ("chat_conversations", "chat_messages", "chat_participants", "websites", "delivery_orders")
DOCS = ROOT / "docs" / "takeover"


def run(*args: str, output: Path | None = None) -> str:
    result = warm.run(list(args), cwd=os.getcwd(), env=dict(os.environ), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    if output is not None:
        output.write_text(result.stdout)
    return result.stdout


def export(production: str, folder: Path) -> list[Path]:
    """Step 1 of the walkthrough, as written there."""
    dump = [str(bindir() / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges"]
    dump += [f"--table=public.{table}" for table in TABLES]
    run(*dump, production, output=folder / "chat-schema.sql")
    for name in ("platform", "access"):
        run(str(bindir() / "psql"), production, "-X", "-At", "-f", str(DOCS / f"{name}.sql"),
            output=folder / f"{name}.sql")  # fmt: skip
    return [folder / name for name in ("platform.sql", "chat-schema.sql", "access.sql")]


def snapshot(url: str) -> catalog.Snapshot:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"),
                           poolclass=pool.NullPool)  # fmt: skip
    try:
        with engine.connect() as connection:
            return catalog.snapshot(connection)
    finally:
        engine.dispose()


def access_table(url: str) -> list[str]:
    result = chatdb_run("access", url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()[1:]  # the first line names the database


@pytest.mark.parametrize("shape", ["a", "b", "c", "d"])
def test_the_walkthrough_on_each_shape(shape, request, tmp_path, local_copy):
    production = request.getfixturevalue(f"shape_{shape}_db")
    rows = shapes.all_rows(production.conn)
    assert all(rows.values()), "every chat table of production has rows"
    widens = ["-x", "allow_wider_access=true"] if SHAPES_WIDENING[shape] else []

    # 1-2: the copy
    for script in export(production.url, tmp_path):
        run(str(bindir() / "psql"), local_copy, "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "--single-transaction", "-f", str(script))  # fmt: skip
    assert catalog.differences(snapshot(production.url), snapshot(local_copy)) == {}
    assert access_table(local_copy) == access_table(production.url)

    # 3: plan, upgrade and drift on the copy
    local_plan = chatdb_run("plan", *widens, url=local_copy)
    assert local_plan.returncode == 0, local_plan.stdout + local_plan.stderr
    upgraded = alembic_cli(*widens, "upgrade", "head", url=local_copy)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert drift_problems(local_copy) == []

    # 4: plan, deploy and drift on production
    production_plan = chatdb_run("plan", *widens, url=production.url)
    assert production_plan.returncode == 0, production_plan.stdout + production_plan.stderr
    assert changes(production_plan.stdout) == changes(local_plan.stdout)
    deployed = alembic_cli(*widens, "upgrade", "head", url=production.url)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert drift_problems(production.url) == []
    assert value_problems(rows, shapes.all_rows(production.conn)) == []
    assert contract_problems(production.conn) == []
    assert access_table(production.url) == access_table(local_copy)


def changes(report: str) -> list[str]:
    """The plan's changes and access cells, without the row estimates (the copy has no
    rows): what the copy rehearses is what production gets."""
    part = report.split("\nChanges, by table:\n", 1)[1].split("\nHazards:\n", 1)[0]
    return [line.split("  (")[0] if line.startswith("  chat_") else line
            for line in part.splitlines()]  # fmt: skip
