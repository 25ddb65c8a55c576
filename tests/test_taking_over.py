"""Issue 12, item 4, and issue 18, items 3 and 6: docs/taking-over-production.md, pasted as
written, on a database of each shape with rows in every table, standing in for
production.

The guide's shell blocks run one after another in a copy of the project (tests.docs: one
bash session, exported variables carried over, a failing command fails its block), with
only its example URLs replaced: production's by the shape's database, the local
cluster's port by the one ``./dev up`` gave the copy. Nothing is passed that the guide
does not show: no ``-x`` option, on any shape. Around the blocks, the test checks what
each step promises:

1-3. the copy holds production's catalog and prints its access matrix;
4-5. the plan of the copy succeeds and widens nothing; after its upgrade, drift lists
     nothing missing or different;
6-7. the plan of production says what the copy's said, the deploy succeeds, drift is
     clean, every row and value is kept (but the documented backfills), no access cell
     of anon or authenticated is wider than before, the backend's calls all succeed,
     and production's access matrix is the copy's.
"""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import create_engine, pool

from chatdb.deploy import widening
from chatdb.inspect import access, catalog
from tests import shapes
from tests.convergence import contract_problems, drift_problems, value_problems
from tests.docs import Reader, local_cluster, project_folder, shell_blocks
from tests.pg import ROOT

GUIDE = ROOT / "docs" / "taking-over-production.md"
PRODUCTION_EXAMPLE = (
    "postgresql://postgres:<password>@db.<project>.supabase.co:5432/postgres?sslmode=require"
)
LOCAL_EXAMPLE = "127.0.0.1:44625"  # the port the guide shows for ./dev up's cluster


def engine(url: str):
    return create_engine(url.replace("postgresql://", "postgresql+psycopg2://"),
                         poolclass=pool.NullPool)  # fmt: skip


def snapshot(url: str) -> catalog.Snapshot:
    e = engine(url)
    try:
        with e.connect() as connection:
            return catalog.snapshot(connection)
    finally:
        e.dispose()


def cells(url: str) -> dict[tuple[str, str, str], access.Cell]:
    """Every cell of anon and authenticated on the chat tables that exist."""
    e = engine(url)
    try:
        with e.connect() as connection:
            tables = access.existing_tables(connection)
            found = access.matrix(connection, tables, ("anon", "authenticated"))
    finally:
        e.dispose()
    return {(c.role, c.table, c.command): c for c in found}


def closing_line(plan_stdout: str) -> str:
    return plan_stdout.strip().splitlines()[-1]


def changes(report: str) -> list[str]:
    """The plan's changes and access cells, without the row estimates (the copy has no
    rows): what the copy rehearses is what production gets."""
    part = report.split("\nChanges, by table:\n", 1)[1].split("\nHazards:\n", 1)[0]
    return [line.split("  (")[0] if line.startswith("  chat_") else line
            for line in part.splitlines()]  # fmt: skip


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory):
    """One copy of the project and its local cluster for the four shapes, as one operator
    would rehearse them one after another: (folder, port). Each test starts without the
    guide's ``takeover`` database, as the guide's reader does."""
    folder = project_folder(tmp_path_factory.mktemp("takeover") / "project")
    with local_cluster(folder) as port:
        yield folder, port


@pytest.mark.parametrize("shape", ["a", "b", "c", "d"])
def test_the_guide_pasted_as_written_on_each_shape(shape, request, reader_folder):
    production = request.getfixturevalue(f"shape_{shape}_db")
    rows = shapes.all_rows(production.conn)
    assert all(rows.values()), "every chat table of production has rows"
    access_before = cells(production.url)
    folder, port = reader_folder
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS takeover WITH (FORCE)")
    export, local, load, plan_copy, upgrade_copy, plan_production, deploy = shell_blocks(GUIDE)
    copy_url = f"postgresql://postgres@127.0.0.1:{port}/takeover"
    reader = Reader(
        folder, {PRODUCTION_EXAMPLE: production.url, LOCAL_EXAMPLE: f"127.0.0.1:{port}"}
    )
    # 1-3. Export production's schema, make an empty database, load it: the copy's catalog
    # and access matrix are production's.
    *_, loaded = reader.run_all([export, local, load])
    assert catalog.differences(snapshot(production.url), snapshot(copy_url)) == {}
    assert loaded.stdout.rstrip().endswith("same access")
    # 4-5. Plan the copy (no -x: none is needed), upgrade it, check it.
    planned_copy, upgraded_copy = reader.run_all([plan_copy, upgrade_copy])
    # drift's finding (exit 1) on (b): only the column message, which c001 keeps.
    assert reader.findings == (['DATABASE_URL="$COPY_URL" ./dev drift'] if shape == "b" else [])
    assert "WIDER" not in planned_copy.stdout
    assert closing_line(planned_copy.stdout).startswith("The deploy would succeed")
    assert drift_problems(copy_url) == []
    # 6-7. Plan production, deploy, check it.
    planned, deployed = reader.run_all([plan_production, deploy])
    assert changes(planned.stdout) == changes(planned_copy.stdout)
    print(f"shape ({shape}): {closing_line(planned.stdout)}")  # for the record (pytest -s)
    assert drift_problems(production.url) == []
    assert value_problems(rows, shapes.all_rows(production.conn)) == []
    assert contract_problems(production.conn) == []
    access_after = cells(production.url)
    for key, cell in sorted(access_after.items()):
        before = access_before.get(key)
        print(f"  {' '.join(key)}: {before.rows if before else '(new table)'} -> {cell.rows}")
    wider = [
        f"{key}: {access_before[key].rows} -> {cell.rows}"
        for key, cell in access_after.items()
        if key in access_before and widening.wider(access_before[key], cell)
    ]
    assert wider == [], "the takeover widened what anon or authenticated can do"
    assert {cell.rows for cell in access_after.values()} == {access.NONE}
    assert matrix_printed(deployed.stdout) == matrix_printed(upgraded_copy.stdout)


def matrix_printed(stdout: str) -> str:
    """The access table a block printed (``./dev access``), without its first line (which
    names the database)."""
    return stdout.split("Access to the chat tables at ", 1)[1].split("\n", 1)[1]
