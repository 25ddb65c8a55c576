"""``chatdb`` or ``alembic`` for a shell that a test runs (tests.docs), started warm.

A document's shell blocks call ``./dev`` and ``.venv/bin/alembic``; in a reader's
folder (tests.docs.project_folder) those are this script, which hands the command to
the test process's warm process (tests.warm: same protocol, the command's stdin,
stdout and stderr passed along, its pid and exit status answered) instead of starting
a fresh Python that imports Alembic and SQLAlchemy again. Signals it receives go to
the command. Without a warm process (``CHATDB_WARM_SOCKET`` unset) or with
``CHATDB_TEST_COLD=1`` it runs the real command (``CHATDB_REAL_BIN``). It imports only
the standard library, so that it starts in milliseconds.
"""

import json
import os
import signal
import socket
import struct
import sys


def main() -> int:
    entry = os.path.basename(sys.argv[0])
    address = os.environ.get("CHATDB_WARM_SOCKET")
    if not address or os.environ.get("CHATDB_TEST_COLD") == "1":
        real = os.path.join(os.environ["CHATDB_REAL_BIN"], entry)
        os.execv(real, [real, *sys.argv[1:]])
    request = json.dumps(
        {"entry": entry, "args": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}
    ).encode()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(address)
    socket.send_fds(client, [struct.pack("!Q", len(request))], [0, 1, 2])
    client.sendall(request)
    answers = client.makefile("r", encoding="ascii")
    pid = int(answers.readline())
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, _: os.kill(pid, number))
    code = int(answers.readline())
    return code if code >= 0 else 128 - code  # a signal's end, as a shell reports it


if __name__ == "__main__":
    sys.exit(main())
