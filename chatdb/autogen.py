"""What autogenerate compares, and how new revision files are named.

- Only the chat system's tables in schema ``public`` are compared: tables owned by
  earlier migrations (``models.EXTERNAL_TABLES``) and Alembic's version table are
  skipped, and so is every schema Supabase manages (autogenerate looks at the
  default schema only, ``include_schemas`` is off).
- New revisions get the next number after the highest numeric id (004, 008 ->
  009, 010, ...), unless ``--rev-id`` was given.
"""

from __future__ import annotations

from typing import Any

from models import EXTERNAL_TABLES

VERSION_TABLE = "alembic_version"


def configure_options() -> dict[str, Any]:
    """Options env.py passes to ``context.configure`` for autogenerate and new revisions."""
    return dict(
        include_object=include_object,
        process_revision_directives=process_revision_directives,
        compare_type=True,
        compare_server_default=True,
    )


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's include_object: leave out tables that are not the chat system's."""
    if type_ == "table":
        return name not in EXTERNAL_TABLES and name != VERSION_TABLE
    table = getattr(obj, "table", None)
    if table is not None and getattr(table, "name", None) in EXTERNAL_TABLES:
        return False
    return True


def next_revision_id(existing_ids: list[str]) -> str:
    """The next id in the numbered sequence: one past the highest numeric id, three digits."""
    numbers = [int(rev) for rev in existing_ids if rev.isdigit()]
    return f"{max(numbers, default=0) + 1:03d}"


def process_revision_directives(context: Any, revision: Any, directives: list[Any]) -> None:
    """Give a new revision the next sequential id unless the user chose one (--rev-id)."""
    if not directives:
        return
    script = directives[0]
    if getattr(context.config, "cmd_opts", None) is not None and getattr(
        context.config.cmd_opts, "rev_id", None
    ):
        return
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(context.config)
    script.rev_id = next_revision_id([rev.revision for rev in scripts.walk_revisions()])
