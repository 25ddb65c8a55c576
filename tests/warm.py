"""The project's command lines (``alembic``, ``chatdb``) for the tests, started warm.

Most of a command's time is Python importing Alembic, SQLAlchemy and psycopg2 (about
0.6 s of CPU each time, on this machine); the suite runs those commands hundreds of
times on two cores. So each test process keeps one *warm* process that has imported
them once, and forks it for every command: the child sets argv, the environment and
the working folder the test gives, takes the test's stdin/stdout/stderr, and runs the
same entry point as the console script (``alembic.config.main``, ``chatdb.cli.main``).
What the test sees is what it would see of a fresh process: a real pid (signals and
kills reach the command itself), its own output streams, and its exit status (minus
the signal number when a signal ended it, as with :mod:`subprocess`).

The warm process imports no module of a project folder (``models``, ``alembic/``):
Alembic imports them in each command, from its working folder, so a test's copy of the
project runs warm too, with its own models and revisions. Any other command runs cold
through :mod:`subprocess`, as does everything when ``CHATDB_TEST_COLD=1``. The warm
process is started on first use and ends with the test process.

Protocol, over a Unix socket: the test sends the file descriptors of the command's
stdin, stdout and stderr, then a length-prefixed JSON request; the warm process forks
a handler, which forks the command, answers its pid, waits for it, and answers its
exit status.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENTRY_POINTS = {"alembic": "alembic.config:main", "chatdb": "chatdb.cli:main"}
PRELOAD = (
    "alembic.config",
    "alembic.command",
    "alembic.autogenerate",
    "alembic.ddl.postgresql",
    "sqlalchemy",
    "sqlalchemy.dialects.postgresql.psycopg2",
    "sqlalchemy.orm",  # models import it
    "sqlalchemy.future",
    "psycopg2",
    "logging.config",
    "chatdb",  # and every module under it
)


# ----------------------------------------------------------------------------- the test side


def run(
    argv: list[str],
    *,
    cwd: str | Path,
    env: dict[str, str],
    timeout: float | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Like ``subprocess.run(argv, capture_output=True, text=True, check=False)``."""
    if _cold(argv):
        return subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with tempfile.TemporaryFile() as stdin:
            stdin.write((input or "").encode())
            stdin.seek(0)
            process = Popen(
                argv, cwd=cwd, env=env, fds=(stdin.fileno(), out.fileno(), err.fileno())
            )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            argv, process.returncode, out.read().decode(), err.read().decode()
        )


def popen(argv: list[str], *, cwd: str | Path, env: dict[str, str]) -> Any:
    """Like ``subprocess.Popen(argv, text=True, stdout=PIPE, stderr=PIPE)``."""
    if _cold(argv):
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        process = Popen(argv, cwd=cwd, env=env, fds=(null, out_w, err_w))
    finally:
        for fd in (null, out_w, err_w):
            os.close(fd)
    process.stdout = open(out_r, encoding="utf-8")  # noqa: SIM115 - the caller closes it
    process.stderr = open(err_r, encoding="utf-8")  # noqa: SIM115
    return process


def _cold(argv: list[str]) -> bool:
    command = Path(argv[0])
    return (
        os.environ.get("CHATDB_TEST_COLD") == "1"
        or command.parent != BIN
        or command.name not in ENTRY_POINTS
    )


class Popen:
    """The part of :class:`subprocess.Popen` the tests use, for a warm command."""

    stdout: io.TextIOWrapper | None = None
    stderr: io.TextIOWrapper | None = None

    def __init__(
        self, argv: list[str], *, cwd: str | Path, env: dict[str, str], fds: tuple[int, ...]
    ) -> None:
        self.args = argv
        self.returncode: int | None = None
        # poll() and wait() may be called from two threads at once (a test's loop, and
        # tests.deploying.Deploy's reader): one of them reads the exit status.
        self._lock = threading.Lock()
        self._socket = _warm().spawn(Path(argv[0]).name, argv[1:], str(cwd), env, fds)
        self._answers = self._socket.makefile("r", encoding="ascii")
        self.pid = int(self._answers.readline())

    def poll(self) -> int | None:
        if self._exited(0):
            self._finish()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self._finish()
        assert self.returncode is not None
        return self.returncode

    def _exited(self, timeout: float | None) -> bool:
        """Whether the exit status is known or waiting to be read (after ``timeout``)."""
        with self._lock:
            if self.returncode is not None:
                return True
            sock = self._socket
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except (OSError, ValueError):  # another thread read the status and closed it
            return True
        return bool(ready)

    def _finish(self) -> None:
        with self._lock:
            if self.returncode is not None:
                return
            answer = self._answers.readline()
            if not answer:
                raise RuntimeError(f"the warm process lost {self.args} (pid {self.pid})")
            self.returncode = int(answer)
            self._answers.close()
            self._socket.close()

    def communicate(self, input: str | None = None, timeout: float | None = None):
        assert input is None, "warm commands read no input through communicate()"
        results: dict[str, str] = {}

        def read(name: str) -> None:
            stream = getattr(self, name)
            results[name] = stream.read() if stream else None

        readers = [threading.Thread(target=read, args=(n,)) for n in ("stdout", "stderr")]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in readers:
            reader.join(None if deadline is None else max(0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.wait(None if deadline is None else max(0, deadline - time.monotonic()))
        for stream in (self.stdout, self.stderr):
            if stream:
                stream.close()
        return results["stdout"], results["stderr"]

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        for stream in (self.stdout, self.stderr):
            if stream:
                stream.close()
        self.wait()


class _Warm:
    """This test process's warm process."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="chatdb-warm-")
        self.address = os.path.join(self.folder, "socket")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.warm", self.address],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not os.path.exists(self.address):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the warm process for the tests' commands did not start")
            time.sleep(0.02)
        atexit.register(self.stop)

    def spawn(
        self, entry: str, args: list[str], cwd: str, env: dict[str, str], fds: tuple[int, ...]
    ) -> socket.socket:
        request = json.dumps({"entry": entry, "args": args, "cwd": cwd, "env": env}).encode()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(self.address)
        socket.send_fds(client, [struct.pack("!Q", len(request))], list(fds))
        client.sendall(request)
        return client

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        for name in os.listdir(self.folder):
            os.unlink(os.path.join(self.folder, name))
        os.rmdir(self.folder)


_lock = threading.Lock()
_instance: _Warm | None = None


def _warm() -> _Warm:
    global _instance
    with _lock:
        if _instance is None or _instance.process.poll() is not None:
            _instance = _Warm()
        return _instance


def address() -> str:
    """The Unix socket of this test process's warm process (tests.warm_shim uses it)."""
    return _warm().address


# ----------------------------------------------------------------------------- the warm side


def serve(address: str) -> None:
    """Import once, then fork a handler per request (see the module docstring)."""
    for name in PRELOAD:
        importlib.import_module(name)
    for name in _without_models():
        importlib.import_module(name)
    assert not [name for name in sys.modules if name.split(".")[0] == "models"]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address + ".new")
    listener.listen(64)
    os.rename(address + ".new", address)  # exists only once it accepts
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped by the kernel
    parent = os.getppid()
    listener.settimeout(2)
    while True:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the test process is gone without stopping us
                with contextlib.suppress(OSError):  # (xdist workers skip atexit)
                    os.unlink(address)
                    os.rmdir(os.path.dirname(address))
                return
            continue
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                _handle(connection)
            finally:
                os._exit(0)
        connection.close()


def _without_models() -> list[str]:
    """The modules of chatdb whose import does not import ``models`` (tried each in a
    fork of its own): those that do must import it from the command's folder."""
    import pkgutil

    import chatdb

    names = [module.name for module in pkgutil.walk_packages(chatdb.__path__, "chatdb.")]
    safe = []
    for name in names:
        pid = os.fork()
        if pid == 0:
            try:
                importlib.import_module(name)
                os._exit(1 if "models" in sys.modules else 0)
            finally:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            safe.append(name)
    return safe


def _handle(connection: socket.socket) -> None:
    header, fds, _, _ = socket.recv_fds(connection, 8, 3)
    (length,) = struct.unpack("!Q", header)
    request = b""
    while len(request) < length:
        request += connection.recv(length - len(request))
    job = json.loads(request)
    pid = os.fork()
    if pid == 0:
        connection.close()
        _run(job, fds)
    for fd in fds:
        os.close(fd)
    connection.sendall(f"{pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())


def _run(job: dict[str, Any], fds: list[int]) -> None:
    """In the command's own process: become the command, run it, exit with its status."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    sys.argv = [str(BIN / job["entry"]), *job["args"]]
    sys.path[0] = str(BIN)  # as for a console script: not the folder the warm process started in
    module, function = ENTRY_POINTS[job["entry"]].split(":")
    code = 1
    try:
        main = getattr(__import__(module, fromlist=[function]), function)
        result = main() if job["entry"] == "chatdb" else main(argv=job["args"], prog="alembic")
        code = _exit_code(result)
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except BaseException:  # noqa: BLE001 - a process prints the traceback, exits 1
        traceback.print_exc()
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


if __name__ == "__main__":
    serve(sys.argv[1])
