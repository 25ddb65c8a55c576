"""Markdown for the reports' ``--format markdown`` (a GitHub job summary, a pull request
comment): the few pieces the renderers of chatdb plan, drift and access share.

GitHub Flavored Markdown. Free text (a sentence about a policy, an index, a default) is
escaped, so that ``websites.user_id = auth.uid()`` or ``'[]'::jsonb`` reads as written
instead of turning into emphasis or a link; identifiers go in code spans; a table cell
escapes ``|``, which GitHub reads as a column break even inside a code span.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

FORMATS = ("text", "markdown")

# Characters that start inline markup somewhere in a line (emphasis, code, links, HTML,
# strikethrough); a backslash before each makes it literal. An underscore inside a word
# (gen_random_uuid) starts nothing in GitHub's Markdown, so only the others are escaped.
_INLINE = re.compile(r"([\\`*\[\]<~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")


def add_format_option(parser) -> None:
    """``--format text|markdown`` on a subcommand (text, the default, is unchanged)."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (the default) or markdown: headings and tables for a job summary or a "
        "pull request comment",
    )


def escape(text: str) -> str:
    """``text`` with every character that could start inline markup made literal."""
    return _INLINE.sub(r"\\\1", text)


def code(text: str) -> str:
    """``text`` as an inline code span (a longer fence when it holds backticks)."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def heading(level: int, text: str) -> str:
    return f"{'#' * level} {text}"


def bullets(items: Iterable[str]) -> list[str]:
    """One ``- item`` line per item (items already rendered)."""
    return [f"- {item}" for item in items]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A GitHub table; cells are rendered Markdown (escaped text, code spans)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") or " " for cell in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


def fenced(text: str, info: str = "text") -> list[str]:
    """``text`` verbatim in a fenced block (a fence longer than any run of backticks in it)."""
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return [f"{fence}{info}", text.rstrip("\n"), fence]


def details(summary: str, body: list[str]) -> list[str]:
    """A collapsed section: ``summary`` shown, ``body`` (Markdown lines) on a click."""
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>"]


def demote(markdown: str, by: int = 1) -> str:
    """``markdown`` with every heading ``by`` levels lower (a report set under a heading
    of its own), fenced blocks left alone."""
    out, fence = [], None
    for line in markdown.split("\n"):
        opening = re.match(r"(`{3,}|~{3,})", line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line.startswith(fence):
            fence = None
        elif fence is None and re.match(r"#{1,6} ", line):
            line = "#" * by + line
        out.append(line)
    return "\n".join(out)
