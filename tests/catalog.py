"""Read the live catalog of the chat schema and compare it with the spec.

The spec is docs/spec/chat-schema.md (revisions 004 and 008): compare it with a
database at revision 008 (``alembic upgrade 008``) or where the hand-run 004/008 ran,
never with head, which the revisions after 008 change (head is compared with the
models: ``alembic check``, ``chatdb drift``). ``snapshot`` works at any revision, for
before/after comparisons. This module has no pytest fixtures and no tests; it works with any DB-API connection that
offers ``cursor()``, ``execute(sql, params)`` with ``%s`` placeholders and
``fetchall()`` (psycopg 3 and psycopg2 both do).

``snapshot(conn)`` returns plain, deterministic data (dicts built in sorted key
order, sorted lists), so two snapshots of equivalent databases compare equal
with ``==``. ``spec_differences(snapshot)`` lists, as readable sentences, every
way in which a snapshot differs from ``EXPECTED`` (the spec as data).

Expressions (defaults, constraint definitions, policy expressions) are deparsed
by PostgreSQL under a fixed search_path (``pg_catalog, public``) so that the
result does not depend on the session's search_path; the connection's own
search_path is restored afterwards.
"""

import re

SCHEMA = "public"
TABLES = ("chat_conversations", "chat_messages", "chat_participants")
ROLES = ("anon", "authenticated", "service_role")
PRIVILEGES = ("DELETE", "INSERT", "REFERENCES", "SELECT", "TRIGGER", "TRUNCATE", "UPDATE")
PUBLICATION = "supabase_realtime"
FUNCTION = "update_conversation_on_message"
DEPARSE_SEARCH_PATH = "pg_catalog, public"

CONSTRAINT_TYPES = {
    "c": "CHECK",
    "f": "FOREIGN KEY",
    "p": "PRIMARY KEY",
    "t": "TRIGGER",
    "u": "UNIQUE",
    "x": "EXCLUDE",
}

# --------------------------------------------------------------------------- spec

UUID_DEFAULT = "uuid_generate_v4()"
OWNER_EXPR = (
    "(website_id IN ( SELECT websites.id FROM websites WHERE (websites.user_id = auth.uid())))"
)


def _col(type_, not_null=False, default=None):
    return {"type": type_, "not_null": not_null, "default": default}


def _policy(cmd, qual=None, with_check=None):
    return {
        "permissive": "PERMISSIVE",
        "roles": ["public"],
        "cmd": cmd,
        "qual": qual,
        "with_check": with_check,
    }


def _btree(name, table, columns):
    return f"CREATE INDEX {name} ON public.{table} USING btree ({columns})"


def _trigger(timing, events, function):
    return {
        "timing": timing,
        "events": events,
        "level": "ROW",
        "function": function,
        "enabled": True,
    }


_TS = "timestamp with time zone"

EXPECTED = {
    "tables": {
        "chat_conversations": {
            "columns": {
                "id": _col("uuid", True, UUID_DEFAULT),
                "order_id": _col("uuid"),
                "website_id": _col("uuid", True),
                "customer_id": _col("text", True),
                "customer_name": _col("text"),
                "customer_phone": _col("text"),
                "status": _col("text", False, "'active'::text"),
                "unread_owner": _col("integer", False, "0"),
                "unread_customer": _col("integer", False, "0"),
                "unread_rider": _col("integer", False, "0"),
                "created_at": _col(_TS, False, "now()"),
                "updated_at": _col(_TS, False, "now()"),
            },
            "constraints": {
                "chat_conversations_pkey": {
                    "type": "PRIMARY KEY",
                    "definition": "PRIMARY KEY (id)",
                },
                "chat_conversations_order_id_fkey": {
                    "type": "FOREIGN KEY",
                    "definition": "FOREIGN KEY (order_id) REFERENCES delivery_orders(id) "
                    "ON DELETE SET NULL",
                },
                "chat_conversations_website_id_fkey": {
                    "type": "FOREIGN KEY",
                    "definition": "FOREIGN KEY (website_id) REFERENCES websites(id) "
                    "ON DELETE CASCADE",
                },
            },
            "indexes": {
                "chat_conversations_pkey": "CREATE UNIQUE INDEX chat_conversations_pkey "
                "ON public.chat_conversations USING btree (id)",
                "idx_chat_conversations_order": _btree(
                    "idx_chat_conversations_order", "chat_conversations", "order_id"
                ),
                "idx_chat_conversations_website": _btree(
                    "idx_chat_conversations_website", "chat_conversations", "website_id"
                ),
                "idx_chat_conversations_customer": _btree(
                    "idx_chat_conversations_customer", "chat_conversations", "customer_id"
                ),
                "idx_chat_conversations_status": _btree(
                    "idx_chat_conversations_status", "chat_conversations", "status"
                ),
                "idx_chat_conversations_updated": _btree(
                    "idx_chat_conversations_updated", "chat_conversations", "updated_at DESC"
                ),
            },
            "policies": {
                "Service role full access to conversations": _policy("ALL", "true", "true"),
                "Owners can view own conversations": _policy("SELECT", OWNER_EXPR),
                "Owners can manage own conversations": _policy("ALL", OWNER_EXPR),
                "Anyone can create conversations": _policy("INSERT", None, "true"),
                "Customers can view own conversations": _policy("SELECT", "true"),
            },
            "triggers": {
                "update_chat_conversations_updated_at": _trigger(
                    "BEFORE", ["UPDATE"], "public.update_updated_at_column"
                ),
            },
        },
        "chat_messages": {
            "columns": {
                "id": _col("uuid", True, UUID_DEFAULT),
                "conversation_id": _col("uuid", True),
                "sender_type": _col("text", True),
                "sender_id": _col("text"),
                "sender_name": _col("text"),
                "message_type": _col("text", False, "'text'::text"),
                "content": _col("text"),
                "media_url": _col("text"),
                "metadata": _col("jsonb"),
                "is_read": _col("boolean", False, "false"),
                "read_at": _col(_TS),
                "read_by": _col("jsonb", False, "'[]'::jsonb"),
                "created_at": _col(_TS, False, "now()"),
            },
            "constraints": {
                "chat_messages_pkey": {
                    "type": "PRIMARY KEY",
                    "definition": "PRIMARY KEY (id)",
                },
                "chat_messages_conversation_id_fkey": {
                    "type": "FOREIGN KEY",
                    "definition": "FOREIGN KEY (conversation_id) "
                    "REFERENCES chat_conversations(id) ON DELETE CASCADE",
                },
            },
            "indexes": {
                "chat_messages_pkey": "CREATE UNIQUE INDEX chat_messages_pkey "
                "ON public.chat_messages USING btree (id)",
                "idx_chat_messages_conversation": _btree(
                    "idx_chat_messages_conversation", "chat_messages", "conversation_id"
                ),
                "idx_chat_messages_created": _btree(
                    "idx_chat_messages_created", "chat_messages", "created_at DESC"
                ),
                "idx_chat_messages_sender": _btree(
                    "idx_chat_messages_sender", "chat_messages", "sender_type, sender_id"
                ),
            },
            "policies": {
                "Service role full access to messages": _policy("ALL", "true", "true"),
                "Anyone can view messages": _policy("SELECT", "true"),
                "Anyone can insert messages": _policy("INSERT", None, "true"),
                "Anyone can update messages": _policy("UPDATE", "true"),
            },
            "triggers": {
                "update_conversation_on_message_trigger": _trigger(
                    "AFTER", ["INSERT"], "public.update_conversation_on_message"
                ),
            },
        },
        "chat_participants": {
            "columns": {
                "id": _col("uuid", True, UUID_DEFAULT),
                "conversation_id": _col("uuid", True),
                "user_type": _col("text", True),
                "user_id": _col("text"),
                "user_name": _col("text"),
                "is_online": _col("boolean", False, "false"),
                "last_seen": _col(_TS),
                "created_at": _col(_TS, False, "now()"),
            },
            "constraints": {
                "chat_participants_pkey": {
                    "type": "PRIMARY KEY",
                    "definition": "PRIMARY KEY (id)",
                },
                "chat_participants_conversation_id_fkey": {
                    "type": "FOREIGN KEY",
                    "definition": "FOREIGN KEY (conversation_id) "
                    "REFERENCES chat_conversations(id) ON DELETE CASCADE",
                },
                "chat_participants_conversation_id_user_type_user_id_key": {
                    "type": "UNIQUE",
                    "definition": "UNIQUE (conversation_id, user_type, user_id)",
                },
            },
            "indexes": {
                "chat_participants_pkey": "CREATE UNIQUE INDEX chat_participants_pkey "
                "ON public.chat_participants USING btree (id)",
                "chat_participants_conversation_id_user_type_user_id_key": "CREATE UNIQUE INDEX chat_participants_conversation_id_user_type_user_id_key "
                "ON public.chat_participants USING btree (conversation_id, user_type, user_id)",
                "idx_chat_participants_conversation": _btree(
                    "idx_chat_participants_conversation", "chat_participants", "conversation_id"
                ),
                "idx_chat_participants_user": _btree(
                    "idx_chat_participants_user", "chat_participants", "user_type, user_id"
                ),
            },
            "policies": {
                "Service role full access to participants": _policy("ALL", "true", "true"),
                "Anyone can view participants": _policy("SELECT", "true"),
                "Anyone can manage participants": _policy("ALL", "true", "true"),
            },
            "triggers": {},
        },
    },
    # Common to the three tables.
    "rls_enabled": True,
    "rls_forced": False,
    # Effective privileges (the platform's default privileges plus 004's GRANTs).
    "privileges": {role: list(PRIVILEGES) for role in ROLES},
    "in_publication": True,
    "function": {
        FUNCTION: {"exists": True, "language": "plpgsql", "returns": "trigger", "arguments": ""},
    },
}

# --------------------------------------------------------------------------- snapshot


def _rows(conn, sql, params=()):
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return cur.fetchall()
    finally:
        cur.close()


def _table_oids(conn):
    rows = _rows(
        conn,
        "SELECT c.relname, c.oid::bigint FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')",
        (SCHEMA, list(TABLES)),
    )
    return dict(rows)


def _columns(conn, oid):
    rows = _rows(
        conn,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) "
        "FROM pg_attribute a "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = %s::oid AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attname",
        (oid,),
    )
    return {
        name: {"type": type_, "not_null": bool(not_null), "default": default}
        for name, type_, not_null, default in rows
    }


def _constraints(conn, oid):
    rows = _rows(
        conn,
        "SELECT conname, contype::text, pg_get_constraintdef(oid), convalidated "
        "FROM pg_constraint WHERE conrelid = %s::oid ORDER BY conname",
        (oid,),
    )
    return {
        name: {
            "type": CONSTRAINT_TYPES.get(contype, contype),
            "definition": definition,
            "validated": bool(validated),
        }
        for name, contype, definition, validated in rows
    }


def _indexes(conn, oid):
    rows = _rows(
        conn,
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisready "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::oid ORDER BY c.relname",
        (oid,),
    )
    return {
        name: {"definition": definition, "valid": bool(valid), "ready": bool(ready)}
        for name, definition, valid, ready in rows
    }


def _rls(conn, oid):
    rows = _rows(
        conn,
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::oid",
        (oid,),
    )
    enabled, forced = rows[0]
    return bool(enabled), bool(forced)


def _policies(conn, table):
    rows = _rows(
        conn,
        "SELECT policyname, permissive, cmd, roles::text[], qual, with_check "
        "FROM pg_policies WHERE schemaname = %s AND tablename = %s ORDER BY policyname",
        (SCHEMA, table),
    )
    return {
        name: {
            "permissive": permissive,
            "cmd": cmd,
            "roles": sorted(roles),
            "qual": qual,
            "with_check": with_check,
        }
        for name, permissive, cmd, roles, qual, with_check in rows
    }


def _existing_roles(conn):
    rows = _rows(conn, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),))
    return {name for (name,) in rows}


def _privileges(conn, oid, roles):
    result = {}
    for role in sorted(roles):
        granted = []
        for privilege in PRIVILEGES:
            (has,) = _rows(
                conn, "SELECT has_table_privilege(%s, %s::oid, %s)", (role, oid, privilege)
            )[0]
            if has:
                granted.append(privilege)
        result[role] = granted
    return result


def _publication_exists(conn):
    return bool(_rows(conn, "SELECT 1 FROM pg_publication WHERE pubname = %s", (PUBLICATION,)))


def _in_publication(conn, oid):
    rows = _rows(
        conn,
        "SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid "
        "WHERE p.pubname = %s AND pr.prrelid = %s::oid "
        "UNION ALL "
        "SELECT 1 FROM pg_publication WHERE pubname = %s AND puballtables",
        (PUBLICATION, oid, PUBLICATION),
    )
    return bool(rows)


def _trigger_events(tgtype):
    events = []
    for bit, event in ((4, "INSERT"), (8, "DELETE"), (16, "UPDATE"), (32, "TRUNCATE")):
        if tgtype & bit:
            events.append(event)
    return sorted(events)


def _trigger_timing(tgtype):
    if tgtype & 64:
        return "INSTEAD OF"
    return "BEFORE" if tgtype & 2 else "AFTER"


def _triggers(conn, oid):
    rows = _rows(
        conn,
        "SELECT t.tgname, t.tgtype::int, n.nspname || '.' || p.proname, t.tgenabled::text, "
        "pg_get_triggerdef(t.oid) "
        "FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE t.tgrelid = %s::oid AND NOT t.tgisinternal ORDER BY t.tgname",
        (oid,),
    )
    return {
        name: {
            "timing": _trigger_timing(tgtype),
            "events": _trigger_events(tgtype),
            "level": "ROW" if tgtype & 1 else "STATEMENT",
            "function": function,
            "enabled": enabled != "D",
            "definition": definition,
        }
        for name, tgtype, function, enabled, definition in rows
    }


def _function(conn):
    rows = _rows(
        conn,
        "SELECT l.lanname, format_type(p.prorettype, NULL), "
        "pg_get_function_identity_arguments(p.oid) "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "JOIN pg_language l ON l.oid = p.prolang "
        "WHERE n.nspname = %s AND p.proname = %s "
        "ORDER BY pg_get_function_identity_arguments(p.oid) LIMIT 1",
        (SCHEMA, FUNCTION),
    )
    if not rows:
        return {"exists": False}
    language, returns, arguments = rows[0]
    return {"exists": True, "language": language, "returns": returns, "arguments": arguments}


def _table_snapshot(conn, table, oid, roles):
    enabled, forced = _rls(conn, oid)
    return {
        "exists": True,
        "columns": _columns(conn, oid),
        "constraints": _constraints(conn, oid),
        "indexes": _indexes(conn, oid),
        "rls_enabled": enabled,
        "rls_forced": forced,
        "policies": _policies(conn, table),
        "privileges": _privileges(conn, oid, roles),
        "in_publication": _in_publication(conn, oid),
        "triggers": _triggers(conn, oid),
    }


def _set_search_path(conn, value):
    _rows(conn, "SELECT set_config('search_path', %s, false)", (value,))


def snapshot(conn):
    """Return the catalog state of the three chat tables as plain, sorted data."""
    (saved,) = _rows(conn, "SELECT current_setting('search_path')")[0]
    _set_search_path(conn, DEPARSE_SEARCH_PATH)
    try:
        roles = _existing_roles(conn)
        oids = _table_oids(conn)
        tables = {}
        for table in sorted(TABLES):
            if table in oids:
                tables[table] = _table_snapshot(conn, table, oids[table], roles)
            else:
                tables[table] = {"exists": False}
        return {
            "roles": {role: role in roles for role in sorted(ROLES)},
            "publication_exists": _publication_exists(conn),
            "tables": tables,
            "functions": {FUNCTION: _function(conn)},
        }
    finally:
        _set_search_path(conn, saved)


# --------------------------------------------------------------------------- comparison


def _normalise_sql(text):
    if text is None:
        return None
    return re.sub(r"\s+", " ", text).strip()


def _normalise_default(text):
    """extensions.uuid_generate_v4() and uuid_generate_v4() are the same default."""
    text = _normalise_sql(text)
    if text == "extensions.uuid_generate_v4()":
        return UUID_DEFAULT
    return text


def _show(value):
    return "NULL" if value is None else value


def _missing_and_extra(prefix, kind, actual, expected, quote=False):
    label = '"%s"' if quote else "%s"
    out = []
    for name in sorted(set(expected) - set(actual)):
        out.append(f"{prefix}: {kind} {label % name} is missing")
    for name in sorted(set(actual) - set(expected)):
        out.append(f"{prefix}: {kind} {label % name} is not in the spec")
    return out


def _column_differences(table, actual, expected):
    out = _missing_and_extra(table, "column", actual, expected)
    for name in sorted(set(actual) & set(expected)):
        have, want = actual[name], expected[name]
        where = f"{table}.{name}"
        if have["type"] != want["type"]:
            out.append("{}: type is {}, spec says {}".format(where, have["type"], want["type"]))
        if have["not_null"] != want["not_null"]:
            state = lambda flag: "NOT NULL" if flag else "nullable"
            out.append(
                "{}: is {}, spec says {}".format(
                    where, state(have["not_null"]), state(want["not_null"])
                )
            )
        if _normalise_default(have["default"]) != _normalise_default(want["default"]):
            out.append(
                "{}: default is {}, spec says {}".format(
                    where, _show(have["default"]), _show(want["default"])
                )
            )
    return out


def _constraint_differences(table, actual, expected):
    out = _missing_and_extra(table, "constraint", actual, expected)
    for name in sorted(set(actual) & set(expected)):
        have, want = actual[name], expected[name]
        if _normalise_sql(have["definition"]) != _normalise_sql(want["definition"]):
            out.append(
                "{}: constraint {} is {}, spec says {}".format(
                    table, name, have["definition"], want["definition"]
                )
            )
        if not have["validated"]:
            out.append(f"{table}: constraint {name} is NOT VALID")
    return out


def _index_differences(table, actual, expected):
    out = _missing_and_extra(table, "index", actual, expected)
    for name in sorted(set(actual) & set(expected)):
        have = actual[name]
        if _normalise_sql(have["definition"]) != _normalise_sql(expected[name]):
            out.append(
                "{}: index {} is {}, spec says {}".format(
                    table, name, have["definition"], expected[name]
                )
            )
        if not (have["valid"] and have["ready"]):
            out.append(f"{table}: index {name} is not valid")
    return out


def _policy_differences(table, actual, expected):
    out = _missing_and_extra(table, "policy", actual, expected, quote=True)
    for name in sorted(set(actual) & set(expected)):
        have, want = actual[name], expected[name]
        where = f'{table}: policy "{name}"'
        for key, label in (("permissive", "is"), ("cmd", "command is")):
            if have[key] != want[key]:
                out.append(f"{where}: {label} {have[key]}, spec says {want[key]}")
        if have["roles"] != want["roles"]:
            out.append(
                "{}: applies to {}, spec says {}".format(
                    where, ", ".join(have["roles"]), ", ".join(want["roles"])
                )
            )
        for key, label in (("qual", "USING"), ("with_check", "WITH CHECK")):
            if _normalise_sql(have[key]) != _normalise_sql(want[key]):
                out.append(
                    f"{where}: {label} is {_show(_normalise_sql(have[key]))}, spec says {_show(want[key])}"
                )
    return out


def _rls_differences(table, have):
    out = []
    if have["rls_enabled"] != EXPECTED["rls_enabled"]:
        out.append(
            "{}: row level security is {}, spec says enabled".format(
                table, "enabled" if have["rls_enabled"] else "disabled"
            )
        )
    if have["rls_forced"] != EXPECTED["rls_forced"]:
        out.append(f"{table}: row level security is forced, spec says not forced")
    return out


def _privilege_differences(table, actual):
    out = []
    for role, wanted in sorted(EXPECTED["privileges"].items()):
        if role not in actual:
            continue  # the role itself is reported missing once, not per table
        have = actual[role]
        missing = [p for p in wanted if p not in have]
        extra = [p for p in have if p not in wanted]
        if missing:
            out.append(
                "{}: role {} lacks {}, spec says {}".format(
                    table, role, ", ".join(missing), ", ".join(wanted)
                )
            )
        if extra:
            out.append("{}: role {} has {}, not in the spec".format(table, role, ", ".join(extra)))
    return out


def _trigger_differences(table, actual, expected):
    out = _missing_and_extra(table, "trigger", actual, expected)
    for name in sorted(set(actual) & set(expected)):
        have, want = actual[name], expected[name]
        for key in ("timing", "events", "level", "function", "enabled"):
            if have[key] != want[key]:
                out.append(f"{table}: trigger {name} {key} is {have[key]}, spec says {want[key]}")
    return out


def _table_differences(table, have):
    want = EXPECTED["tables"][table]
    if not have["exists"]:
        return [f"{table}: table is missing"]
    out = []
    out += _column_differences(table, have["columns"], want["columns"])
    out += _constraint_differences(table, have["constraints"], want["constraints"])
    out += _index_differences(table, have["indexes"], want["indexes"])
    out += _rls_differences(table, have)
    out += _policy_differences(table, have["policies"], want["policies"])
    out += _privilege_differences(table, have["privileges"])
    if have["in_publication"] != EXPECTED["in_publication"]:
        out.append(f"{table}: not a member of publication {PUBLICATION}, spec says it is")
    out += _trigger_differences(table, have["triggers"], want["triggers"])
    return out


def _function_differences(have):
    want = EXPECTED["function"][FUNCTION]
    if not have["exists"]:
        return [f"function {FUNCTION}() is missing"]
    out = []
    for key in ("language", "returns", "arguments"):
        if have[key] != want[key]:
            out.append(
                "function {}(): {} is {}, spec says {}".format(
                    FUNCTION, key, have[key] or "(none)", want[key] or "(none)"
                )
            )
    return out


def spec_differences(snap):
    """Every difference between a snapshot and the spec, as sentences; [] means a match."""
    out = []
    for role, exists in snap["roles"].items():
        if not exists:
            out.append(f"role {role} does not exist")
    if not snap["publication_exists"]:
        out.append(f"publication {PUBLICATION} does not exist")
    for table in TABLES:
        out += _table_differences(table, snap["tables"][table])
    out += _function_differences(snap["functions"][FUNCTION])
    return out
