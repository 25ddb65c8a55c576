"""chatdb.inspect.normalize: expressions and triggers compared as PostgreSQL understands them.

Issue 11, item 2. Every "equivalent" case is made for real: the natural form is given to
PostgreSQL (CREATE POLICY / CREATE TRIGGER on the test database), and what the catalog
prints back is compared with the natural form, as autogenerate, ``alembic check`` and
``chatdb drift`` compare the code with the database right after a revision ran.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, pool, text

from chatdb.inspect import live
from chatdb.inspect.normalize import (
    SUBPLAN_TESTS_SHOWN_FROM,
    Normalizer,
    TriggerSyntaxError,
    parse_trigger,
    statement_breaker,
)
from models.entities import normalise_sql
from tests import catalog

CONVERSATIONS, MESSAGES = "chat_conversations", "chat_messages"
CHAT_TABLES = ["chat_conversations", "chat_messages", "chat_participants"]


@pytest.fixture(params=["head_db", "supabase_head_db"])
def any_head_db(request):
    """At head on plain PostgreSQL, and on a database prepared like Supabase."""
    return request.getfixturevalue(request.param)


def connect(url: str, *, read_only: bool = False):
    engine = create_engine(
        url.replace("postgresql://", "postgresql+psycopg2://", 1), poolclass=pool.NullPool
    )
    connection = engine.connect()
    if read_only:
        connection = connection.execution_options(postgresql_readonly=True)
    return engine, connection


@pytest.fixture
def connection(head_db):
    engine, conn = connect(head_db.url)
    yield conn
    conn.rollback()
    conn.close()
    engine.dispose()


def printed(db, table: str, using: str) -> str:
    """What pg_policies prints for a policy written ``using``, read as autogenerate reads it."""
    db.conn.execute(f'CREATE POLICY "probe" ON {table} FOR SELECT USING ({using})')
    engine, conn = connect(db.url)
    try:
        with live.deparse_search_path(conn):
            policies = live.read_policies(conn, [table])
        return policies[(table, "probe")].using
    finally:
        conn.close()
        engine.dispose()
        db.conn.execute(f'DROP POLICY "probe" ON {table}')


# --------------------------------------------------------------------------- policies

EQUIVALENT = [
    (CONVERSATIONS, "customer_id = auth.uid()::text"),
    (CONVERSATIONS, "CAST(auth.uid() AS text) = customer_id"),
    (CONVERSATIONS, "(auth.uid())::text = customer_id"),
    # 004's OWNER_EXPR as one would write it: the catalog qualifies the subquery's columns.
    (CONVERSATIONS, "website_id IN (SELECT id FROM websites WHERE user_id = auth.uid())"),
    (
        CONVERSATIONS,
        "EXISTS (SELECT 1 FROM websites w WHERE w.id = website_id AND w.user_id = auth.uid())",
    ),
    (CONVERSATIONS, "TRUE"),
    (CONVERSATIONS, "status<>'closed'AND customer_id IS NOT NULL"),
    (CONVERSATIONS, "created_at > now() - interval '1 day'"),
    (CONVERSATIONS, "status LIKE 'a%'"),
    (MESSAGES, "sender_type IN ('customer', 'owner')"),
    (MESSAGES, "sender_type = any (array['customer', 'owner'])"),
    (MESSAGES, "NOT is_read OR read_at IS NULL"),
]


@pytest.mark.parametrize("table, natural", EQUIVALENT)
def test_a_natural_form_is_the_same_as_what_the_catalog_prints(any_head_db, table, natural):
    shown = printed(any_head_db, table, natural)
    engine, conn = connect(any_head_db.url)
    try:
        with Normalizer(conn) as normalizer:
            assert normalizer.same_expression(table, natural, shown), (natural, shown)
            if normalise_sql(natural) != normalise_sql(shown):
                assert normalizer.explained == 2  # the server was asked, once per form
    finally:
        conn.close()
        engine.dispose()


DIFFERENT = [
    (CONVERSATIONS, "status <> 'closed'", "(status = 'closed'::text)"),
    (CONVERSATIONS, "true", "false"),
    (CONVERSATIONS, "customer_id = 'a'", "(customer_id = 'b'::text)"),
    (MESSAGES, "sender_type IN ('a', 'b')", "(sender_type = ANY (ARRAY['a'::text, 'c'::text]))"),
    (CONVERSATIONS, "auth.uid() IS NULL", "(auth.uid() IS NOT NULL)"),
    (
        CONVERSATIONS,
        "website_id IN (SELECT id FROM websites WHERE user_id = auth.uid())",
        "(website_id IN ( SELECT websites.id FROM websites))",
    ),
    # EXPLAIN before PostgreSQL 17 prints both as (NOT (hashed SubPlan 1)): never equal.
    (
        CONVERSATIONS,
        "website_id NOT IN (SELECT id FROM websites WHERE user_id = auth.uid())",
        (
            "(NOT (order_id IN ( SELECT websites.id FROM websites "
            "WHERE (websites.user_id = auth.uid()))))"
        ),
    ),
]


@pytest.mark.parametrize("table, want, have", DIFFERENT)
def test_different_conditions_stay_different(connection, table, want, have):
    with Normalizer(connection) as normalizer:
        verdict = normalizer.same_expression(table, want, have)
    assert not verdict
    assert verdict.note is None or "compared as text" in verdict.note


def test_a_subplan_hidden_by_explain_is_compared_as_text_before_postgresql_17(head_db):
    natural = "website_id NOT IN (SELECT id FROM websites WHERE user_id = auth.uid())"
    shown = printed(head_db, CONVERSATIONS, natural)
    engine, conn = connect(head_db.url)
    try:
        with Normalizer(conn) as normalizer:
            verdict = normalizer.same_expression(CONVERSATIONS, natural, shown)
            version = normalizer.server_version
            # As printed, it is the same on every version: the texts are equal.
            assert normalizer.same_expression(CONVERSATIONS, shown, shown)
    finally:
        conn.close()
        engine.dispose()
    assert verdict.same is (version >= SUBPLAN_TESTS_SHOWN_FROM)
    if version < SUBPLAN_TESTS_SHOWN_FROM:
        assert "compared as text: write it as the database prints it" in verdict.note


def test_a_form_that_does_not_parse_is_a_difference_and_says_why(connection):
    with Normalizer(connection) as normalizer:
        verdict = normalizer.same_expression(
            CONVERSATIONS, "customer_idx = 'a'", "(customer_id = 'a'::text)"
        )
        assert not verdict
        assert verdict.note == (
            'the code\'s form does not parse here: column "customer_idx" does not exist'
        )
        # The failed EXPLAIN ran in a savepoint: the transaction goes on.
        assert connection.scalar(text("SELECT count(*) FROM chat_messages")) == 0
        unplannable = normalizer.same_expression(CONVERSATIONS, "1/0 = 1", "((1 / 0) = 2)")
        assert not unplannable
        assert "cannot plan either form (division by zero)" in unplannable.note
        assert normalizer.same_expression(CONVERSATIONS, "( (1 / 0) = 1 )", "((1 / 0) = 1)")


@pytest.mark.parametrize(
    "expression, problem",
    [
        ("true); DROP TABLE chat_messages; --", "it closes a parenthesis it did not open"),
        ("true; COMMIT", "it contains a ';' outside quotes"),
        ("(true", "its parentheses are not balanced"),
        ("status = 'a", "it has an unterminated quote or comment"),
        ("status = ';' AND customer_name = ')'", None),
        ('"weird;name" IS NULL -- a comment; with (', None),
        ("status = 'a' /* ; ) */", None),
    ],
)
def test_an_expression_that_could_end_the_statement_is_never_sent(expression, problem):
    assert statement_breaker(expression) == problem


def test_a_statement_breaker_is_refused_before_it_reaches_the_server(head_db, connection):
    with Normalizer(connection) as normalizer:
        verdict = normalizer.same_expression(
            MESSAGES, "true); DROP TABLE chat_messages; --", "true"
        )
        assert normalizer.explained == 1  # "true" only: the other never went out
    assert not verdict and "does not parse here: it closes a parenthesis" in verdict.note
    assert head_db.scalar("SELECT to_regclass('public.chat_messages')") is not None


def test_it_runs_read_only_and_leaves_the_session_as_it_was(head_db):
    """Where every transaction is READ ONLY (chatdb drift), with nothing written; and on a
    writable connection, the savepoint's read-only setting does not outlive it."""
    before = catalog.snapshot(head_db.conn)
    dbname = head_db.conn.info.dbname
    head_db.conn.execute(f"ALTER DATABASE {dbname} SET default_transaction_read_only = on")
    try:
        engine, conn = connect(head_db.url, read_only=True)
        try:
            with Normalizer(conn) as normalizer:
                assert normalizer.same_expression(
                    CONVERSATIONS,
                    "website_id IN (SELECT id FROM websites WHERE user_id = auth.uid())",
                    catalog.OWNER_EXPR,
                )
                assert not normalizer.same_expression(CONVERSATIONS, "nope = 1", "true")
        finally:
            conn.close()
            engine.dispose()
    finally:
        head_db.conn.execute(f"ALTER DATABASE {dbname} RESET default_transaction_read_only")
    assert catalog.snapshot(head_db.conn) == before

    engine, conn = connect(head_db.url)
    try:
        path = conn.scalar(text("SHOW search_path"))
        with Normalizer(conn) as normalizer:
            assert conn.scalar(text("SHOW search_path")) == "pg_catalog, public"
            assert normalizer.same_expression(CONVERSATIONS, "TRUE", "(1 = 1)")
            assert conn.scalar(text("SHOW transaction_read_only")) == "off"
        assert conn.scalar(text("SHOW search_path")) == path
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()


def test_plans_are_cached_for_the_run(connection):
    with Normalizer(connection) as normalizer:
        for _ in range(3):
            assert normalizer.same_expression(CONVERSATIONS, "TRUE", "true")  # texts differ
            assert normalizer.is_true(CONVERSATIONS, "(1 = 1)")
        assert normalizer.explained == 3  # TRUE, true, (1 = 1)
        assert not normalizer.is_true(CONVERSATIONS, "status = 'a'")


# --------------------------------------------------------------------------- triggers

TRIGGER_FORMS = [
    (
        CONVERSATIONS,
        (
            "before update on chat_conversations for each row execute procedure "
            "update_updated_at_column()"
        ),
    ),
    (
        MESSAGES,
        (
            "AFTER INSERT ON public.chat_messages FOR EACH ROW "
            "EXECUTE FUNCTION public.update_conversation_on_message()"
        ),
    ),
    (
        CONVERSATIONS,
        (
            "after update of status, customer_name or insert on chat_conversations "
            "execute procedure update_updated_at_column('a', b, 01, \"Mixed\")"
        ),
    ),
    (
        CONVERSATIONS,
        (
            "BEFORE UPDATE ON chat_conversations FOR ROW "
            "WHEN (OLD.status IS DISTINCT FROM NEW.status) "
            "EXECUTE FUNCTION update_updated_at_column()"
        ),
    ),
    (
        MESSAGES,
        (
            "AFTER INSERT ON chat_messages REFERENCING NEW TABLE AS inserted "
            "FOR EACH STATEMENT EXECUTE FUNCTION update_conversation_on_message()"
        ),
    ),
    (
        MESSAGES,
        (
            'AFTER INSERT ON "chat_messages" FOR EACH ROW '
            "WHEN (new.sender_type IN ('customer', 'owner')) "
            "EXECUTE FUNCTION update_conversation_on_message();"
        ),
    ),
]


def live_trigger_definition(db, table: str, definition: str) -> str:
    """What pg_get_triggerdef prints for ``definition``, read as autogenerate reads it."""
    db.conn.execute(f"CREATE TRIGGER probe {definition}")
    engine, conn = connect(db.url)
    try:
        found = live.read(
            conn,
            table_names=[table],
            table_prefix="chat_",
            function_names=[],
            roles=[],
            publication="supabase_realtime",
        )
        return found.triggers[(table, "probe")].definition
    finally:
        conn.close()
        engine.dispose()
        db.conn.execute(f"DROP TRIGGER probe ON {table}")


@pytest.mark.parametrize("table, natural", TRIGGER_FORMS)
def test_a_trigger_in_any_spelling_is_the_same_as_what_the_catalog_prints(
    any_head_db, table, natural
):
    shown = live_trigger_definition(any_head_db, table, natural)
    assert normalise_sql(shown) != normalise_sql(natural)
    engine, conn = connect(any_head_db.url)
    try:
        with Normalizer(conn) as normalizer:
            assert normalizer.trigger_differences(table, natural, shown) == [], shown
    finally:
        conn.close()
        engine.dispose()


BASE = "BEFORE UPDATE ON public.chat_conversations FOR EACH ROW EXECUTE FUNCTION f()"


@pytest.mark.parametrize(
    "want, sentence",
    [
        (
            "AFTER UPDATE ON chat_conversations FOR EACH ROW EXECUTE FUNCTION f()",
            "it fires BEFORE in the database, the code says AFTER",
        ),
        (
            "BEFORE UPDATE OR DELETE ON chat_conversations FOR EACH ROW EXECUTE FUNCTION f()",
            "its events are UPDATE in the database, the code says UPDATE OR DELETE",
        ),
        (
            "BEFORE UPDATE OF status ON chat_conversations FOR EACH ROW EXECUTE FUNCTION f()",
            "its events are UPDATE in the database, the code says UPDATE OF status",
        ),
        (
            "BEFORE UPDATE ON chat_conversations EXECUTE FUNCTION f()",
            "it is FOR EACH ROW in the database, the code says FOR EACH STATEMENT",
        ),
        (
            "BEFORE UPDATE ON chat_messages FOR EACH ROW EXECUTE FUNCTION f()",
            "it is on chat_conversations in the database, the code says chat_messages",
        ),
        (
            "BEFORE UPDATE ON chat_conversations FOR EACH ROW EXECUTE FUNCTION g()",
            "it executes f() in the database, the code says g()",
        ),
        (
            "BEFORE UPDATE ON chat_conversations FOR EACH ROW EXECUTE FUNCTION f('x')",
            "it executes f() in the database, the code says f('x')",
        ),
        (
            (
                "BEFORE UPDATE ON chat_conversations FOR EACH ROW "
                "WHEN (OLD.status <> NEW.status) EXECUTE FUNCTION f()"
            ),
            "WHEN is (none) in the database, the code says OLD.status <> NEW.status",
        ),
    ],
)
def test_each_part_of_a_trigger_that_differs_is_named(connection, want, sentence):
    with Normalizer(connection) as normalizer:
        assert normalizer.trigger_differences(CONVERSATIONS, want, BASE) == [sentence]


def test_a_different_when_condition_is_found_by_the_server(connection):
    have = (
        "BEFORE UPDATE ON public.chat_conversations FOR EACH ROW "
        "WHEN ((old.status IS DISTINCT FROM new.status)) EXECUTE FUNCTION f()"
    )
    with Normalizer(connection) as normalizer:
        same = (
            "before update on chat_conversations for each row "
            "when (OLD.status IS DISTINCT FROM NEW.status) execute procedure f()"
        )
        assert normalizer.trigger_differences(CONVERSATIONS, same, have) == []
        other = same.replace("OLD.status", "OLD.customer_id")
        assert normalizer.trigger_differences(CONVERSATIONS, other, have) == [
            (
                "WHEN is (old.status IS DISTINCT FROM new.status) in the database, "
                "the code says OLD.customer_id IS DISTINCT FROM NEW.status"
            )
        ]


def test_parse_trigger_reads_every_part():
    shape = parse_trigger(
        "after update of status, customer_name or insert on public.chat_conversations "
        "for each statement execute procedure update_updated_at_column('a', b, 01, \"Mixed\")"
    )
    assert shape.timing == "AFTER"
    assert shape.events == {"INSERT", "UPDATE"}
    assert shape.update_columns == {"status", "customer_name"}
    assert shape.table == "chat_conversations"
    assert shape.level == "STATEMENT"
    assert shape.function == "update_updated_at_column"
    assert shape.arguments == ("a", "b", "1", "Mixed")
    assert shape.events_text == "INSERT OR UPDATE OF customer_name, status"
    instead = parse_trigger(
        'INSTEAD OF DELETE ON other."View" FOR EACH ROW EXECUTE FUNCTION extensions.f()'
    )
    assert (instead.timing, instead.table, instead.function) == (
        "INSTEAD OF",
        'other."View"',
        "extensions.f",
    )


@pytest.mark.parametrize(
    "definition",
    [
        "UPDATE ON chat_conversations EXECUTE FUNCTION f()",
        "BEFORE UPDATE chat_conversations EXECUTE FUNCTION f()",
        "BEFORE UPDATE ON chat_conversations EXECUTE FUNCTION f",
        "BEFORE UPDATE ON chat_conversations EXECUTE FUNCTION f() AND MORE",
        "BEFORE UPDATE ON chat_conversations WHEN (x = 1 EXECUTE FUNCTION f()",
    ],
)
def test_a_trigger_definition_that_cannot_be_read_is_a_syntax_error(definition):
    with pytest.raises(TriggerSyntaxError):
        parse_trigger(definition)


def test_an_unreadable_trigger_in_the_code_is_a_difference_with_both_texts(connection):
    with Normalizer(connection) as normalizer:
        [sentence] = normalizer.trigger_differences(
            CONVERSATIONS, "BEFORE UPDATE chat_conversations EXECUTE FUNCTION f()", BASE
        )
    assert sentence.startswith(f"it is {BASE}, the code says BEFORE UPDATE chat_conversations")
    assert "(the code's definition cannot be read: expected ON at 'chat_conversations')" in (
        sentence
    )
