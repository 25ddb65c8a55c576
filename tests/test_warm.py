"""tests/warm.py runs the tests' commands as a fresh process would: same output, same
exit status, a pid of their own. If these fail, every test that runs alembic or chatdb
may be testing the warm process instead of the command: run with CHATDB_TEST_COLD=1 to
compare."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from tests import warm
from tests.pg import ALEMBIC, ROOT

CHATDB = str(Path(sys.executable).with_name("chatdb"))


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CHATDB_TEST_COLD")}


def test_a_warm_command_prints_and_exits_as_a_cold_one(tmp_path):
    """A success and a refusal (exit 2: no DATABASE_URL, no local cluster in tmp_path)."""
    for argv, cwd in (([ALEMBIC, "heads"], ROOT), ([CHATDB, "drift"], tmp_path)):
        hot = warm.run(argv, cwd=cwd, env=environment(), timeout=60)
        cold = warm.run(argv, cwd=cwd, env={**environment(), "CHATDB_TEST_COLD": "1"}, timeout=60)
        assert (hot.returncode, hot.stdout) == (cold.returncode, cold.stdout), hot.stderr
        assert hot.returncode in (0, 2)


def project_whose_env_py_runs(folder: Path, body: str) -> Path:
    """A project folder with its own ``models`` and an env.py that runs ``body``."""
    (folder / "alembic").mkdir()
    (folder / "models").mkdir()
    (folder / "models" / "__init__.py").write_text("")
    (folder / "alembic" / "env.py").write_text(body)
    (folder / "alembic.ini").write_text(
        "[alembic]\nscript_location = alembic\nprepend_sys_path = .\n"
    )
    return folder


def test_a_signal_reaches_the_command_and_ends_it_as_it_would_a_process(tmp_path):
    """The pid is the command's own: a kill ends it with -SIGKILL, as subprocess says."""
    project = project_whose_env_py_runs(
        tmp_path, "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    process = warm.popen([ALEMBIC, "current"], cwd=project, env=environment())
    assert process.stdout.readline() == "up\n"
    process.kill()
    assert process.wait(30) == -signal.SIGKILL
    assert process.pid != os.getpid()
    process.stdout.close()
    process.stderr.close()


def test_a_copy_of_the_project_runs_with_its_own_models(tmp_path):
    """Alembic imports env.py and models from the command's folder; the warm process must
    not have imported this checkout's models, or a copy would run with them."""
    project = project_whose_env_py_runs(tmp_path, "import models\nprint(models.__file__)\n")
    result = warm.run([ALEMBIC, "current"], cwd=project, env=environment(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(project / "models" / "__init__.py")


def test_poll_and_wait_from_two_threads_agree_on_the_exit_status():
    """tests.deploying.Deploy waits for its command in a reader thread while the test
    polls it: both must get the exit status, and neither may fail reading it (a race
    once lost the reader thread, so a deploy never said when it ended)."""
    for _ in range(20):
        process = warm.popen([ALEMBIC, "heads"], cwd=ROOT, env=environment())
        waited: list[int | Exception] = []

        def wait(process=process, waited=waited) -> None:
            try:
                waited.append(process.wait(60))
            except (ValueError, OSError, RuntimeError) as exc:  # the race this is about
                waited.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        polled = None
        while polled is None:
            polled = process.poll()
        waiter.join(60)
        process.stdout.close()
        process.stderr.close()
        assert waited == [polled] == [0], f"wait gave {waited!r}, poll gave {polled!r}"
