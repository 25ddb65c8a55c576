"""The run's choices about the online path: which tables take it, and how backfills batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chatdb.deploy import options
from chatdb.failures import BadInput

MODES = ("auto", "always", "never")
# The transactional path holds ACCESS EXCLUSIVE for about 21 us per row of
# chat_conversations (benchmarks/bench_online.py), so below 5,000 rows it stalls
# clients for about 100 ms at most.
DEFAULT_THRESHOLD = 5_000
# A backfill batch holds the row locks of its rows until it commits: a client writing
# one of them waits for the batch. Batches are sized from their measured duration to
# take about this long: well under the 100 ms a client may wait, long enough that a
# batch's fixed costs (its round trip, its commit) are a small part of it.
DEFAULT_BATCH_MS = 40
DEFAULT_FIRST_BATCH = 1_000
MIN_BATCH, MAX_BATCH = 100, 100_000  # rows
# Batches are ranges of pages; rows per page come from pg_class, or this when the table
# was never analyzed (about what a page of chat_conversations holds).
DEFAULT_ROWS_PER_PAGE = 50


@dataclass(frozen=True)
class OnlineOptions:
    """``-x online=auto|always|never``, ``-x online_threshold=ROWS``,
    ``-x online_batch_ms=MS``, ``-x online_batch_size=ROWS`` (the first batch),
    ``-x online_batch_pause_ms=MS`` (docs/large-tables.md)."""

    mode: str = "auto"
    threshold: int = DEFAULT_THRESHOLD
    batch_ms: int = DEFAULT_BATCH_MS
    first_batch: int = DEFAULT_FIRST_BATCH
    pause_ms: int = 0

    @classmethod
    def from_x(cls, x_args: Mapping[str, str]) -> OnlineOptions:
        """Read the options (already checked by options.canonical); a bad value is a
        BadInput naming the option."""
        first = options.count(x_args, "online_batch_size", DEFAULT_FIRST_BATCH)
        if first < 1:
            raise BadInput("-x online_batch_size=0 is not a batch: use 1 or more rows.")
        batch_ms = options.count(x_args, "online_batch_ms", DEFAULT_BATCH_MS)
        if batch_ms < 1:
            raise BadInput("-x online_batch_ms=0 is not a duration: use 1 or more.")
        return cls(
            mode=options.choice(x_args, "online", MODES, "auto"),
            threshold=options.count(x_args, "online_threshold", DEFAULT_THRESHOLD),
            batch_ms=batch_ms,
            first_batch=first,
            pause_ms=options.count(x_args, "online_batch_pause_ms", 0),
        )

    def refuse_offline(self) -> None:
        """``--sql`` writes the transactional path: the online one reads the tables to
        batch and resume, so it has no script form."""
        if self.mode == "always":
            raise BadInput(
                "-x online=always cannot be rendered with --sql: the online path reads the "
                "tables to batch and resume; drop the option or run without --sql."
            )

    def takes_online_path(self, estimate: float) -> bool:
        """The all-or-nothing line, for an existing table with ``estimate`` rows."""
        if self.mode == "always":
            return True
        if self.mode == "never":
            return False
        return estimate >= self.threshold

    def next_batch(
        self, size: int, seconds: float, least: int = MIN_BATCH, most: int = MAX_BATCH
    ) -> int:
        """The size of the next batch, from how long one of ``size`` (rows or pages)
        took: aimed at ``batch_ms``, at most doubling or halving at a time, kept
        between ``least`` and ``most``."""
        if seconds <= 0:
            return min(most, size * 2)
        wanted = size * (self.batch_ms / 1000) / seconds
        return int(max(least, min(most, size * 2, max(size / 2, wanted))))
