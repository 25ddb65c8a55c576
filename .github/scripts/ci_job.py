"""What the scripts of the GitHub jobs share (plan_pr.py, deploy.py).

- :func:`x_words`: the repository variable CHATDB_DEPLOY_OPTIONS ("lock_timeout=5s
  lock_retries=5") as the ``-x`` words of ``alembic`` and ``chatdb plan``;
- :func:`run`: a command of the project (``alembic``, ``chatdb``) or of PostgreSQL
  (``pg_dump``, ``psql``), its output echoed to the job's log as it comes and kept;
- :class:`Summary`: Markdown for the job's summary page (``$GITHUB_STEP_SUMMARY``; printed
  when the variable is unset, as on an operator's machine);
- :data:`AFTER`: what each exit code of docs/failures.md means for the job: whether
  anything changed, and whether re-running the job finishes it.

The scripts run with the project's virtualenv (``.venv/bin/python``), so ``chatdb`` is
importable and its commands sit beside the interpreter.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from chatdb import failures
from chatdb import markdown as md

BIN = Path(sys.executable).parent
ALEMBIC = str(BIN / "alembic")
CHATDB = str(BIN / "chatdb")
OPTIONS_VARIABLE = "CHATDB_DEPLOY_OPTIONS"

# The kinds of docs/failures.md, by exit code, and what each means for a deploy job.
KIND = {
    failures.SUCCESS: "success",
    failures.ALEMBIC_ERROR: "Alembic's own error",
    **{kind.exit_code: kind.kind for kind in failures.KINDS},
}
AFTER = {
    0: "Production is at head (a run that found nothing to do counts).",
    1: "A finding: nothing failed and nothing was changed.",
    2: (
        "Nothing was attempted, nothing was changed: correct what the sentence names (the "
        f"{OPTIONS_VARIABLE} variable, the DATABASE_URL secret), then re-run the job."
    ),
    3: (
        "Nothing was changed: production could not be reached or refused the login. "
        "Re-run the job once the cause the sentence names is fixed."
    ),
    4: (
        "Nothing was changed: the run was refused before any change (a guard, missing "
        "prerequisites, another deploy holding the migration lock too long). A guard's "
        f"refusal is accepted only by a reviewed -x allow_... option in {OPTIONS_VARIABLE}; "
        "then re-run the job."
    ),
    5: (
        "Nothing was changed: the run's transaction was rolled back whole. After a lock "
        "timeout, re-run the job at a quieter time (or raise -x lock_timeout); after a "
        "failed statement, fix the revision in a new pull request."
    ),
    6: (
        "Stopped part way: the online steps committed before the stop are kept and "
        "production works as before. Re-run the job (Re-run failed jobs): the next run "
        "finishes the job."
    ),
    255: (
        "Nothing was applied: Alembic's own error (an unknown revision, several heads, a "
        "revision file that does not load). Fix it in a pull request."
    ),
}
UNKNOWN = (
    "The process ended without its verdict (killed, or an unexpected error): re-run the "
    "job; a re-run finds nothing to do or finishes the job."
)


def outcome(code: int) -> str:
    """``exit N (kind)``: what an exit code of a project command means for the job."""
    return f"exit {code} ({KIND.get(code, 'unknown')}): {AFTER.get(code, UNKNOWN)}"


def x_words(options: str | None) -> list[str]:
    """``"lock_timeout=5s lock_retries=5"`` as ``["-x", "lock_timeout=5s", "-x", ...]``.

    Words are split as a shell splits them; a ``-x`` already written is accepted. Each
    word must be ``name=value`` (a BadInput otherwise); the names and values are checked
    by the run itself (chatdb.deploy.options), which refuses an unknown one before it
    connects."""
    try:
        words = shlex.split(options or "")
    except ValueError as exc:
        raise failures.BadInput(f"{OPTIONS_VARIABLE} cannot be split into words: {exc}.") from None
    out: list[str] = []
    for word in words:
        if word == "-x":
            continue
        name, equals, _ = word.removeprefix("-x").partition("=")
        if not equals or not name:
            raise failures.BadInput(
                f"{OPTIONS_VARIABLE} holds {word!r}, which is not name=value: write the -x "
                "options of the deploy as words such as lock_timeout=5s lock_retries=5."
            )
        out += ["-x", word.removeprefix("-x")]
    return out


@dataclass
class Ran:
    """A finished command: its exit status and what it printed."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def failed_line(self) -> str | None:
        """Its ``FAILED: ...`` line, if it printed one (the last)."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("FAILED: ")]
        return lines[-1] if lines else None


def _tee(stream: TextIO, echo: TextIO, kept: list[str]) -> None:
    for line in stream:
        kept.append(line)
        echo.write(line)
        echo.flush()


def run(argv: list[str], *, env: dict[str, str] | None = None) -> Ran:
    """Run ``argv`` in the project's folder; its stdout and stderr go to the job's log line
    by line as they come (a deploy's progress is seen live), and are kept."""
    process = subprocess.Popen(
        argv,
        cwd=project_root(),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=_tee, args=(process.stdout, sys.stdout, out)),
        threading.Thread(target=_tee, args=(process.stderr, sys.stderr, err)),
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    return Ran(list(argv), process.wait(), "".join(out), "".join(err))


def project_root() -> Path:
    """The project's folder: two levels above this script (.github/scripts/)."""
    return Path(__file__).resolve().parents[2]


def command_env(**values: str | None) -> dict[str, str]:
    """This process's environment with ``values`` set (None: removed)."""
    env = dict(os.environ)
    for name, value in values.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class Summary:
    """The job summary, in Markdown: lines are added in order and written once."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines += lines

    def block(self, markdown: str) -> None:
        """A piece of Markdown (a command's ``--format markdown`` output), set apart."""
        self.lines += ["", markdown.rstrip("\n"), ""]

    def write(self) -> None:
        """Append to ``$GITHUB_STEP_SUMMARY`` (GitHub shows it on the run's page), or
        print it when that is not set."""
        text = "\n".join(self.lines).strip("\n") + "\n"
        path = os.environ.get("GITHUB_STEP_SUMMARY")
        if path:
            with open(path, "a", encoding="utf-8") as summary:
                summary.write(text)
        else:
            print(text)


def fenced_output(ran: Ran) -> list[str]:
    """A command's output in a collapsed block (for the summary)."""
    text = (ran.stdout + ran.stderr).strip() or "(no output)"
    return md.details(f"Output of {' '.join(_shown(ran.argv))}", md.fenced(text))


def calls_section(summary: Summary, level: int, title: str, env: dict | None = None) -> int:
    """``chatdb calls check`` into the summary, under a heading; its exit code."""
    calls = run([CHATDB, "calls", "check"], env=env)
    summary.add("", md.heading(level, title), "")
    summary.add(*md.fenced((calls.stdout + calls.stderr).strip() or "(no output)"))
    return calls.returncode


def _shown(argv: list[str]) -> list[str]:
    """The command as a reader would type it: the venv's commands by their name."""
    return [Path(word).name if word in (ALEMBIC, CHATDB) else word for word in argv]


def shown(argv: list[str]) -> str:
    return " ".join(_shown(argv))


def fail(summary: Summary, title: str, exc: failures.Failure, after: str | None = None) -> int:
    """A script's own failure: ``FAILED: <sentence>`` on stdout (the job's log), the same
    in the summary under ``title`` with the exit code, its kind and ``after`` (what it
    means for the job; :func:`outcome`'s words by default), and the exit code."""
    print(f"FAILED: {exc}", flush=True)
    code = exc.exit_code
    meaning = f"exit {code} ({KIND.get(code, 'unknown')}): {after}" if after else outcome(code)
    summary.add("", md.heading(2, title), "", md.escape(f"FAILED: {exc}"), "")
    summary.add(f"**{md.escape(meaning)}**")
    summary.write()
    return code
