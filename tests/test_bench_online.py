"""benchmarks/bench_online.py runs end to end: both arms, the steps, the worst-op lines.

A tiny run (2,000 conversations, two clients, short warmup) of the real script as a
subprocess, on the throwaway server it starts itself. The figures are not checked
(they are for docs/benchmark.md); what is checked is that the report is complete and that the
project's arm repaired every row without a client error.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import subprocess
import sys

from tests.pg import ROOT

SCRIPT = ROOT / "benchmarks" / "bench_online.py"


def section(output: str, start: str, end: str | None) -> str:
    """The report's lines from the one starting with ``start`` to the one before ``end``."""
    begin = output.index(f"\n{start}")
    return output[begin : output.index(f"\n{end}", begin) if end else None]


def figure(text: str, label: str) -> int:
    match = re.search(rf"^  {re.escape(label)}\s+(-?\d+)", text, re.MULTILINE)
    assert match, f"no line {label!r} in:\n{text}"
    return int(match[1])


def test_bench_online_reports_both_arms_steps_and_the_worst_operation():
    argv = [
        sys.executable,
        str(SCRIPT),
        "--rows",
        "2000",
        "--from",
        "base",
        "--clients",
        "2",
        "--warmup",
        "0.3",
        "--cooldown",
        "0.2",
        "-x",
        "online=always",
    ]
    result = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout

    assert output.startswith("bench_online: from base")
    assert re.search(r"^machine: nproc \d+, memory .* PostgreSQL 1\d", output, re.MULTILINE)
    original = section(output, "(a) original SQL", "(b) project")
    project = section(output, "(b) project: alembic -x online=always upgrade head", "comparison")

    # (a): both hand-run files, each reported, with the figures and the worst op's statement.
    assert "original_004_chat_system.sql: " in original
    assert "original_008_fix_customer_id.sql: committed" in original
    for label in (
        "migration wall time",
        "worst client op",
        "p99 client op",
        "client ops during it",
    ):
        assert f"  {label} " in original
    figure(original, "client errors")
    figure(original, "NULL customer_id left")
    assert "  schema after " in original
    assert re.search(r"^  worst op started during   (read|update|insert) ", original, re.MULTILINE)
    assert "steps of the run" not in original

    # (b): the online path ran, its steps were timed, and the worst op was attributed.
    assert "chat_conversations: online path" in project
    assert "steps of the run, from " in project
    assert "a statement shorter than that is often missed" in project
    step_line = (
        r"^\s+\+\d+\.\d\d s\s+\d+\.\d{3}\s+\d+\.\d%  "
        r"backfill of chat_conversations: UPDATE batches of pages"
    )
    assert re.search(step_line, project, re.MULTILINE)
    assert re.search(r"^  client ops over 50 ms +\d+$", project, re.MULTILINE)
    assert "CREATE INDEX CONCURRENTLY idx_chat_conversations_customer" in project
    assert "logged by the run (chatdb.deploy lines with ' in <number> s'):" in project
    assert re.search(r"^  worst op started during   (read|update|insert) ", project, re.MULTILINE)
    assert figure(project, "client ops during it") > 0
    assert figure(project, "client errors") == 0, project
    assert figure(project, "NULL customer_id left") == 0, project
    assert "customer_id NOT NULL; idx_chat_conversations_customer valid" in project, project

    comparison = r"^comparison: worst client op original [\d.]+ ms, project [\d.]+ ms, ratio"
    assert re.search(comparison, output, re.MULTILINE)


@functools.cache
def load_benchmark():
    """benchmarks/bench_online.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_online", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_lines_logged_with_a_duration_are_picked_from_chatdb_deploy_only():
    timed = load_benchmark().TIMED_LOG_LINE
    assert timed.search(
        "INFO  [chatdb.deploy.online] online: chat_conversations: fill customer_id in batches "
        "of pages (one pass over the table) in 1.25 s"
    )
    assert timed.search("INFO  [chatdb.deploy] migration lock taken in 0 s (waited for none)")
    assert not timed.search("INFO  [chatdb.deploy.online] backfilled 10 rows in 2 batches")
    assert not timed.search("INFO  [chatdb.deploy.online] built it in 5 steps")
    assert not timed.search("INFO  [chatdb.cli] started in 1.5 s")
    assert not timed.search("INFO  [alembic.runtime.migration] done in 1.5 s")


def test_statements_group_into_steps_named_batched_and_by_transaction():
    bench = load_benchmark()

    def statement(query: str, start: float, end: float, xact: float | None):
        return bench.Statement(pid=1, start=start, query=query, xact_start=xact, ended=end)

    def batch(first: int) -> str:
        """A backfill batch as chatdb.deploy.online.steps.BackfillGroup sends it."""
        return (
            "WITH done AS (UPDATE public.chat_conversations SET customer_id = x "
            f"WHERE ctid >= format('(%s,0)', CAST({first} AS bigint))::tid "
            f"AND ctid < format('(%s,0)', CAST({first + 16} AS bigint))::tid "
            "AND ((customer_id IS NULL)) RETURNING 1) SELECT count(*) FROM done"
        )

    statements = [
        statement("SELECT pg_try_advisory_lock(1)", 0.0, 0.1, 0.0),
        statement("BEGIN", 0.2, 0.2, 0.2),
        statement("CREATE INDEX IF NOT EXISTS idx_a ON public.t (a)", 0.3, 1.3, 0.2),
        statement("ALTER TABLE public.t ENABLE ROW LEVEL SECURITY", 1.4, 1.5, 0.2),
        statement("COMMIT", 1.6, 1.7, 0.2),
        statement("SET lock_timeout = '50ms'", 1.8, 1.8, None),
        statement(batch(0), 2.0, 2.1, 2.0),
        statement("SELECT 1", 2.2, 2.3, 2.2),
        statement(batch(16), 2.4, 2.7, 2.4),
        statement("-- squawk-ignore r -- why\nCREATE INDEX CONCURRENTLY i ON t (c)", 3.0, 4.0, 3.0),
        statement("BEGIN", 4.1, 4.1, 4.1),
        statement("UPDATE alembic_version SET version_num='008'", 4.2, 4.3, 4.1),
    ]
    steps = {step.label: step for step in bench.steps_of(statements, t0=0.0)}
    assert list(steps) == [
        "migration lock",
        "transaction begun at +0.20 s (its other statements)",
        "CREATE INDEX idx_a",
        "other short statements (session setup, SET, catalog reads)",
        "backfill of chat_conversations: UPDATE batches of pages",
        "CREATE INDEX CONCURRENTLY i",
        "final transaction (its other statements)",
    ]
    backfill = steps["backfill of chat_conversations: UPDATE batches of pages"]
    assert len(backfill.statements) == 2
    assert round(backfill.seconds, 6) == 0.4
    assert round(bench.covered(statements, 0.0, 5.0), 6) == 2.9
    assert bench.running_at(statements, 3.5).query.endswith("ON t (c)")
    assert bench.running_at(statements, 2.8) is None
