"""What autogenerate compares, how new revision files are named, and the chat system's
non-table objects as autogenerate operations.

What is compared (the chat system's objects, nothing else):

- Tables: the models' tables, and any table in schema public whose name starts with
  ``chat_`` (so deleting a model autogenerates its drop). Tables of other migrations
  (``models.EXTERNAL_TABLES``, any other name) and Alembic's version table are
  skipped, and so is every schema Supabase manages (autogenerate looks at the
  default schema only, ``include_schemas`` is off).
- Their row level security flag, policies, triggers, the API roles' table
  privileges and Realtime publication membership, and the public functions that are
  declared or that a chat trigger executes (except ``models.EXTERNAL_FUNCTIONS``):
  declared in ``models.DECLARED``, read by :mod:`chatdb.inspect.live`.
- Their indexes' access method (``USING gin``) and predicate (a partial index's
  ``WHERE``), which Alembic does not compare (it compares an index's columns only):
  an index that differs there is replaced, drop and create, like one whose columns
  differ (:func:`compare_index_definitions`).

Why not alembic_utils: its PGPolicy writes ``CREATE POLICY <name>`` with the name
unquoted (004's names contain spaces: a syntax error) and renders them as Python
variable names; PGGrantTable turns table grants into column grants; and it compares
by creating every entity in a savepoint on the target database, which takes
ACCESS EXCLUSIVE locks on the chat tables and cannot run read-only (``chatdb drift``
must). The comparator here reads the catalog, and compares policy expressions and
trigger definitions as PostgreSQL understands them (:mod:`chatdb.inspect.normalize`:
read-only EXPLAINs where the texts differ), so any spelling of the same condition is
the same policy.

Ordering in a generated revision: drops of objects (and the old half of a
replacement) come before Alembic's table operations, so a column a policy uses can
be dropped; creates come after, so a new policy can use a new column or table.
Downgrades run the reverse.

New revisions get the next ``c`` id (c002 -> c003, ...), unless ``--rev-id`` was given:
ids of three digits are the replicas of the hand-run SQL files, each the number of its
file (000, 004, 008, 009, ..., 049), and ``c`` + 3 digits is every other revision, so
a new revision can never take the number of a later SQL file that has yet to be
replicated.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from alembic.operations import ops as alembic_ops
from alembic.runtime.plugins import Plugin
from alembic.util import DispatchPriority, PriorityDispatchResult
from sqlalchemy import Index, text
from sqlalchemy.dialects import postgresql

from chatdb.failures import BadInput, DiffsDetected
from chatdb.inspect import live as live_catalog
from chatdb.inspect.normalize import Normalizer
from chatdb.schema import access_report
from chatdb.schema.objects import (
    AFTER_TABLES,
    BEFORE_TABLES,
    CHAT_TABLE_PREFIX,
    VERSION_TABLE,
    Change,
    ObjectOp,
    chat_tables_of,
)
from chatdb.schema.words import describe, one_line
from models import EXTERNAL_FUNCTIONS, EXTERNAL_TABLES
from models.entities import Declared, Function, Grant, Policy, normalise_sql, qualified

PLUGIN_NAME = "chatdb.objects"


def configure_options(declared: Declared | None = None) -> dict[str, Any]:
    """Options env.py passes to ``context.configure`` for autogenerate and new revisions.

    ``declared`` replaces ``models.DECLARED`` (tests compare an edited copy).
    """
    if declared is None:
        from models import DECLARED as declared
    return {
        "include_object": include_object,
        "process_revision_directives": process_revision_directives,
        "compare_type": True,
        "compare_server_default": compare_server_default,
        "autogenerate_plugins": ["alembic.autogenerate.*", PLUGIN_NAME],
        "chatdb_declared": declared,
    }


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's include_object: leave out tables that are not the chat system's."""
    if type_ == "table":
        if name in EXTERNAL_TABLES or name == VERSION_TABLE:
            return False
        if reflected and compare_to is None:
            return bool(name) and name.startswith(CHAT_TABLE_PREFIX)
        return True
    table = getattr(obj, "table", None)
    return table is None or getattr(table, "name", None) not in EXTERNAL_TABLES


_SCHEMA_OF_FUNCTION = re.compile(r"\b(?:extensions|public)\.(?=\w+\()")


def compare_server_default(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Treat ``extensions.uuid_generate_v4()`` (Supabase, when ``extensions`` is not on the
    session's search_path) as the models' ``uuid_generate_v4()``. Alembic's own check
    would compare two freshly generated uuids. Anything else: Alembic decides."""
    if inspected_default is None or rendered_metadata_default is None:
        return None

    def strip(sql: str) -> str:
        return _SCHEMA_OF_FUNCTION.sub("", sql.strip("'\""))

    return False if strip(inspected_default) == strip(rendered_metadata_default) else None


REPLICA_ID = re.compile(r"\d{3}")  # a replica of a hand-run SQL file: the file's number
OWN_ID = re.compile(r"c(\d{3})")  # a revision that replicates no SQL file


def next_revision_id(existing_ids: list[str]) -> str:
    """The next ``c`` id: one past the highest ``c`` + 3 digits id (c001 when there is
    none). Replicas' ids (3 digits) are the SQL files' numbers and never chosen here."""
    numbers = [int(match[1]) for rev in existing_ids if (match := OWN_ID.fullmatch(rev))]
    return f"c{max(numbers, default=0) + 1:03d}"


_SLUG_WORD = re.compile(r"\w+")  # Alembic's own words (alembic.script.base._slug_re)


def slug(message: str | None, limit: int) -> str:
    """A new revision file's slug: the message's words, lower-cased and joined by ``_``
    as Alembic makes it, but cut after the last whole word that fits in ``limit``
    characters. (Alembic cuts at the last ``_`` before the limit, which may be inside
    a name like ``chat_messages``, and appends a ``_``.) A first word longer than the
    limit is cut at the limit."""
    words = [word.lower() for word in _SLUG_WORD.findall(message or "")]
    kept: list[str] = []
    for word in words:
        if len("_".join([*kept, word])) > limit:
            break
        kept.append(word)
    if not kept and words:
        return words[0][:limit].rstrip("_")
    return "_".join(kept)


def name_file_by_whole_words(context: Any, message: str | None) -> None:
    """Make the new revision's file name use :func:`slug`: Alembic computes the name
    from ``file_template`` (``%(rev)s_%(slug)s``) of the ScriptDirectory this command
    writes with, so the slug is put into that template (of this command's instance
    only), with ``truncate_slug_length`` as the limit."""
    directory = getattr(context, "script", None)
    template = getattr(directory, "file_template", None)
    words = slug(message, getattr(directory, "truncate_slug_length", None) or 40)
    if template and "%(slug)s" in template and words:
        directory.file_template = template.replace("%(slug)s", words.replace("%", "%%"))


def command_name(context: Any) -> str | None:
    """The Alembic command running (``check``, ``revision``...): the command line's
    (``config.cmd_opts.cmd``); through Alembic's Python API, the command function whose
    local ``retrieve_migrations`` env.py was given (``alembic.command.check``); None
    when neither says."""
    cmd = getattr(getattr(context.config, "cmd_opts", None), "cmd", None)
    if cmd:
        return getattr(cmd[0], "__name__", None)
    environment = getattr(context, "environment_context", None)
    fn = environment.context_opts.get("fn") if environment is not None else None
    qualname = getattr(fn, "__qualname__", "")
    return qualname.split(".", 1)[0] if ".<locals>." in qualname else None


def process_revision_directives(context: Any, revision: Any, directives: list[Any]) -> None:
    """``alembic check``: fail in the words of ``chatdb drift``. A new revision: the next
    ``c`` id (:func:`next_revision_id`) unless the user chose one (--rev-id), a file
    name cut at a whole word (:func:`slug`), and, when it changes policies, grants or
    row level security, what it does to access (chatdb.schema.access_report)."""
    if not directives:
        return
    script = directives[0]
    if command_name(context) == "check":
        fail_check_in_words(context, script)
        return
    if not getattr(getattr(context.config, "cmd_opts", None), "rev_id", None):
        from alembic.script import ScriptDirectory

        scripts = ScriptDirectory.from_config(context.config)
        script.rev_id = next_revision_id([rev.revision for rev in scripts.walk_revisions()])
    if len(directives) == 1:
        name_file_by_whole_words(context, script.message)
    if context.connection is not None:
        access_report.add_to_revision(context, script)


def fail_check_in_words(context: Any, script: Any) -> None:
    """``alembic check`` found differences: raise Alembic's own AutogenerateDiffsDetected
    (as :class:`chatdb.failures.DiffsDetected`, a finding: ``FAILED: ...``, exit code 1)
    with chatdb drift's sentences instead of a list of diff tuples."""
    diffs = [diff for upgrade_ops in script.upgrade_ops_list for diff in upgrade_ops.as_diffs()]
    if not diffs:
        return
    groups: dict[str, list[str]] = {}
    for upgrade_ops in script.upgrade_ops_list:
        for group, sentences in describe(upgrade_ops).items():
            groups.setdefault(group, []).extend(sentences)
    environment = getattr(context, "environment_context", None)
    raise DiffsDetected(
        f"New upgrade operations detected: {one_line(groups)}",
        revision_context=environment.context_opts.get("revision_context") if environment else None,
        diffs=diffs,
    )


# --------------------------------------------------------------------------- operations

# Order inside each phase: what depends on something comes after it.
_DROP_ORDER = ("trigger", "policy", "publication", "grant", "row_level_security", "function")
_CREATE_ORDER = ("function", "row_level_security", "policy", "trigger", "grant", "publication")


# --------------------------------------------------------------------------- comparison


def check_declared(declared: Declared, chat_tables: set[str]) -> None:
    unknown = sorted(declared.tables_referenced() - chat_tables)
    if unknown:
        raise BadInput(
            "models.DECLARED refers to tables that have no model in models/: " + ", ".join(unknown)
        )


def changes(connection: Any, declared: Declared, chat_tables: set[str]) -> list[Change]:
    """Every difference between the declared objects and the database, in table order."""
    check_declared(declared, chat_tables)
    live = live_catalog.read(
        connection,
        table_names=chat_tables,
        table_prefix=CHAT_TABLE_PREFIX,
        function_names={f.name for f in declared.functions},
        roles=declared.granted_roles,
        publication=declared.publication,
    )
    found: list[Change] = []
    with Normalizer(connection) as normalizer:
        for table in sorted(chat_tables | set(live.tables)):
            status = "new" if table not in live.tables else "kept"
            status = "removed" if table not in chat_tables else status
            found += _policy_changes(table, declared, live, normalizer)
            found += _trigger_changes(table, declared, live, normalizer)
            found += _rls_changes(table, status, declared, live)
            found += _grant_changes(table, status, declared, live)
            found += _publication_changes(table, status, declared, live)
    found += _function_changes(declared, live)
    return found


def _keyed(objects: Any, table: str) -> dict[str, Any]:
    return {obj.name: obj for obj in objects if obj.table == table}


def _show(value: str | None) -> str:
    return "(none)" if value is None else " ".join(value.split())


def _object_changes(
    table: str | None,
    kind: str,
    want: dict[str, Any],
    have: dict[str, Any],
    label: Any,
    extra: Any,
    differences: Any,
    *,
    in_place: bool = False,
    joiner: str = "; ",
) -> list[Change]:
    """Declared objects against live ones, by name. Missing: created after the tables;
    not in the code: dropped before them; different (``differences`` lists what, in
    words): replaced, in place (a function: CREATE OR REPLACE) or by a drop before the
    tables and a create after them."""
    out = []
    for name in sorted(set(want) | set(have)):
        w, h = want.get(name), have.get(name)
        found = differences(w, h) if w is not None and h is not None else []
        if h is None:
            out.append(
                Change(table, kind, name, f"{label(name)} is missing").add(
                    "add", AFTER_TABLES, [w.create_sql()], [w.drop_sql()]
                )
            )
        elif w is None:
            out.append(
                Change(table, kind, name, f"{label(name)} is not in the code{extra(h)}").add(
                    "drop", BEFORE_TABLES, [h.drop_sql()], [h.create_sql()]
                )
            )
        elif found:
            change = Change(table, kind, name, f"{label(name)} differs: {joiner.join(found)}")
            if in_place:
                change.add("alter", AFTER_TABLES, [w.create_sql()], [h.create_sql()])
            else:
                change.add("drop", BEFORE_TABLES, [h.drop_sql()], [h.create_sql()])
                change.add("add", AFTER_TABLES, [w.create_sql()], [w.drop_sql()])
            out.append(change)
    return out


def _policy_changes(
    table: str, declared: Declared, live: Any, normalizer: Normalizer
) -> list[Change]:
    return _object_changes(
        table,
        "policy",
        _keyed(declared.policies, table),
        _keyed(live.policies.values(), table),
        label=lambda name: f'policy "{name}"',
        extra=lambda policy: f" (an extra policy: {_policy_text(policy)})",
        differences=lambda want, have: _policy_differences(want, have, normalizer),
    )


def _policy_text(policy: Policy) -> str:
    text = f"FOR {policy.command} TO {', '.join(policy.roles)}"
    if policy.using is not None:
        text += f" USING {_show(policy.using)}"
    if policy.with_check is not None:
        text += f" WITH CHECK {_show(policy.with_check)}"
    return text


def _policy_differences(want: Policy, have: Policy, normalizer: Normalizer) -> list[str]:
    """What differs, in words; the expressions as PostgreSQL understands them."""
    out = []
    if want.command.upper() != have.command.upper():
        out.append(f"command is {have.command}, the code says {want.command}")
    if want.permissive != have.permissive:
        kinds = {True: "PERMISSIVE", False: "RESTRICTIVE"}
        out.append(f"it is {kinds[have.permissive]}, the code says {kinds[want.permissive]}")
    if sorted(want.roles) != sorted(have.roles):
        out.append(f"it applies to {', '.join(have.roles)}, the code says {', '.join(want.roles)}")
    for attr, label in (("using", "USING"), ("with_check", "WITH CHECK")):
        w, h = getattr(want, attr), getattr(have, attr)
        verdict = normalizer.same_expression(want.table, w, h)
        if not verdict:
            note = f" ({verdict.note})" if verdict.note else ""
            out.append(f"{label} is {_show(h)} in the database, the code says {_show(w)}{note}")
    return out


def _trigger_changes(
    table: str, declared: Declared, live: Any, normalizer: Normalizer
) -> list[Change]:
    return _object_changes(
        table,
        "trigger",
        _keyed(declared.triggers, table),
        _keyed(live.triggers.values(), table),
        label=lambda name: f"trigger {name}",
        extra=lambda trigger: f" ({_show(trigger.definition)})",
        differences=lambda want, have: normalizer.trigger_differences(
            table, want.definition, have.definition
        ),
    )


def _rls_changes(table: str, status: str, declared: Declared, live: Any) -> list[Change]:
    want = table in declared.row_level_security and status != "removed"
    have = live.tables.get(table, False)
    if want == have:
        return []
    on = f"ALTER TABLE {qualified(table)} ENABLE ROW LEVEL SECURITY"
    off = f"ALTER TABLE {qualified(table)} DISABLE ROW LEVEL SECURITY"
    sentence = (
        "row level security is disabled, the code enables it"
        if want
        else "row level security is enabled, the code does not enable it"
    )
    phase = BEFORE_TABLES if status == "removed" else AFTER_TABLES
    return [
        Change(table, "row_level_security", "", sentence).add(
            "alter", phase, [on if want else off], [off if want else on]
        )
    ]


def _grant_sql(verb: str, privileges: list[str], table: str, role: str) -> str:
    preposition = "TO" if verb == "GRANT" else "FROM"
    return f"{verb} {', '.join(privileges)} ON {qualified(table)} {preposition} {role}"


def _grant_changes(table: str, status: str, declared: Declared, live: Any) -> list[Change]:
    out = []
    wanted = {g.role: g for g in declared.grants if g.table == table}
    order = list(live.all_privileges)

    def listed(privileges: frozenset[str]) -> list[str]:
        return sorted(privileges, key=order.index)

    for role in declared.granted_roles:
        grant = wanted.get(role) if status != "removed" else None
        want = grant.expanded(live.all_privileges) if grant else frozenset()
        if status == "new":
            sql = [_grant_sql("REVOKE", ["ALL"], table, role)]
            if want:
                sql.append(_grant_sql("GRANT", _all_or(listed(want), order), table, role))
            out.append(
                Change(table, "grant", role, f"role {role} has no privileges yet").add(
                    "alter", AFTER_TABLES, sql, []
                )
            )
            continue
        have = live.grants.get((table, role), frozenset())
        missing, extra = listed(want - have), listed(have - want)
        if not missing and not extra:
            continue
        sql, undo, words = [], [], []
        if missing:
            sql.append(_grant_sql("GRANT", missing, table, role))
            undo.append(_grant_sql("REVOKE", missing, table, role))
            words.append(f"lacks {', '.join(missing)}")
        if extra:
            sql.append(_grant_sql("REVOKE", extra, table, role))
            undo.append(_grant_sql("GRANT", extra, table, role))
            words.append(f"also has {', '.join(extra)}")
        code_says = _grant_words(grant)
        sentence = f"role {role} {' and '.join(words)} (the code grants {code_says})"
        phase = BEFORE_TABLES if status == "removed" else AFTER_TABLES
        out.append(Change(table, "grant", role, sentence).add("alter", phase, sql, undo))
    return out


def _all_or(privileges: list[str], order: list[str]) -> list[str]:
    return ["ALL"] if set(privileges) == set(order) else privileges


def _grant_words(grant: Grant | None) -> str:
    if grant is None:
        return "nothing"
    return "ALL" if isinstance(grant.privileges, str) else ", ".join(grant.privileges)


def _publication_changes(table: str, status: str, declared: Declared, live: Any) -> list[Change]:
    if not live.publication_exists or live.publication_for_all:
        return []
    want = table in declared.publication_tables and status != "removed"
    have = table in live.publication_members
    if want == have:
        return []
    pub = declared.publication
    add = f"ALTER PUBLICATION {pub} ADD TABLE {qualified(table)}"
    drop = f"ALTER PUBLICATION {pub} DROP TABLE {qualified(table)}"
    if want:
        return [
            Change(
                table,
                "publication",
                pub,
                f"the table is not in publication {pub}, the code says it is",
            ).add("add", AFTER_TABLES, [add], [drop])
        ]
    phase = BEFORE_TABLES if status == "removed" else AFTER_TABLES
    return [
        Change(
            table, "publication", pub, f"the table is in publication {pub}, the code says it is not"
        ).add("drop", phase, [drop], [add])
    ]


def _function_changes(declared: Declared, live: Any) -> list[Change]:
    def by_signature(functions: Any) -> dict[str, Function]:
        return {
            f"{f.name}({f.arguments})": f for f in functions if f.name not in EXTERNAL_FUNCTIONS
        }

    return _object_changes(
        None,
        "function",
        by_signature(declared.functions),
        by_signature(live.functions.values()),
        label=lambda signature: f"function {signature}",
        extra=lambda function: "",
        differences=_function_differences,
        in_place=True,
        joiner=", ",
    )


def _function_differences(want: Function, have: Function) -> list[str]:
    out = []
    if want.returns.lower() != have.returns.lower():
        out.append(f"it returns {have.returns}, the code says {want.returns}")
    if want.language.lower() != have.language.lower():
        out.append(f"its language is {have.language}, the code says {want.language}")
    if want.security_definer != have.security_definer:
        out.append("SECURITY DEFINER differs")
    if normalise_sql(want.body) != normalise_sql(have.body):
        out.append("its body differs from the code")
    return out


def ordered_ops(found: list[Change]) -> tuple[list[ObjectOp], list[ObjectOp]]:
    """The operations to run before Alembic's table operations, and those to run after."""
    ops = [op for change in found for op in change.ops]
    before = sorted(
        (op for op in ops if op.phase == BEFORE_TABLES), key=lambda op: _DROP_ORDER.index(op.kind)
    )
    after = sorted(
        (op for op in ops if op.phase == AFTER_TABLES), key=lambda op: _CREATE_ORDER.index(op.kind)
    )
    return before, after


def compare_objects(autogen_context: Any, upgrade_ops: Any, schemas: Any) -> None:
    """Alembic comparator (plugin ``chatdb.objects``): add the non-table operations."""
    if None not in schemas:
        return
    declared = autogen_context.opts.get("chatdb_declared")
    if declared is None:
        from models import DECLARED as declared
    chat_tables = chat_tables_of(autogen_context.sorted_tables)
    found = changes(autogen_context.connection, declared, chat_tables)
    before, after = ordered_ops(found)
    upgrade_ops.ops[:0] = before
    upgrade_ops.ops.extend(after)


# --------------------------------------------------------------------------- index definitions


def _where_sql(where: Any) -> str | None:
    if where is None or isinstance(where, str):
        return where
    if hasattr(where, "text"):
        return where.text
    return str(where.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def index_shape(method: str | None, where: Any) -> tuple[str, str | None]:
    """What Alembic leaves out of an index comparison: (access method, predicate)."""
    return ((method or "btree").lower(), normalise_sql(_where_sql(where)))


def _reflected_index(table: Any, found: dict[str, Any]) -> Index:
    """The live index as an Index of the reflected table (for the drop, and its undo)."""
    options = found.get("dialect_options", {})
    sorting = found.get("column_sorting", {})
    expressions = found.get("expressions") or found["column_names"]
    elements: list[Any] = []
    for name in expressions:
        if name in table.c and not sorting.get(name):
            elements.append(table.c[name])
        else:
            elements.append(text(" ".join([name, *(s.upper() for s in sorting.get(name, ()))])))
    kw = {
        f"postgresql_{key}": value
        for key, value in (
            ("using", options.get("postgresql_using")),
            ("where", text(options["postgresql_where"]) if "postgresql_where" in options else None),
        )
        if value is not None
    }
    return Index(found["name"], *elements, unique=bool(found.get("unique")), _table=table, **kw)


def compare_index_definitions(
    autogen_context: Any,
    modify_ops: Any,
    schema: str | None,
    tname: str,
    conn_table: Any,
    metadata_table: Any,
) -> PriorityDispatchResult:
    """Alembic comparator (table level, after Alembic's own index comparison): a chat
    table's index whose columns match the models but whose method or predicate does not
    (``USING gin``, a partial index's ``WHERE``) is replaced, drop and create, as Alembic
    replaces one whose columns differ. Predicates compare as text, written as
    PostgreSQL prints them (``(metadata IS NOT NULL)``), whitespace aside."""
    if conn_table is None or metadata_table is None or tname in EXTERNAL_TABLES:
        return PriorityDispatchResult.CONTINUE
    handled = {
        op.index_name
        for op in modify_ops.ops
        if isinstance(op, (alembic_ops.CreateIndexOp, alembic_ops.DropIndexOp))
    }
    live = {i["name"]: i for i in autogen_context.inspector.get_indexes(tname, schema=schema)}
    for index in sorted(metadata_table.indexes, key=lambda i: str(i.name)):
        found = live.get(index.name)
        if found is None or index.name in handled:
            continue
        options = found.get("dialect_options", {})
        want = index_shape(
            index.dialect_options["postgresql"]["using"],
            index.dialect_options["postgresql"]["where"],
        )
        have = index_shape(options.get("postgresql_using"), options.get("postgresql_where"))
        if want != have:
            modify_ops.ops.append(
                alembic_ops.DropIndexOp.from_index(_reflected_index(conn_table, found))
            )
            modify_ops.ops.append(alembic_ops.CreateIndexOp.from_index(index))
    return PriorityDispatchResult.CONTINUE


def setup(plugin: Plugin) -> None:
    plugin.add_autogenerate_comparator(
        compare_objects, "schema", "chatdb_objects", priority=DispatchPriority.LAST
    )
    plugin.add_autogenerate_comparator(
        compare_index_definitions,
        "table",
        "chatdb_index_definitions",
        priority=DispatchPriority.LAST,
    )


Plugin.setup_plugin_from_module(sys.modules[__name__], PLUGIN_NAME)
