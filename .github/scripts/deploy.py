"""The deploy job: ``alembic upgrade head`` on production, then what production looks like.

1. ``alembic -x ... upgrade head`` against DATABASE_URL (the secret of the GitHub
   environment ``production``), with the -x options of the repository variable
   CHATDB_DEPLOY_OPTIONS ("lock_timeout=5s lock_retries=5"); its log is shown live.
2. When it succeeded: ``chatdb drift --format markdown`` (read-only) and, where this
   checkout has it, ``chatdb calls check``: whether the backend's calls work now.
3. The job's summary ($GITHUB_STEP_SUMMARY; printed when unset): the revisions applied,
   the exit code and what it means for the job (nothing changed; or re-run the job to
   finish it), the drift, the calls.

Exit status: the upgrade's (docs/failures.md: 0 done or nothing to do; 2, 3, 4, 5 and
255 nothing changed; 6 stopped part way, a re-run finishes the job); after a successful
upgrade, 1 when a backend call fails on production. Drift alone does not fail the job
(objects the code does not declare, such as a column of the older script, stay until a
revision drops them): it is a warning on the run's page. Run with the project's
virtualenv: ``.venv/bin/python .github/scripts/deploy.py``.
"""

from __future__ import annotations

import os
import re
import sys

from chatdb import failures
from chatdb import markdown as md

import ci_job
from ci_job import Summary

TITLE = "Deploy to production"
RUNNING = re.compile(r"Running upgrade (\S*) -> (\S+?),")


def main() -> int:
    summary = Summary()
    summary.add(md.heading(1, TITLE))
    try:
        x_words = ci_job.x_words(os.environ.get(ci_job.OPTIONS_VARIABLE))
    except failures.Failure as exc:
        return ci_job.fail(summary, "Nothing was deployed", exc)
    upgrade = ci_job.run([ci_job.ALEMBIC, *x_words, "upgrade", "head"])
    code = upgrade.returncode
    applied = [match.group(2) for match in RUNNING.finditer(upgrade.stderr)]
    summary.add("", md.code(ci_job.shown(upgrade.argv)) + " (DATABASE_URL: the production secret)")
    summary.add("", f"**{md.escape(ci_job.outcome(code))}**")
    if code == 0:
        done = ", ".join(applied) if applied else "none: production was at head already"
        summary.add("", md.escape(f"Revisions applied: {done}."))
    else:
        failed = upgrade.failed_line()
        if failed:
            summary.add("", md.escape(failed))
        if applied:
            summary.add(
                "",
                md.escape(
                    "Revisions the run reached before it stopped (none of them is kept unless "
                    f"the exit code says so): {', '.join(applied)}."
                ),
            )
    summary.add("", *ci_job.fenced_output(upgrade))
    if code != 0:
        summary.write()
        return code

    drift = ci_job.run([ci_job.CHATDB, "drift", "--format", "markdown"])
    summary.block(drift.stdout)
    if drift.returncode == 1:
        print("::warning::chatdb drift: production differs from the code (see the summary)")
    elif drift.returncode != 0:
        summary.add(
            "", md.escape(f"chatdb drift could not check: {ci_job.outcome(drift.returncode)}")
        )
    title = "The backend's calls on production (chatdb calls check)"
    calls = ci_job.calls_section(summary, 2, title)
    if calls == 1:
        summary.add(
            "",
            "**The deploy succeeded and is kept, but a backend call fails on production**: "
            "the job fails so that somebody looks.",
        )
    summary.write()
    return calls


if __name__ == "__main__":
    sys.exit(main())
