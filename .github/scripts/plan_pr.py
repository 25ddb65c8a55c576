"""The pull request job: what merging would do to production, without touching production.

1. Reads production as a read-only role (the repository secret PRODUCTION_READONLY_URL,
   docs/takeover/plan-role.sql): its PostgreSQL version, then the export of
   docs/taking-over-production.md step 1 (pg_dump --schema-only of the five tables,
   docs/takeover/platform.sql and access.sql). pg_dump takes ACCESS SHARE locks for a
   moment and gives up after 5 s behind a deploy's lock; nothing else is locked.
2. Loads the export into an empty database of the job's PostgreSQL service container
   (PLAN_COPY_URL), of production's major version, each file in one transaction.
3. Runs ``chatdb plan --format markdown`` there, with the deploy's -x options (the
   repository variable CHATDB_DEPLOY_OPTIONS). When the deploy would succeed, upgrades
   the copy and runs ``chatdb drift`` and, where this checkout has it, ``chatdb calls
   check``: what the backend's calls get after the deploy.
4. Writes all of it to the job's summary ($GITHUB_STEP_SUMMARY; printed when unset).

Exit status: 0 when the deploy would succeed (and the backend's calls work after it);
1 when the plan says the deploy would fail, or a call would fail after it; else the
code of the kind of failure that stopped the plan from being made (docs/failures.md):
2 bad input, 3 cannot connect, 5 a statement of the export or of the load failed.

Environment: PRODUCTION_READONLY_URL, PLAN_COPY_URL, CHATDB_DEPLOY_OPTIONS (optional),
CHATDB_MIGRATION_ROLE (the deploy's role, whose default privileges the copy gets;
postgres), PG_BINDIR (the folder of pg_dump and psql; else the PATH's), and
GITHUB_STEP_SUMMARY. Run with the project's virtualenv:
``.venv/bin/python .github/scripts/plan_pr.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from sqlalchemy import text

from chatdb import database, failures
from chatdb import markdown as md
from chatdb.urls import ENV_VAR, DatabaseUrlError, libpq_url, mask_url_text, parse_database_url

import ci_job
from ci_job import Summary

PRODUCTION = "PRODUCTION_READONLY_URL"
COPY = "PLAN_COPY_URL"
MIGRATION_ROLE = "CHATDB_MIGRATION_ROLE"
MAJOR_VARIABLE = "CHATDB_POSTGRES_MAJOR"
TABLES = ("chat_conversations", "chat_messages", "chat_participants", "websites", "delivery_orders")
TAKEOVER = ci_job.project_root() / "docs" / "takeover"
TITLE = "What merging this pull request would do to production"
APPLICATION_NAME = "chatdb plan (pull request job)"
NOT_MADE = "production was not changed; the job fails until the plan can be made."
CANNOT_SEE = (
    "The copy has production's schema, not its rows: it cannot show what only rows decide "
    "(text ids that are not uuids, orphans, NULLs in a column made NOT NULL, values a "
    "revision would drop, the row estimates that send a large table on the online path). "
    "The deploy reads them itself and refuses before any change (exit 4) where they stop it."
)


def main() -> int:
    summary = Summary()
    summary.add(md.heading(1, TITLE))
    try:
        production = target(PRODUCTION, "from the repository secret " + PRODUCTION)
        copy = target(COPY, "the job's service container")
        x_words = ci_job.x_words(os.environ.get(ci_job.OPTIONS_VARIABLE))
        read = versions(production, copy)
        with tempfile.TemporaryDirectory(prefix="chatdb-plan-") as folder:
            files = export(production, Path(folder), read["pg_bin"])
            load(copy, files, read["pg_bin"])
    except failures.Failure as exc:
        return ci_job.fail(summary, "The plan could not be made", exc, NOT_MADE)

    summary.add("", md.escape(source_line(production, read, x_words)))
    copy_env = ci_job.command_env(**{ENV_VAR: libpq_url(copy.url)})
    plan = ci_job.run([ci_job.CHATDB, "plan", "--format", "markdown", *x_words], env=copy_env)
    verdict(summary, plan)
    summary.block(plan.stdout)
    code = plan.returncode
    if code == 0:
        code = after_the_deploy(summary, copy_env, x_words)
    summary.add("", md.heading(2, "What the copy cannot show"), "", md.escape(CANNOT_SEE))
    summary.write()
    return code


# --------------------------------------------------------------------------- inputs


def target(variable: str, source: str) -> database.Target:
    """The database of ``variable`` (a BadInput naming it when missing or malformed)."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        hint = (
            " (GitHub gives no secrets to the workflows of a pull request from a fork)"
            if variable == PRODUCTION
            else ""
        )
        raise failures.BadInput(f"{variable} is not set{hint}: the job cannot plan.")
    try:
        url = parse_database_url(raw)
    except DatabaseUrlError as exc:
        raise failures.BadInput(str(exc).replace(ENV_VAR, variable)) from None
    return database.Target(url, source)


def versions(production: database.Target, copy: database.Target) -> dict:
    """Production's server and role, the copy's server, and a pg_dump that can dump
    production: a BadInput when the copy's major version is not production's or the
    pg_dump is older, or when the copy is not empty."""
    with database.connected(production, APPLICATION_NAME) as connection:
        prod = connection.execute(
            text(
                "SELECT current_setting('server_version_num')::int, "
                "current_setting('server_version'), current_user, "
                "current_setting('default_transaction_read_only'), "
                "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
            )
        ).one()
    with database.connected(copy, APPLICATION_NAME) as connection:
        copy_version, tables = connection.execute(
            text(
                "SELECT current_setting('server_version_num')::int, (SELECT count(*) FROM "
                "pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p'))"
            )
        ).one()
    major, copy_major = prod[0] // 10000, copy_version // 10000
    if copy_major != major:
        raise failures.BadInput(
            f"The service container runs PostgreSQL {copy_major}, production runs {major}: "
            f"set the repository variable {MAJOR_VARIABLE} to {major}, so that the copy "
            "behaves as production does."
        )
    if tables:
        raise failures.BadInput(
            f"{copy.shown} already holds {tables} table(s) in schema public: the copy of "
            "production must be loaded into an empty database."
        )
    pg_bin = client_folder()
    dump_major = client_major(pg_bin)
    if dump_major < major:
        raise failures.BadInput(
            f"pg_dump {dump_major} ({pg_bin}) is older than production's PostgreSQL {major}: "
            f"install postgresql-client-{major} (.github/scripts/postgres-client {major}) "
            "and point PG_BINDIR at its folder."
        )
    return {
        "major": major,
        "version": prod[1],
        "role": prod[2],
        "read_only": prod[3] == "on",
        "superuser": bool(prod[4]),
        "pg_bin": pg_bin,
        "pg_dump": dump_major,
    }


def client_folder() -> Path:
    """PG_BINDIR, else the folder of the pg_dump on the PATH."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = shutil.which("pg_dump")
    if not found:
        raise failures.BadInput("pg_dump is not installed: install postgresql-client.")
    return Path(found).parent


def client_major(pg_bin: Path) -> int:
    ran = ci_job.run([str(pg_bin / "pg_dump"), "--version"])
    found = re.search(r"\) (\d+)", ran.stdout)
    if ran.returncode != 0 or not found:
        raise failures.BadInput(f"{pg_bin / 'pg_dump'} --version did not say its version.")
    return int(found.group(1))


# --------------------------------------------------------------------------- export, load


def export(production: database.Target, folder: Path, pg_bin: Path) -> list[Path]:
    """docs/taking-over-production.md step 1, as the read-only role: the three files."""
    url = libpq_url(production.url)
    dump = [str(pg_bin / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges"]
    dump += ["--lock-wait-timeout=5s", *(f"--table=public.{table}" for table in TABLES)]
    role = os.environ.get(MIGRATION_ROLE) or "postgres"
    steps = [
        ("chat-schema.sql", [*dump, url]),
        (
            "platform.sql",
            [str(pg_bin / "psql"), url, "-X", "-At", "-v", "ON_ERROR_STOP=1"]
            + ["-v", f"migration_role={role}", "-f", str(TAKEOVER / "platform.sql")],
        ),
        (
            "access.sql",
            [str(pg_bin / "psql"), url, "-X", "-At", "-v", "ON_ERROR_STOP=1"]
            + ["-f", str(TAKEOVER / "access.sql")],
        ),
    ]
    files = []
    for name, argv in steps:
        ran = ci_job.run(argv)
        if ran.returncode != 0:
            raise failures.RolledBack(
                f"Exporting {name} from {production.shown} failed: {psql_error(ran)}; nothing "
                "was changed there: if a privilege is missing, run docs/takeover/plan-role.sql "
                "on production again (it grants what a new table needs)."
            )
        (folder / name).write_text(ran.stdout)
        files.append(folder / name)
    order = ("platform.sql", "chat-schema.sql", "access.sql")
    return sorted(files, key=lambda path: order.index(path.name))


def load(copy: database.Target, files: list[Path], pg_bin: Path) -> None:
    """Each file into the copy, in one transaction, stopping at the first error."""
    for path in files:
        ran = ci_job.run(
            [str(pg_bin / "psql"), libpq_url(copy.url), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
            + ["--single-transaction", "-f", str(path)]
        )
        if ran.returncode != 0:
            raise failures.RolledBack(
                f"Loading production's {path.name} into {copy.shown} failed: "
                f'{psql_error(ran)}; that file left nothing behind: see "When a step '
                'refuses" in docs/taking-over-production.md.'
            )


def psql_error(ran: ci_job.Ran) -> str:
    """The first error line of pg_dump or psql, any password masked."""
    lines = [line.strip() for line in ran.stderr.splitlines() if line.strip()]
    error = next((line for line in lines if "error" in line.lower()), None)
    return mask_url_text(error or (lines[0] if lines else f"exit {ran.returncode}"))


# --------------------------------------------------------------------------- summary


def source_line(production: database.Target, read: dict, x_words: list[str]) -> str:
    options = " ".join(x_words) or "none: the defaults"
    role = f"role {read['role']}" + (
        ", read-only by default" if read["read_only"] else ", NOT read-only by default"
    )
    if read["superuser"]:
        role += ", a SUPERUSER: give the job a read-only role (docs/takeover/plan-role.sql)"
    return (
        f"Production ({production.shown}, PostgreSQL "
        f"{read['version']}, {role}) was read, not locked beyond pg_dump's moment, and not "
        f"changed: pg_dump {read['pg_dump']} --schema-only of the chat tables, "
        "docs/takeover/platform.sql and access.sql, loaded into an empty PostgreSQL "
        f"{read['major']} of this job, where the plan ran with the deploy's -x options "
        f"({ci_job.OPTIONS_VARIABLE}: {options})."
    )


def verdict(summary: Summary, plan: ci_job.Ran) -> None:
    """The first thing a reviewer reads: would the merge's deploy succeed?"""
    failed = plan.failed_line()
    if plan.returncode == 0:
        line = "**The deploy would succeed.** On merge, the deploy job applies it to production."
    elif plan.returncode == 1:
        line = (
            "**The deploy would fail**: merged as it is, the deploy job would stop with "
            f"{md.escape(failed or 'the FAILED line below')} (nothing would be changed)."
        )
    else:
        line = (
            f"**The plan could not be made** ({md.escape(ci_job.KIND.get(plan.returncode, ''))}"
            f", exit {plan.returncode}): {md.escape(failed or 'see the output below')}"
        )
    summary.add("", line)


def after_the_deploy(summary: Summary, copy_env: dict[str, str], x_words: list[str]) -> int:
    """Upgrade the copy, then what chatdb drift and the backend's calls say there."""
    summary.add("", md.heading(2, "After the deploy (the copy, upgraded to head)"))
    upgrade = ci_job.run([ci_job.ALEMBIC, *x_words, "upgrade", "head"], env=copy_env)
    if upgrade.returncode != 0:
        summary.add(
            "", md.escape(f"The copy's upgrade failed: {ci_job.outcome(upgrade.returncode)}")
        )
        summary.add("", *ci_job.fenced_output(upgrade))
        return upgrade.returncode
    drift = ci_job.run([ci_job.CHATDB, "drift", "--format", "markdown"], env=copy_env)
    summary.block(md.demote(drift.stdout))
    title = "The backend's calls after the deploy (chatdb calls check)"
    calls = ci_job.calls_section(summary, 3, title, env=copy_env)
    if calls == 1:
        summary.add("", "**A backend call would fail after this deploy**: the job fails.")
    return calls


if __name__ == "__main__":
    sys.exit(main())
