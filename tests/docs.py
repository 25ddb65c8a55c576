"""The shell blocks of the README and the guides, run as a reader pastes them.

A guide's ```sh blocks are commands to paste; ```text blocks show output. A
:class:`Reader` runs a document's sh blocks one after another in one folder (a copy of
the project, or the project itself), with bash, as one terminal would: what a block
exports is there for the next one, and a block stops at its first command that fails.
A command fails when it exits with 2 or more (the project's failures, docs/failures.md;
127, not found; Alembic's 255): exit status 1 is a finding, not a failure (``chatdb
drift`` found a difference, ``diff`` found the files differ), so the block goes on and
the reader notes the command among the block's findings, for the test to judge. Before a block runs, the example URLs of the document are
replaced with the test's own (:attr:`Reader.substitutions`, exact strings, longest
first): nothing else of the text changes.

The exception is the README's test command, the whole suite (``./dev test`` alone on
its line): a test cannot run the suite it belongs to; CI runs that very line
(``.ci/run``, checked by tests/test_docs.py), so the reader runs everything else.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests import warm
from tests.pg import ROOT, copy_project
from tests.warm import ENTRY_POINTS

SHELL = ("sh", "bash", "shell")
WHOLE_SUITE = "./dev test"  # the README's test command: CI runs it (.ci/run)
_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced block of a document: its language, its text, the line it starts on."""

    doc: str
    line: int
    lang: str
    text: str

    @property
    def runnable(self) -> bool:
        return self.lang in SHELL

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order (an indented fence, inside a list
    item, keeps its indentation out of the text)."""
    found, current, indent, lang, start = [], None, "", "", 0
    name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = _FENCE.match(line)
        if current is None and fence:
            current, indent, lang, start = [], fence[1], fence[2], number
        elif current is not None and fence and fence[1] == indent and not fence[2]:
            found.append(Block(name, start, lang, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
    return found


def shell_blocks(path: Path) -> list[Block]:
    return [block for block in blocks(path) if block.runnable]


def text_after(path: Path, block: Block) -> Block | None:
    """The ```text block that follows ``block`` (the output a document shows for it)."""
    found = blocks(path)
    later = found[found.index(block) + 1 :]
    return next((b for b in later if b.lang == "text"), None)


def without_comment(line: str) -> str:
    """A line of shell without its trailing comment (a # outside quotes)."""
    words = shlex.shlex(line, posix=True, punctuation_chars=False)
    words.whitespace_split = True
    words.commenters = "#"
    try:
        return " ".join(words)
    except ValueError:  # an unbalanced quote: leave the line as it is
        return line


def is_whole_suite(line: str) -> bool:
    return without_comment(line).strip() == WHOLE_SUITE


@dataclass
class Reader:
    """Runs a document's shell blocks in ``folder``, carrying exported variables from one
    block to the next, with the document's URLs replaced by ``substitutions``."""

    folder: Path
    substitutions: dict[str, str] = field(default_factory=dict)
    env: Mapping[str, str] | None = None
    timeout: float = 300
    ran: list[tuple[Block, subprocess.CompletedProcess]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # of the last block run
    # The shell's exported variables and findings, between blocks (not in ``folder``,
    # which may be the project itself).
    state: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chatdb-reader-")))

    def text(self, block: Block) -> str:
        text = block.text
        for example in sorted(self.substitutions, key=len, reverse=True):
            text = text.replace(example, self.substitutions[example])
        return "\n".join(
            f"# {line}   <- the whole suite: CI runs this line (.ci/run)"
            if is_whole_suite(line)
            else line
            for line in text.splitlines()
        )

    def run(self, block: Block) -> subprocess.CompletedProcess:
        """Run one block; a failing command fails it (the caller asserts the exit status).
        The commands that exited 1 are in :attr:`findings` afterwards."""
        state, found = self.state / "env", self.state / "findings"
        found.unlink(missing_ok=True)
        # A command exiting 2 or more ends the block with its status; one exiting 1 is
        # written down (bash's ERR trap sees what set -e would stop at, no more).
        on_error = (
            "rc=$?; if [ $rc -ge 2 ]; then exit $rc; fi; "
            f'printf "%s\\n" "$BASH_COMMAND" >> {shlex.quote(str(found))}'
        )
        script = "\n".join(
            [
                "set -o pipefail",
                f"trap {shlex.quote(on_error)} ERR",
                f"if [ -f {shlex.quote(str(state))} ]; then source {shlex.quote(str(state))}; fi",
                self.text(block),
                f"export -p > {shlex.quote(str(state))}",
            ]
        )
        environ = warm_environment(self.env)
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=self.folder,
            env=environ,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        self.findings = found.read_text().splitlines() if found.exists() else []
        self.ran.append((block, result))
        return result

    def run_all(self, found: list[Block]) -> list[subprocess.CompletedProcess]:
        """Run each block, asserting that it succeeds, naming the block when it does not."""
        results = []
        for block in found:
            result = self.run(block)
            assert result.returncode == 0, (
                f"{block} failed when pasted as written (exit {result.returncode}):\n"
                f"{self.text(block)}\n--- stdout\n{result.stdout[-3000:]}\n"
                f"--- stderr\n{result.stderr[-3000:]}"
            )
            results.append(result)
        return results


def project_folder(folder: Path, *more: str) -> Path:
    """A copy of the project a reader can paste into: its Alembic files, models, docs and
    ``dev`` (``more`` files or folders too), made readable (:func:`readable`)."""
    return readable(copy_project(folder, *more))


def readable(folder: Path) -> Path:
    """Make a copy of the project one a reader can paste into: ``dev`` and ``docs``, and a
    ``.venv`` made of links to the project's, but for ``chatdb`` and ``alembic``, which
    run warm (tests.warm_shim), and a fresh ``.installed`` (so that ``./dev`` finds the
    venv installed, a copied pyproject.toml included): ``./dev`` and ``.venv/bin/...``
    work without installing anything."""
    copy_project(folder, "dev", "docs")
    warm_venv(folder / ".venv")
    return folder


def warm_venv(venv: Path) -> Path:
    """A virtualenv at ``venv`` made of links to the project's, but for ``chatdb`` and
    ``alembic``, which run warm (tests.warm_shim; the environment must be
    :func:`warm_environment`'s), and a fresh ``.installed``. Its python: a script it runs
    finds the warm commands beside ``sys.executable``."""
    real = ROOT / ".venv"
    (venv / "bin").mkdir(parents=True)
    for entry in real.iterdir():
        if entry.name not in ("bin", ".installed"):
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()
    shim = f"#!{sys.executable} -S\n" + (ROOT / "tests" / "warm_shim.py").read_text()
    for entry in (real / "bin").iterdir():
        if entry.name in ENTRY_POINTS:
            (venv / "bin" / entry.name).write_text(shim)
            (venv / "bin" / entry.name).chmod(0o755)
        else:
            (venv / "bin" / entry.name).symlink_to(entry)
    return venv / "bin" / "python"


@contextmanager
def local_cluster(folder: Path) -> Iterator[int]:
    """The local cluster of a reader's ``folder``, started before a page's blocks run so
    that its URL is known when they need it (the page's own ``./dev up`` then reuses it,
    as a second ``./dev up`` does): its port. Deleted afterwards (``./dev down
    --delete``)."""
    try:
        started = subprocess.run(["./dev", "up"], cwd=folder, env=warm_environment(),
                                 capture_output=True, text=True, check=False)  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        yield json.loads((folder / ".chatdb" / "cluster.json").read_text())["port"]
    finally:
        delete_local_cluster(folder)


def delete_local_cluster(folder: Path) -> None:
    """``./dev down --delete`` in a reader's folder: its local cluster, if it made one."""
    subprocess.run(["./dev", "down", "--delete"], cwd=folder, env=warm_environment(),
                   capture_output=True, check=False)  # fmt: skip


def warm_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a reader's shell: ``environ`` (this process's), with the warm
    process's address for the shims, and where the real commands are."""
    env = dict(os.environ if environ is None else environ)
    env.pop("DATABASE_URL", None)
    return {**env, **warm_variables()}


def warm_variables() -> dict[str, str]:
    """What tests.warm_shim reads: the warm process's address, the real commands."""
    return {"CHATDB_WARM_SOCKET": warm.address(), "CHATDB_REAL_BIN": str(ROOT / ".venv" / "bin")}


@functools.cache
def warm_python() -> Path:
    """A python of a :func:`warm_venv` made once per test process, in a folder of its
    own (removed at exit): for scripts that call ``chatdb`` beside ``sys.executable``."""
    folder = Path(tempfile.mkdtemp(prefix="chatdb-warm-venv-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return warm_venv(folder / ".venv")
