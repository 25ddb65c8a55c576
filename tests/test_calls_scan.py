"""``chatdb calls scan``: each pattern of the backend's code it must resolve (as BinaApp
writes them), and what it must list as unresolved, on small backends the tests write.
Each test names its pattern; its failure shows the lines the scan printed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from chatdb.calls.model import CallsFile
from chatdb.calls.scan import ScanResult, scan
from tests.convergence import chatdb_run


def backend(tmp_path: Path, files: dict[str, str], *, git: bool = True) -> Path:
    """A repository (a ``.git`` folder at its root, unless ``git`` is False) holding
    ``backend/app/<name>`` for each file; the folder to scan."""
    root = tmp_path / "binaapp"
    if git:
        (root / ".git").mkdir(parents=True)
    app = root / "backend" / "app"
    for name, text in files.items():
        path = app / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return app


def scanned(tmp_path: Path, files: dict[str, str]) -> ScanResult:
    return scan([backend(tmp_path, files)])


def rendered(result: ScanResult) -> list[str]:
    return [call.render() for call in result.calls] + [u.render() for u in result.unresolved]


def only(result: ScanResult) -> str:
    lines = rendered(result)
    assert len(lines) == 1, lines
    return lines[0]


P = "backend/app/x.py"


# --------------------------------------------------------------------------- supabase-py chains


def test_single_and_double_quotes_table_and_from(tmp_path):
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def f(sb, cid):
                sb.table('chat_messages').select('id, content').eq('conversation_id', cid).execute()
                sb.from_("chat_participants").select("*").execute()
            """
        },
    )
    assert rendered(result) == [
        f"{P}:2 chat_messages select selects=id,content filters=conversation_id.eq",
        f"{P}:3 chat_participants select selects=*",
    ]


def test_a_chain_split_with_backslashes_or_parentheses_has_the_line_of_table(tmp_path):
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def f(supabase, w, phone):
                existing = supabase.table('chat_conversations')\\
                    .select('*')\\
                    .eq('website_id', w)\\
                    .eq('customer_phone', phone)\\
                    .execute()
                rows = (
                    supabase
                    .table("chat_messages")
                    .select("id")
                    .limit(5)
                    .execute()
                )
            """
        },
    )
    assert rendered(result) == [
        f"{P}:2 chat_conversations select selects=* filters=website_id.eq,customer_phone.eq",
        f"{P}:9 chat_messages select selects=id limit=5",
    ]


def test_a_chain_assigned_to_a_variable_and_continued_later(tmp_path):
    """chat.py's get_conversations: query = ...select("*"), then query = query.in_(...)
    in either branch, an optional status filter, then query.order(...).execute()."""
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def f(supabase, ids, owned, status):
                query = supabase.table("chat_conversations").select("*")
                if ids:
                    query = query.in_("website_id", ids)
                else:
                    query = query.in_("website_id", owned)
                if status:
                    query = query.eq("status", status)
                result = query.order("updated_at", desc=True).execute()
                query = supabase.table("websites").select("id")
                query.eq("user_id", 1).execute()
            """
        },
    )
    assert only(result) == (
        f"{P}:2 chat_conversations select selects=* filters=website_id.in,status.eq "
        "orders=updated_at.desc"
    )


def test_a_payload_bound_earlier_with_keys_added_later(tmp_path):
    """chat.py's send_message: insert_row = {...}, then insert_row["media_url"] = ...
    when set; d.update({...}) adds keys too; keys added after the call are not sent."""
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def f(supabase, request):
                row = {
                    "id": request.id,
                    'conversation_id': request.conversation_id,
                }
                if request.media_url:
                    row["media_url"] = request.media_url
                row.update({"metadata": {}}, is_read=False)
                supabase.table("chat_messages").insert(row).execute()
                row["too_late"] = 1
            """
        },
    )
    assert only(result) == (
        f"{P}:9 chat_messages insert writes=id,conversation_id,media_url,metadata,is_read"
    )


def test_a_key_popped_before_a_second_insert_is_not_sent_by_it(tmp_path):
    """delivery.py's create_order_conversation: insert, then pop website_name and insert
    again: two calls, the second without it."""
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            async def f(supabase, order_id):
                data = {"id": 1, "order_id": order_id, "website_name": "x", "status": "active"}
                result = await _db(supabase.table("chat_conversations").insert(data))
                if not result.data:
                    data.pop("website_name", None)
                    result = await _db(supabase.table("chat_conversations").insert(data))

            async def _db(query):
                return await run(query.execute)
            """
        },
    )
    assert rendered(result) == [
        f"{P}:3 chat_conversations insert writes=id,order_id,website_name,status via=_db",
        f"{P}:6 chat_conversations insert writes=id,order_id,status via=_db",
    ]


def test_a_select_string_joined_from_a_module_list_through_a_comprehension(tmp_path):
    """chat.py's _fetch_chat_messages: ", ".join(columns), columns a comprehension over
    the module-level CHAT_MESSAGE_COLUMNS; order desc from a parameter's default."""
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            COLUMNS = ["id", "message_text", "content"]
            MISSING = set()

            def fetch(supabase, cid, order_desc=False, limit=None):
                columns = [col for col in COLUMNS if col not in MISSING]
                select_cols = ", ".join(columns)
                query = supabase.table("chat_messages").select(select_cols).eq(
                    "conversation_id", cid
                ).order("created_at", desc=order_desc)
                if limit is not None:
                    query = query.limit(limit)
                return query.execute()
            """
        },
    )
    assert only(result) == (
        f"{P}:7 chat_messages select selects=id,message_text,content "
        "filters=conversation_id.eq orders=created_at.asc"
    )


def test_every_filter_method_and_order_limit_single(tmp_path):
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def f(sb, v):
                (sb.table("chat_messages").select("id").eq("a", v).neq("b", v).gt("c", v)
                 .gte("d", v).lt("e", v).lte("f", v).like("g", v).ilike("h", v)
                 .is_("i", "null").in_("j", [v]).contains("k", v).contained_by("l", v)
                 .not_.eq("m", v).filter("n", "ov", v).match({"o": v})
                 .order("p").order("q", desc=True).limit(1).single().execute())
            """
        },
    )
    assert only(result) == (
        f"{P}:2 chat_messages select selects=id filters=a.eq,b.neq,c.gt,d.gte,e.lt,f.lte,"
        "g.like,h.ilike,i.is,j.in,k.cs,l.cd,m.not.eq,n.ov,o.eq orders=p.asc,q.desc limit=1"
    )


def test_update_upsert_and_delete(tmp_path):
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def f(sb, cid):
                sb.table("chat_conversations").update({"status": "closed"}).eq("id", cid).execute()
                sb.table("chat_participants").upsert([{"a": 1}, {"b": 2}]).execute()
                sb.table("chat_messages").delete().eq("conversation_id", cid).execute()
            """
        },
    )
    assert rendered(result) == [
        f"{P}:2 chat_conversations update writes=status filters=id.eq",
        f"{P}:3 chat_participants upsert writes=a,b",
        f"{P}:4 chat_messages delete filters=conversation_id.eq",
    ]


def test_a_wrapper_taking_table_and_payload_is_resolved_at_each_call_site(tmp_path):
    """chat.py's _insert_with_column_fallback(supabase, table, row): the line and the
    payload are each call site's; via names the wrapper; calls on other tables go."""
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def insert_with_fallback(supabase, table: str, row: dict, retries: int = 6):
                data = dict(row)
                return supabase.table(table).insert(data).execute()

            def create(supabase):
                conv = {"id": 1, "website_id": 2}
                insert_with_fallback(supabase, "chat_conversations", conv)
                insert_with_fallback(supabase, table="chat_messages", row={"content": "x"})
                insert_with_fallback(supabase, "websites", {"name": "x"})
            """
        },
    )
    assert rendered(result) == [
        f"{P}:7 chat_conversations insert writes=id,website_id via=insert_with_fallback",
        f"{P}:8 chat_messages insert writes=content via=insert_with_fallback",
    ]


def test_a_retry_loop_that_drops_the_named_column_is_retry_42703(tmp_path):
    """chat.py's fallbacks: a column read from an error by a function that looks for
    "does not exist", then popped from the payload (or filtered out of the selected
    columns), and the call sent again."""
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def missing_column(err):
                text = str(err)
                if "column " in text and "does not exist" in text:
                    return text.split("column ", 1)[1].split(" ", 1)[0]
                return None

            def insert(supabase, table, row):
                data = dict(row)
                for _ in range(6):
                    try:
                        return supabase.table(table).insert(data).execute()
                    except Exception as e:
                        missing = missing_column(e)
                        if missing in data:
                            data.pop(missing, None)
                            continue
                        raise
                return supabase.table(table).insert(data).execute()

            def select(supabase):
                columns = ["id", "message"]
                while True:
                    try:
                        return supabase.table("chat_messages").select(", ".join(columns)).execute()
                    except Exception as e:
                        missing = missing_column(e)
                        columns = [c for c in columns if c != missing]

            def create(supabase):
                insert(supabase, "chat_messages", {"message_text": "x"})
                supabase.table("chat_messages").update({"is_read": True}).execute()
            """
        },
    )
    assert rendered(result) == [
        f"{P}:24 chat_messages select selects=id,message retry=42703",
        f"{P}:30 chat_messages insert writes=message_text via=insert retry=42703",
        f"{P}:31 chat_messages update writes=is_read",
    ]


def test_calls_on_other_tables_and_storage_buckets_are_not_listed(tmp_path):
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def f(supabase, bucket):
                supabase.table("websites").select("*").execute()
                supabase.storage.from_(bucket).list()
                supabase.storage.from_("chat_messages").upload("a", b"b")
            """
        },
    )
    assert rendered(result) == []


def test_a_class_attribute_names_the_table(tmp_path):
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            class Service:
                TABLE = "chat_participants"

                def list(self, sb):
                    return sb.table(self.TABLE).select("user_id").execute()
            """
        },
    )
    assert only(result) == f"{P}:5 chat_participants select selects=user_id"


# --------------------------------------------------------------------------- raw PostgREST over HTTP


def test_raw_postgrest_over_httpx_get_post_patch_delete(tmp_path):
    """The AI responder: GET with select/order/limit and eq. filters in params, POST with
    a json payload; PATCH is an update, DELETE a delete, POST with
    Prefer: resolution=merge-duplicates an upsert."""
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            import httpx

            async def f(self, conv_id, data):
                async with httpx.AsyncClient() as client:
                    await client.get(
                        f"{self.supabase_url}/rest/v1/chat_messages",
                        headers=self.headers,
                        params={
                            "conversation_id": f"eq.{conv_id}",
                            "sender_type": "not.is.null",
                            "select": "id,sender_type,content",
                            "order": "created_at.desc",
                            "limit": "1",
                        },
                    )
                    msg = {"conversation_id": conv_id, "content": data}
                    await client.post(f"{self.url}/rest/v1/chat_messages", json=msg)
                    await client.post(
                        f"{self.url}/rest/v1/chat_participants",
                        headers={**self.headers, "Prefer": "resolution=merge-duplicates"},
                        json=[{"user_id": 1}],
                    )
                    await client.patch(
                        f"{self.url}/rest/v1/chat_conversations?id=eq.{conv_id}",
                        json={"status": "closed"},
                    )
                    await client.delete(f"{self.url}/rest/v1/chat_conversations", params={"id": f"in.({conv_id})"})
                    await client.get(f"{self.url}/rest/v1/", headers=self.headers)
            """
        },
    )
    assert rendered(result) == [
        (
            f"{P}:5 chat_messages select selects=id,sender_type,content "
            "filters=conversation_id.eq,sender_type.not.is orders=created_at.desc limit=1 via=httpx"
        ),
        f"{P}:17 chat_messages insert writes=conversation_id,content via=httpx",
        f"{P}:18 chat_participants upsert writes=user_id via=httpx",
        f"{P}:23 chat_conversations update writes=status filters=id.eq via=httpx",
        f"{P}:27 chat_conversations delete filters=id.in via=httpx",
    ]


def test_requests_and_client_request(tmp_path):
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            import requests

            BASE = "https://x.supabase.co"

            def f(session):
                requests.get(BASE + "/rest/v1/chat_participants?select=user_id&user_type=eq.rider")
                session.request("DELETE", f"{BASE}/rest/v1/chat_messages", params={"id": "eq.1"})
            """
        },
    )
    assert rendered(result) == [
        f"{P}:6 chat_participants select selects=user_id filters=user_type.eq via=requests",
        f"{P}:7 chat_messages delete filters=id.eq via=requests",
    ]


def test_http_helpers_taking_the_table_and_columns_are_resolved_at_each_call_site(tmp_path):
    """analytics.py's _db_count(table, params) (params merged into defaults) and
    supabase_client.py's delete_by_ids(self, table, column, ids), called as methods."""
    result = scanned(
        tmp_path,
        {
            "helpers.py": """\
            import httpx

            LIMIT = 5000

            async def db_count(table: str, params: dict) -> int:
                params = {"limit": str(LIMIT), **params}
                async with httpx.AsyncClient() as client:
                    resp = await client.get(f"{URL}/rest/v1/{table}", params={"select": "id", **params})
                return 0

            class Service:
                async def delete_by_ids(self, table, column, ids):
                    url = f"{self.url}/rest/v1/{table}"
                    ids_str = ",".join([f'"{i}"' for i in ids])
                    params = {column: f"in.({ids_str})"}
                    async with self._client() as client:
                        await client.delete(url, headers=self.headers, params=params)
            """,
            "endpoints.py": """\
            async def stats(website_id, chunk, service):
                await db_count("chat_conversations", {"website_id": f"eq.{website_id}"})
                total = await db_count(
                    "chat_messages", {"conversation_id": f"in.({','.join(chunk)})"}
                )
                await service.delete_by_ids("chat_messages", "conversation_id", chunk)
                await service.delete_by_ids("riders", "id", chunk)
            """,
        },
    )
    assert rendered(result) == [
        (
            "backend/app/endpoints.py:2 chat_conversations select selects=id "
            "filters=website_id.eq limit=5000 via=db_count>httpx"
        ),
        (
            "backend/app/endpoints.py:3 chat_messages select selects=id "
            "filters=conversation_id.in limit=5000 via=db_count>httpx"
        ),
        (
            "backend/app/endpoints.py:6 chat_messages delete filters=conversation_id.in "
            "via=delete_by_ids>httpx"
        ),
    ]


# --------------------------------------------------------------------------- unresolved


def test_a_table_name_computed_at_run_time_is_unresolved(tmp_path):
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def f(sb, kind):
                sb.table(pick_table(kind)).select("*").execute()
                for name in ["chat_messages", "websites"]:
                    sb.table(name).delete().execute()
            """
        },
    )
    assert rendered(result) == [
        (
            f"unresolved {P}:2 the table name cannot be read: pick_table(kind) "
            "(the value a call returns)"
        ),
        f"unresolved {P}:4 the table name cannot be read: name, bound by a for loop (line 3)",
    ]


def test_a_payload_built_in_another_module_is_unresolved(tmp_path):
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            from payloads import conversation_row

            def f(sb, request):
                sb.table("chat_conversations").insert(conversation_row(request)).execute()
                row = {}
                row[request.key] = 1
                sb.table("chat_messages").insert(row).execute()
            """
        },
    )
    assert rendered(result) == [
        (
            f"unresolved {P}:4 the payload of the insert on chat_conversations cannot be "
            "read: conversation_row(request) (the value a call returns)"
        ),
        (
            f"unresolved {P}:7 the keys of the payload of the insert on chat_messages (row) "
            "cannot be read: request.key (an attribute the scan does not follow)"
        ),
    ]


def test_a_wrapper_nobody_calls_is_unresolved(tmp_path):
    result = scanned(
        tmp_path,
        {
            "x.py": """\
            def insert_any(sb, table, row):
                return sb.table(table).insert(row).execute()
            """
        },
    )
    assert only(result) == (
        f"unresolved {P}:2 the table name comes from parameter 'table' of insert_any(), "
        "and no scanned code calls it"
    )


def test_a_chain_with_no_operation_is_unresolved(tmp_path):
    result = scanned(
        tmp_path, {"x.py": "def f(sb):\n    return sb.table('chat_messages').eq('id', 1)\n"}
    )
    assert only(result) == (
        f"unresolved {P}:2 no select, insert, update, upsert or delete follows .table()"
    )


def test_a_file_that_does_not_parse_is_unresolved_not_a_crash(tmp_path):
    result = scanned(
        tmp_path,
        {
            "broken.py": "def f(:\n    pass\n",
            "x.py": "def f(sb):\n    sb.table('chat_messages').select('id').execute()\n",
        },
    )
    assert rendered(result) == [
        f"{P}:2 chat_messages select selects=id",
        (
            "unresolved backend/app/broken.py:1 the file does not parse (invalid syntax): "
            "its calls are not read"
        ),
    ]


# --------------------------------------------------------------------------- paths, output


def test_paths_are_relative_to_the_git_root_else_to_the_folders_parent(tmp_path):
    code = {"api/x.py": "def f(sb):\n    sb.table('chat_messages').select('id').execute()\n"}
    in_git = scan([backend(tmp_path / "a", code)])
    outside = scan([backend(tmp_path / "b", code, git=False)])
    assert in_git.calls[0].where == "backend/app/api/x.py:2"
    assert outside.calls[0].where == "app/api/x.py:2"


def test_the_command_prints_calls_counts_and_unresolved_and_writes_the_file(tmp_path):
    app = backend(
        tmp_path,
        {
            "x.py": """\
            def f(sb, t):
                sb.table("chat_messages").select("id").execute()
                sb.table("chat_conversations").update({"status": "closed"}).execute()
                sb.table(t()).select("*").execute()
            """,
            "../tests/test_x.py": "def test(): pass\n",
        },
    )
    printed = chatdb_run("calls", "scan", str(app), url=None)
    assert printed.returncode == 0, printed.stdout + printed.stderr
    assert printed.stdout.splitlines() == [
        "backend/app/x.py:2 chat_messages select selects=id",
        "backend/app/x.py:3 chat_conversations update writes=status",
        "",
        "2 calls on the chat tables, in 1 Python files:",
        "  chat_conversations: 1 (1 update)",
        "  chat_messages: 1 (1 select)",
        "  chat_participants: 0 (none)",
        "1 unresolved:",
        "  unresolved backend/app/x.py:4 the table name cannot be read: t() (the value a call returns)",
    ]
    target = tmp_path / "backend.calls"
    written = chatdb_run("calls", "scan", str(app), "--write", str(target), url=None)
    assert written.returncode == 0, written.stdout + written.stderr
    assert written.stdout.splitlines()[0] == f"Wrote {target}."
    assert written.stdout.splitlines()[1:] == printed.stdout.splitlines()[3:]
    calls_file = CallsFile.read(target)
    assert [c.render() for c in calls_file.calls] == printed.stdout.splitlines()[:2]
    assert len(calls_file.unresolved) == 1
    header = "\n".join(calls_file.header)
    assert "Scanned: backend/app (1 Python files)" in header, header
    assert (
        "Not scanned, the repository's other Python files by folder: "
        "backend/tests (1 file, tests: not the running backend);"
    ) in header, header


def test_bad_folders_are_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("no Python here\n")
    for folder, words in (
        (tmp_path / "absent", "is not a folder"),
        (tmp_path / "empty", "holds no Python file"),
    ):
        result = chatdb_run("calls", "scan", str(folder), url=None)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stdout.startswith(f"FAILED: {folder} {words}"), result.stdout
    app = backend(tmp_path, {"x.py": "x = 1\n"})
    result = chatdb_run("calls", "scan", str(app), "--write", str(tmp_path / "no" / "f"), url=None)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.startswith(f"FAILED: Cannot write {tmp_path / 'no' / 'f'}: its folder")
