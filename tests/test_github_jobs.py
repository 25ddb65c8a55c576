"""The GitHub jobs' scripts (.github/scripts/), run here as the workflow runs them.

- plan_pr.py, the pull request job: production is a database of a production shape on
  the Supabase-like cluster, read by the read-only role of docs/takeover/plan-role.sql;
  the job's service container is a fresh database on the plain cluster (``local_copy``);
  the job summary is a temp file (GITHUB_STEP_SUMMARY). The summary's headings, the
  plan's revisions and its verdict; the exit code of a plan that would fail; production
  unchanged; what the export needs of the role.
- deploy.py, the deploy job: the upgrade, its exit code and what it means in the summary,
  drift afterwards; bad options.
- .github/workflows/ci.yml: GitHub's schema (check-jsonschema's copy), and the
  properties the docs promise (who gets which secret, one deploy at a time).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from ruamel.yaml import YAML

from chatdb.local.server import bindir
from tests import shapes
from tests.convergence import chatdb_run
from tests.deploying import dump
from tests.docs import warm_python, warm_variables
from tests.pg import ROOT, command_env, revision_ids

SCRIPTS = ROOT / ".github" / "scripts"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
ROLE = "chatdb_plan"
PASSWORD = "not-shown-anywhere"  # the test clusters trust local logins: only masking is tested


def run_script(name: str, env: dict[str, str], summary: Path) -> subprocess.CompletedProcess:
    """``.venv/bin/python .github/scripts/<name>`` as the job's step runs it. The python
    is a virtualenv's whose ``chatdb`` and ``alembic`` run warm (tests.docs.warm_python):
    the scripts call them beside ``sys.executable``, a dozen times a test."""
    env = {**env, "GITHUB_STEP_SUMMARY": str(summary), "PG_BINDIR": str(bindir())}
    return subprocess.run(
        [str(warm_python()), str(SCRIPTS / name)],
        cwd=ROOT,
        env={**command_env(None, **env), **warm_variables()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def with_role(url: str, role: str, password: str | None = None) -> str:
    """``url`` (postgresql://postgres@host:port/db) with another user."""
    user = role if password is None else f"{role}:{password}"
    return url.replace("postgresql://postgres@", f"postgresql://{user}@", 1)


@pytest.fixture
def plan_role(shape_d_db):
    """docs/takeover/plan-role.sql run on "production", as its sh line says; the role is
    cluster-wide, so it is dropped afterwards (with what it was granted)."""
    result = subprocess.run(
        [str(bindir() / "psql"), shape_d_db.url, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        + ["-f", str(ROOT / "docs" / "takeover" / "plan-role.sql")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    yield with_role(shape_d_db.url, ROLE, PASSWORD)
    shape_d_db.conn.execute(f"DROP OWNED BY {ROLE}")
    shape_d_db.conn.execute(f"DROP ROLE {ROLE}")


def plan_env(production: str, copy: str, options: str | None = None) -> dict[str, str]:
    env = {"PRODUCTION_READONLY_URL": production, "PLAN_COPY_URL": copy}
    if options is not None:
        env["CHATDB_DEPLOY_OPTIONS"] = options
    return env


def default_privileges(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT r.rolname, d.defaclobjtype, d.defaclacl::text FROM pg_default_acl d "
            "JOIN pg_roles r ON r.oid = d.defaclrole "
            "WHERE d.defaclnamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall()


# --------------------------------------------------------------------------- plan_pr.py


def test_the_pull_request_job_writes_the_plan_of_shape_d_into_the_summary(
    shape_d_db, plan_role, local_copy, tmp_path
):
    before = dump(shape_d_db.url)
    summary = tmp_path / "summary.md"
    options = "lock_timeout=5s lock_retries=5"  # the team's; production needs no override
    result = run_script("plan_pr.py", plan_env(plan_role, local_copy, options), summary)
    written = summary.read_text()
    print(written)  # the summary, for the record (pytest -s)
    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(shape_d_db.url) == before  # production was only read

    for heading in (
        "# What merging this pull request would do to production",
        "## Plan of `alembic upgrade head` for postgresql://postgres@",
        "### Changes, by table",
        "### Access that would change (anon, authenticated, PUBLIC)",
        "### Hazards",
        "### Verdict",
        "## After the deploy (the copy, upgraded to head)",
        "## What the copy cannot show",
    ):
        assert f"\n{heading}" in "\n" + written, heading
    assert "\n**The deploy would succeed.** On merge, the deploy job applies it" in written
    revisions = ", ".join(revision_ids())
    assert f"revisions to apply: {revisions}." in written  # shape d: never migrated
    assert f"**The deploy would succeed: it applies {revisions}.**" in written
    assert "-x lock_timeout=5s -x lock_retries=5" in written
    assert "WIDER" not in written
    assert f"role {ROLE}, read-only by default" in written
    assert f"{ROLE}:\\*\\*\\*@" in written  # the URL, its password masked
    assert PASSWORD not in written + result.stdout + result.stderr
    assert "### Drift" in written or "### No drift" in written
    assert "### The backend's calls after the deploy (chatdb calls check)" in written


# A policy made by hand on production that still lets a signed-in user read conversations:
# c003 refuses to leave it (the chat tables are the backend's alone), so the deploy fails.
HAND_MADE_POLICY = (
    'CREATE POLICY "Signed-in users read active chats" ON public.chat_conversations '
    "FOR SELECT TO authenticated USING (status = 'active')"
)


def test_a_plan_that_would_fail_fails_the_job_and_the_summary_says_why(
    shape_d_db, plan_role, local_copy, tmp_path
):
    shape_d_db.conn.execute(HAND_MADE_POLICY)
    summary = tmp_path / "summary.md"
    result = run_script("plan_pr.py", plan_env(plan_role, local_copy), summary)
    written = summary.read_text()
    assert result.returncode == 1, result.stdout + result.stderr
    deploy_would_say = chatdb_run("plan", url=shape_d_db.url).stdout.splitlines()[-1]
    stop = "FAILED: Migration step (upgrade c002 -> c003) failed: "
    assert deploy_would_say.startswith(stop), deploy_would_say
    assert "after c003, policies still let anon, authenticated or PUBLIC" in deploy_would_say
    assert (
        "**The deploy would fail**: merged as it is, the deploy job would stop with " + stop
        in written
    )
    assert written.rstrip().split("### Verdict\n\n", 1)[1].startswith(stop)
    assert '"Signed-in users read active chats"' in written
    assert "## After the deploy" not in written
    # the copy the plan ran on is production's schema, exported by the read-only role
    # with the deploy role's default privileges (platform.sql -v migration_role)
    assert (
        chatdb_run("access", url=local_copy).stdout.splitlines()[1:]
        == (chatdb_run("access", url=shape_d_db.url).stdout.splitlines()[1:])
    )
    assert default_privileges(local_copy) == default_privileges(shape_d_db.url) != []


def test_a_role_that_cannot_lock_a_table_stops_the_export_with_what_to_do(
    shape_d_db, plan_role, local_copy, tmp_path
):
    shape_d_db.conn.execute(f"REVOKE SELECT ON chat_messages FROM {ROLE}")
    summary = tmp_path / "summary.md"
    result = run_script("plan_pr.py", plan_env(plan_role, local_copy, ""), summary)
    assert result.returncode == 5, result.stdout + result.stderr
    [failed] = [line for line in result.stdout.splitlines() if line.startswith("FAILED: ")]
    assert failed.startswith("FAILED: Exporting chat-schema.sql from postgresql://chatdb_plan:***@")
    assert "permission denied for table chat_messages" in failed
    assert "run docs/takeover/plan-role.sql on production again" in failed
    assert "## The plan could not be made" in summary.read_text()
    assert "**exit 5 (failed, rolled back): production was not changed;" in summary.read_text()
    assert PASSWORD not in result.stdout + summary.read_text()


def test_the_job_refuses_a_copy_that_is_not_empty_and_a_missing_secret(
    shape_d_db, plan_role, head_db, tmp_path
):
    summary = tmp_path / "summary.md"
    result = run_script("plan_pr.py", plan_env(plan_role, head_db.url), summary)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "table(s) in schema public: the copy of production must be loaded into an empty" in (
        result.stdout
    )
    missing = run_script("plan_pr.py", {"PLAN_COPY_URL": head_db.url}, tmp_path / "other.md")
    assert missing.returncode == 2
    assert missing.stdout.startswith(
        "FAILED: PRODUCTION_READONLY_URL is not set (GitHub gives no secrets to the workflows "
        "of a pull request from a fork): the job cannot plan."
    )


# --------------------------------------------------------------------------- deploy.py


def test_the_deploy_job_upgrades_then_writes_the_outcome_and_drift(shape_d_db, tmp_path):
    rows = shapes.all_rows(shape_d_db.conn)
    summary = tmp_path / "summary.md"
    env = {"DATABASE_URL": shape_d_db.url, "CHATDB_DEPLOY_OPTIONS": "-x lock_timeout=5s"}
    result = run_script("deploy.py", env, summary)
    written = summary.read_text()
    assert result.returncode == 0, result.stdout + result.stderr
    assert written.startswith("# Deploy to production\n")
    assert "`alembic -x lock_timeout=5s upgrade head`" in written
    assert "**exit 0 (success): Production is at head" in written
    assert f"Revisions applied: {', '.join(revision_ids())}." in written
    assert "Running upgrade" in result.stderr  # the log, live in the job's output
    assert "\n## Drift\n" in written or "\n## No drift\n" in written
    assert all(shapes.all_rows(shape_d_db.conn).values()) and rows

    again = run_script("deploy.py", env, tmp_path / "again.md")
    assert again.returncode == 0
    assert "Revisions applied: none: production was at head already." in (
        (tmp_path / "again.md").read_text()
    )


def test_a_refused_deploy_fails_the_job_with_nothing_changed(shape_b_db, tmp_path):
    """Production holds text ids that are not uuids (the older script's tables): c001
    refuses before any change, and the job fails saying nothing was changed."""
    shapes.add_bad_website_ids(shape_b_db.conn)
    before = dump(shape_b_db.url)
    summary = tmp_path / "summary.md"
    result = run_script("deploy.py", {"DATABASE_URL": shape_b_db.url}, summary)
    written = summary.read_text()
    assert result.returncode == 4, result.stdout + result.stderr
    assert dump(shape_b_db.url) == before
    assert "**exit 4 (refused before any change): Nothing was changed" in written
    assert "\nFAILED: Revision c001 cannot bring the chat tables" in written
    assert "## Drift" not in written


@pytest.mark.parametrize(
    ("options", "sentence"),
    [
        ("lock_timeout", "CHATDB_DEPLOY_OPTIONS holds 'lock_timeout', which is not name=value"),
        ("lock_timout=5s", "did you mean -x lock_timeout?"),
    ],
)
def test_deploy_options_that_cannot_be_used_change_nothing(options, sentence, head_db, tmp_path):
    summary = tmp_path / "summary.md"
    env = {"DATABASE_URL": head_db.url, "CHATDB_DEPLOY_OPTIONS": options}
    result = run_script("deploy.py", env, summary)
    assert result.returncode == 2, result.stdout + result.stderr
    assert sentence in result.stdout
    assert (
        "**exit 2 (bad input, nothing attempted): Nothing was attempted, nothing was changed"
        in (summary.read_text())
    )


# --------------------------------------------------------------------------- the workflow


def workflow() -> dict:
    return YAML(typ="safe").load(WORKFLOW.read_text())


def test_the_workflow_matches_githubs_schema():
    check = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(check), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_the_deploy_job_sees_production_and_deploys_one_at_a_time():
    jobs = workflow()["jobs"]
    deploy, plan, test = jobs["deploy"], jobs["plan"], jobs["test"]
    assert deploy["environment"] == "production"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert deploy["needs"] == "test"
    assert "github.event_name != 'pull_request'" in deploy["if"]
    assert "refs/heads/main" in deploy["if"]
    text = WORKFLOW.read_text()
    assert text.count("secrets.DATABASE_URL") == 1  # in the deploy job's step
    assert "secrets.DATABASE_URL" in str(deploy["steps"])
    assert "environment" not in plan and "secrets.DATABASE_URL" not in str(plan)
    assert plan["if"] == "github.event_name == 'pull_request'"
    assert plan["services"]["postgres"]["image"].startswith("postgres:${{ vars.")
    assert [step.get("run") for step in test["steps"]][-1] == "bash .ci/run"
    for job in jobs.values():  # every script a step runs is in the project
        for step in job["steps"]:
            for word in str(step.get("run", "")).replace('"', " ").split():
                if word.startswith((".github/", ".ci/")):
                    assert (ROOT / word).exists(), word


def test_postgres_client_names_the_folder_of_an_installed_major_version():
    major = bindir().parent.name
    script = str(SCRIPTS / "postgres-client")
    found = subprocess.run(["bash", script, major], capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == Path(f"/usr/lib/postgresql/{major}/bin")
    assert (Path(found.stdout.strip()) / "pg_dump").exists()
    wrong = subprocess.run(["bash", script, "x"], capture_output=True, text=True, check=False)
    assert wrong.returncode == 2
    assert "MAJOR must be a number" in wrong.stderr


# --------------------------------------------------------------------------- Render


def render_yaml() -> dict:
    """The render.yaml of docs/deploying.md, "Deploying with the backend on Render"."""
    part = (
        (ROOT / "docs" / "deploying.md")
        .read_text()
        .split("## Deploying with the backend on Render", 1)[1]
    )
    block = part.split("```yaml\n", 1)[1].split("```", 1)[0]
    return YAML(typ="safe").load(block)


def test_renders_pre_deploy_line_as_written_migrates_and_a_refusal_fails_it(shape_d_db, tmp_path):
    [service] = render_yaml()["services"]
    assert service["rootDir"] == "backend"
    assert "../db/.venv/bin/pip install ../db" in service["buildCommand"]
    options = {v["key"]: v.get("value") for v in service["envVars"]}
    (tmp_path / "backend").mkdir()
    (tmp_path / "db").symlink_to(ROOT)  # this project at db/, beside backend/
    pooler = shape_d_db.url.rsplit(":", 1)[0] + ":6543/postgres"

    def pre_deploy(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            service["preDeployCommand"].split(),
            cwd=tmp_path / "backend",
            env=command_env(pooler, **env),  # the backend's own DATABASE_URL: a pooler
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    before = dump(shape_d_db.url)
    shape_d_db.conn.execute(HAND_MADE_POLICY)  # c003 refuses to leave it: the run fails
    refused = pre_deploy(CHATDB_DATABASE_URL=shape_d_db.url)
    assert refused.returncode == 5, refused.stdout + refused.stderr  # rolled back
    assert "# Deploy to production" in refused.stdout  # the summary, in Render's log
    shape_d_db.conn.execute('DROP POLICY "Signed-in users read active chats" ON chat_conversations')
    assert dump(shape_d_db.url) == before
    env = {"CHATDB_DATABASE_URL": shape_d_db.url}
    assert options["CHATDB_DEPLOY_OPTIONS"] == "lock_timeout=5s lock_retries=5"
    env["CHATDB_DEPLOY_OPTIONS"] = options["CHATDB_DEPLOY_OPTIONS"]
    done = pre_deploy(**env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Revisions applied: {', '.join(revision_ids())}." in done.stdout
