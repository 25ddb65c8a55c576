"""The project's local throwaway cluster, kept in the git-ignored folder .chatdb/.

When this process is root, the server runs as an unprivileged user; if that user
cannot enter the repository's folders (a clone under /root, say), the data lives in
a folder of its own under the system temp directory and .chatdb/pgdata links to it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from chatdb.local.server import Cluster, free_port, give_to_server_user, server_user_can_enter
from chatdb.project import state_dir

DBNAME = "chatdb"
STATE_FILE = "cluster.json"


def _datadir_for(state: Path) -> Path:
    link = state / "pgdata"
    if link.is_symlink() or link.exists():
        return link.resolve()
    if server_user_can_enter(state):
        return link
    digest = hashlib.sha1(str(state).encode()).hexdigest()[:10]
    outside = Path(tempfile.gettempdir()) / f"chatdb-{digest}"
    outside.mkdir(mode=0o700, exist_ok=True)
    give_to_server_user(outside)
    link.symlink_to(outside / "pgdata")
    return outside / "pgdata"


def load() -> Cluster | None:
    path = state_dir() / STATE_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return Cluster(datadir=Path(data["datadir"]), port=int(data["port"]))


def ensure_running() -> Cluster:
    """Start the recorded cluster, or create one; return it running."""
    state = state_dir()
    state.mkdir(exist_ok=True)
    cluster = load()
    if cluster is None or not cluster.exists():
        cluster = Cluster(datadir=_datadir_for(state), port=free_port())
        cluster.init()
        (state / STATE_FILE).write_text(
            json.dumps({"datadir": str(cluster.datadir), "port": cluster.port}, indent=2)
        )
    if not cluster.is_running():
        cluster.start()
    return cluster


def ensure_database(cluster: Cluster) -> None:
    cluster.create_database(DBNAME)


def stop(*, delete: bool = False) -> str:
    cluster = load()
    if cluster is None:
        return "No local PostgreSQL recorded in .chatdb/: nothing to stop."
    cluster.stop()
    if not delete:
        return f"Stopped the local PostgreSQL in {cluster.datadir} (data kept; `./dev up` starts it again)."
    shutil.rmtree(cluster.datadir, ignore_errors=True)
    link = state_dir() / "pgdata"
    if link.is_symlink():
        link.unlink()
        shutil.rmtree(cluster.datadir.parent, ignore_errors=True)  # our chatdb-<hash> folder
    (state_dir() / STATE_FILE).unlink(missing_ok=True)
    return f"Stopped and deleted the local PostgreSQL in {cluster.datadir}."
