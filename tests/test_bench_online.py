"""benchmarks/bench_online.py runs end to end: every arm, the steps, the worst-op lines,
the summary, the picture (or why there is none); and the load picks the backend's calls
by their facts, from the project's calls file or another.

A tiny run (1,000 conversations, 3,000 messages, two clients, short warmup) of the real
script as a subprocess, on the throwaway server it starts itself. The figures are not
checked (they are for docs/benchmark.md); what is checked is that the report is complete
and that the project's arm filled every row without a client error.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys

from chatdb.calls.model import CallsFile
from tests.pg import ROOT

SCRIPT = ROOT / "benchmarks" / "bench_online.py"

# A calls file as chatdb calls scan writes it (chatdb.calls.model): a send, a read, an
# unread reset and a conversation creation (with customer_id: one without it, the
# delivery path's, fails the recipe's NOT NULL check, as it fails the hand-run 008);
# no mark-read.
TEST_CALLS = """# a test calls file
backend/app/api/v1/endpoints/chat.py:711 chat_messages insert writes=id,conversation_id,sender_type,message_text,created_at
backend/app/api/v1/endpoints/chat.py:259 chat_messages select selects=id,conversation_id,message_text,content,message,created_at filters=conversation_id.eq orders=created_at.asc limit=20 retry=42703
backend/app/api/v1/endpoints/chat.py:951 chat_conversations update writes=unread_owner filters=id.eq
backend/app/api/v1/endpoints/chat.py:414 chat_conversations insert writes=id,website_id,website_name,customer_id,customer_name,customer_phone,status
backend/app/api/v1/endpoints/chat.py:1166 chat_conversations update writes=status filters=id.eq
"""


def section(output: str, start: str, end: str | None) -> str:
    """The report's lines from the one starting with ``start`` to the one before ``end``."""
    begin = output.index(f"\n{start}")
    return output[begin : output.index(f"\n{end}", begin) if end else None]


def figure(text: str, label: str) -> int:
    match = re.search(rf"^  {re.escape(label)}\s+(-?\d+)", text, re.MULTILINE)
    assert match, f"no line {label!r} in:\n{text}"
    return int(match[1])


def unfilled(text: str) -> dict[str, int]:
    match = re.search(r"^  rows left unfilled +(.*)  \(-1: no such column\)$", text, re.MULTILINE)
    assert match, text
    return {column: int(n) for column, n in re.findall(r"(\w+) (-?\d+)", match[1])}


def test_bench_online_reports_every_arm_the_summary_and_uses_the_calls_file(tmp_path):
    calls = tmp_path / "backend.calls"
    calls.write_text(TEST_CALLS)
    png = tmp_path / "bench.png"
    argv = [
        sys.executable,
        str(SCRIPT),
        *("--rows", "1000", "--messages-per-conversation", "3", "--from", "base"),
        *("--clients", "2", "--warmup", "0.3", "--cooldown", "0.2", "--floor", "0.5"),
        *("--calls", str(calls), "--picture", str(png), "-x", "online=always"),
    ]
    result = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout

    assert output.startswith("bench_online: from base")
    assert "1,000 conversations, 3,000 messages" in output
    assert re.search(r"^machine: nproc \d+, memory .* PostgreSQL 1\d", output, re.MULTILINE)
    # The load: the calls file's calls, picked by their facts, shaped by the schema cache.
    load = section(output, "the load: ", "(a) original SQL")
    assert f"calls from {calls}:" in load
    assert "send: chat_messages insert (id, conversation_id, sender_type, message_text, " in load
    assert "backend.calls: backend/app/api/v1/endpoints/chat.py:711" in load
    assert "sent without message_text until PostgREST reloads" in load
    assert "mark_read: no call of the backend is of this kind: left out" in load
    assert "reset: chat_conversations update (unread_owner) [id.eq]" in load

    original = section(output, "(a) original SQL", "(b) hand-written online recipe")
    recipe = section(output, "(b) hand-written online recipe", "(c) project")
    project = section(output, "(c) project: alembic -x online=always upgrade head", "(d) no deploy")
    floor = section(output, "(d) no deploy", "(e) project with no client")
    alone = section(output, "(e) project with no client", "summary:")
    summary = section(output, "summary:", "picture:")

    assert figure(floor, "client ops during it") > 0
    assert figure(floor, "client errors") == 0
    # (a): both hand-run files, each reported, with the figures and the worst op's statement.
    assert "original_004_chat_system.sql: " in original
    assert "original_008_fix_customer_id.sql: committed" in original
    for label in ("migration wall time", "worst client op", "p99 client op"):
        assert f"  {label} " in original
    assert re.search(
        r"^  worst op started during   (read|send|reset|create) ", original, re.MULTILINE
    )
    assert "steps of the run" not in original
    # (b): the recipe's steps, its keyset batches and its backfill's rate.
    assert "fill customer_id: keyset batches" in recipe
    assert re.search(
        r"^  backfill +fill customer_id: [\d,]+ rows in [\d.]+ s, [\d,]+ rows/s",
        recipe,
        re.MULTILINE,
    )
    assert unfilled(recipe)["customer_id"] == 0
    # (c): the online path ran, its steps were timed, the clients' waits sampled.
    assert "chat_conversations: online path" in project
    assert "steps of the run, from " in project
    step_line = (
        r"^\s+\+\d+\.\d\d s\s+\d+\.\d{3}\s+\d+\.\d%  "
        r"backfill of chat_messages: UPDATE batches of pages"
    )
    assert re.search(step_line, project, re.MULTILINE)
    assert re.search(r"^  clients' waits during it  .*% of [\d,]+ samples", project, re.MULTILINE)
    assert re.search(
        r"^  backfill +chat_messages: fill message_text, message_type .* rows/s",
        project,
        re.MULTILINE,
    )
    assert "CREATE INDEX CONCURRENTLY idx_chat_conversations_customer" in project
    assert re.search(
        r"^  worst op started during   (read|send|reset|create) ", project, re.MULTILINE
    )
    assert figure(project, "client ops during it") > 0
    assert figure(project, "client errors") == 0, project
    assert unfilled(project) == {"customer_id": 0, "message_text": 0, "message_type": 0}
    assert "customer_id NOT NULL; message_text NOT NULL; idx_chat_conversations_customer valid" in (
        project
    )
    # (e): the same upgrade with no client.
    assert figure(alone, "client ops during it") == 0
    assert unfilled(alone) == {"customer_id": 0, "message_text": 0, "message_type": 0}

    for arm in ("floor", "original", "recipe", "project", "alone"):
        assert re.search(rf"^  {arm} +", summary, re.MULTILINE), summary
    assert re.search(r"^  cost per row \(project\): [\d.]+ us", summary, re.MULTILINE)
    assert "worst client op under 100 ms, no-deploy worst under 50 ms, no client error: " in summary
    assert re.search(r"project wall at most 0\.55 x the recipe's: (met|NOT met) \(", summary)
    if importlib.util.find_spec("matplotlib") is None:
        assert "picture: none drawn: matplotlib is not installed" in output
    else:
        assert f"picture: {png}" in output
        assert png.read_bytes().startswith(b"\x89PNG")


def test_without_matplotlib_the_benchmark_says_why_it_draws_nothing(monkeypatch):
    picture = load_module("picture")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    assert picture.available() == "matplotlib is not installed (pip install -e '.[bench]')"


def test_the_load_picks_the_backends_calls_by_their_facts(tmp_path):
    load = load_module("load")
    picked, source = load.backend_calls()  # the project's calls file
    assert source.endswith("calls/backend.calls")
    chat = "backend.calls: backend/app/api/v1/endpoints/chat.py"
    assert {kind: call.source for kind, call in picked.items()} == {
        "read": f"{chat}:311",
        "send": f"{chat}:464",  # the first insert that writes message_text
        "reset": f"{chat}:959",
        "mark_read": f"{chat}:934",
        "create": f"{chat}:428",
    }
    # On a table without message_text and message, the read selects what exists.
    read = picked["read"].on(
        {c: "text" for c in ("id", "conversation_id", "content", "created_at")}
    )
    assert read.selects == ("id", "conversation_id", "content", "created_at")
    assert picked["read"].on({"id": "uuid"}) is None  # its filter's column is missing

    path = tmp_path / "backend.calls"
    path.write_text(TEST_CALLS)
    assert CallsFile.read(path).calls  # a valid calls file
    picked = load.pick(load.from_calls_file(path))
    assert sorted(picked) == ["create", "read", "reset", "send"]
    assert picked["read"].limit == 20 and picked["read"].orders == ("created_at.asc",)
    assert picked["reset"].writes == ("unread_owner",)  # not the close (status) update
    values = load.payload(picked["send"], 50, __import__("random").Random(1))
    assert values["conversation_id"] == str(load.conversation_id(50))
    assert values["message_text"] and values["sender_type"] == "customer"


def load_module(name: str):
    """benchmarks/<name>.py (benchmarks is a package of the project folder)."""
    return importlib.import_module(f"benchmarks.{name}")


def load_benchmark():
    """benchmarks/bench_online.py, run as a script by its path, imported as a module."""
    return load_module("bench_online")


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


def test_the_benchmark_pages_commands_run_with_a_small_size():
    """docs/benchmark.md's shell block, pasted as written but with a small size: each
    `--rows N` becomes 300 (and each run gets 2 messages per conversation and short
    warmups, flags appended after the page's own). The benchmark lines run at once, each
    on the throwaway cluster it starts."""
    page = (ROOT / "docs" / "benchmark.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    assert blocks, "docs/benchmark.md shows no shell block"
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    lines = [line for line in lines if line]
    small = " --messages-per-conversation 2 --warmup 0.2 --cooldown 0.1"
    runs, commands = [], set()
    for line in lines:
        command = re.sub(r"--rows \d+", "--rows 300", line)
        if "bench_online.py" in command:
            assert command != line, f"a benchmark line without --rows: {line}"
            command += small
            # The page's sizes differ only by --rows: at the small size two of its lines
            # are the same run (but for the picture's file), and it runs once.
            key = re.sub(r"--picture \S+", "", command)
            if key in commands:
                continue
            commands.add(key)
        runs.append((line, subprocess.Popen(
            ["bash", "-c", command], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )))  # fmt: skip
        if "bench_online.py" not in command:
            runs[-1][1].wait(timeout=300)  # (./dev makes .venv first)
    for line, process in runs:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"{line}\n{output}"
        if "bench_online.py" in line:
            assert "\nsummary: from " in output and "300 conversations" in output, output
