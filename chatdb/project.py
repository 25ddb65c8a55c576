"""Where the project lives: its alembic.ini, and the git-ignored state folder .chatdb/."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

STATE_DIRNAME = ".chatdb"


def root() -> Path:
    """The folder holding alembic.ini: searched from the working directory upwards,
    then beside this package (an editable install)."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "alembic.ini").is_file():
            return folder
    return Path(__file__).resolve().parents[1]


def alembic_config(*, x_args: list[str] | None = None) -> Config:
    """Alembic's Config for this project, with optional ``-x`` arguments."""
    path = root() / "alembic.ini"
    config = Config(str(path))
    if x_args:
        config.cmd_opts = _XArgs(x_args)  # type: ignore[assignment]
    return config


class _XArgs:
    """The shape of Alembic's parsed command line that get_x_argument() reads."""

    def __init__(self, x: list[str]) -> None:
        self.x = x


def state_dir() -> Path:
    return root() / STATE_DIRNAME
